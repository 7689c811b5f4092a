//! Reading a whole topic once, from the beginning to the end it had when the scan started
//! (`lineage trace`, `dlq list`): no consumer group, nothing committed.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use vecstream_config::KafkaConfig;

use crate::{KafkaEdgeError, client_config};

/// Calls `visit` for every committed record of `topic` up to the end offsets of the moment
/// the scan starts, partition by partition in offset order.
pub fn scan_topic(
    cfg: &KafkaConfig,
    topic: &str,
    timeout: Duration,
    visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, KafkaEdgeError> {
    let consumer = scan_consumer(cfg, "vecstream-scan")?;
    scan_with(&consumer, topic, false, timeout, visit)
}

/// A consumer for [`scan_with`]: `read_committed`, no automatic commits. `group` only
/// matters to scans that start from (and then commit) the group's offsets.
pub fn scan_consumer(cfg: &KafkaConfig, group: &str) -> Result<BaseConsumer, KafkaEdgeError> {
    Ok(client_config(cfg)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?)
}

/// [`scan_topic`] with a given consumer, starting at the beginning or, with
/// `from_committed`, at the offsets its group committed; records written after the scan
/// started are not visited. Commits nothing.
pub fn scan_with(
    consumer: &BaseConsumer,
    topic: &str,
    from_committed: bool,
    timeout: Duration,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, KafkaEdgeError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(KafkaEdgeError::Topic {
            topic: topic.to_owned(),
            message: "does not exist (run `vecstream topics create`)".into(),
        });
    }
    let mut starts = TopicPartitionList::new();
    for p in &partitions {
        starts.add_partition(topic, *p);
    }
    if from_committed {
        starts = consumer.committed_offsets(starts, timeout)?;
    }
    let mut ends = std::collections::HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for e in starts.elements() {
        let (low, high) = consumer.fetch_watermarks(topic, e.partition(), timeout)?;
        let from = match e.offset() {
            Offset::Offset(o) if from_committed => o.max(low),
            _ => low,
        };
        if high > from {
            ends.insert(e.partition(), high);
            tpl.add_partition_offset(topic, e.partition(), Offset::Offset(from))?;
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl)?;
    let mut seen = 0u64;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                // Records written after the scan started are not part of it.
                let Some(end) = ends.get(&m.partition()).copied() else {
                    continue;
                };
                if m.offset() >= end {
                    ends.remove(&m.partition());
                    continue;
                }
                seen += 1;
                visit(&m);
                if m.offset() + 1 >= end {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                // Transaction markers occupy offsets: a partition may end before its last
                // offset shows as a record. Its position tells.
                let positions = consumer.position()?;
                for e in positions.elements() {
                    if let (Offset::Offset(o), Some(end)) = (e.offset(), ends.get(&e.partition()))
                        && o >= *end
                    {
                        ends.remove(&e.partition());
                    }
                }
                if last_progress.elapsed() > timeout {
                    return Err(KafkaEdgeError::Topic {
                        topic: topic.to_owned(),
                        message: format!("no progress for {timeout:?} while scanning"),
                    });
                }
            }
        }
    }
    Ok(seen)
}

/// Low and high watermarks of every partition of `topic`: `(partition, low, high)`.
pub fn partition_bounds(
    consumer: &BaseConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64, i64)>, KafkaEdgeError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut bounds = Vec::new();
    for p in metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions())
    {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        bounds.push((p.id(), low, high));
    }
    if bounds.is_empty() {
        return Err(KafkaEdgeError::Topic {
            topic: topic.to_owned(),
            message: "does not exist (run `vecstream topics create`)".into(),
        });
    }
    bounds.sort_unstable();
    Ok(bounds)
}

/// One slice of a partition: at most `max` committed records with offsets in `[from, to)`,
/// in offset order, and the offset to continue from (`to` once the range is done; offsets
/// of compacted-away records and transaction markers are skipped over).
pub fn read_range(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    max: usize,
    timeout: Duration,
) -> Result<(Vec<rdkafka::message::OwnedMessage>, i64), KafkaEdgeError> {
    let mut out = Vec::new();
    if from >= to {
        return Ok((out, to));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let mut next = from;
    let mut last_progress = Instant::now();
    while next < to && out.len() < max {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                if m.partition() != partition || m.offset() < next {
                    continue;
                }
                if m.offset() >= to {
                    next = to;
                    break;
                }
                next = m.offset() + 1;
                out.push(m.detach());
            }
            Some(Err(e)) => return Err(e.into()),
            None => {
                // Past the last record of the range (markers or compaction): the position says.
                let position = consumer
                    .position()?
                    .find_partition(topic, partition)
                    .map(|e| e.offset());
                if let Some(Offset::Offset(o)) = position {
                    next = next.max(o.min(to));
                }
                if next >= to {
                    break;
                }
                if last_progress.elapsed() > timeout {
                    return Err(KafkaEdgeError::Topic {
                        topic: topic.to_owned(),
                        message: format!(
                            "no progress for {timeout:?} reading partition {partition} at offset {next}"
                        ),
                    });
                }
            }
        }
    }
    Ok((out, next))
}
