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
    scan_with(&consumer, topic, ScanFrom::Beginning, timeout, visit)
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

/// A read error librdkafka recovers from by itself (a broker connection dropped, all
/// brokers briefly unreachable, a leader moving): the scan keeps polling until its
/// no-progress timeout instead of failing the command.
fn passing(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::NetworkException
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
                | C::Resolve
        )
    )
}

/// Where a scan starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanFrom {
    /// The partition's first record.
    Beginning,
    /// The offset the consumer's group committed (its first record when none).
    Committed,
    /// The first record with a timestamp at or after this time (ms since the epoch).
    Time(i64),
}

/// Per partition of `topic`: `(partition, first offset to read, end offset now)`, only the
/// partitions with something to read.
pub fn scan_ranges(
    consumer: &BaseConsumer,
    topic: &str,
    from: ScanFrom,
    timeout: Duration,
) -> Result<Vec<(i32, i64, i64)>, KafkaEdgeError> {
    let bounds = partition_bounds(consumer, topic, timeout)?;
    let mut starts = TopicPartitionList::new();
    for (p, _, _) in &bounds {
        match from {
            ScanFrom::Time(ms) => starts.add_partition_offset(topic, *p, Offset::Offset(ms))?,
            _ => {
                starts.add_partition(topic, *p);
            }
        }
    }
    let starts = match from {
        ScanFrom::Beginning => starts,
        ScanFrom::Committed => consumer.committed_offsets(starts, timeout)?,
        ScanFrom::Time(_) => consumer.offsets_for_times(starts, timeout)?,
    };
    let mut ranges = Vec::new();
    for (p, low, high) in bounds {
        let start = match starts.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if from != ScanFrom::Beginning => o.max(low),
            // No record at or after the time.
            Some(Offset::End) if matches!(from, ScanFrom::Time(_)) => high,
            _ => low,
        };
        if high > start {
            ranges.push((p, start, high));
        }
    }
    Ok(ranges)
}

/// [`scan_topic`] with a given consumer, starting where `from` says; records written after
/// the scan started are not visited. Commits nothing.
pub fn scan_with(
    consumer: &BaseConsumer,
    topic: &str,
    from: ScanFrom,
    timeout: Duration,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<u64, KafkaEdgeError> {
    let mut ends = std::collections::HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for (p, start, end) in scan_ranges(consumer, topic, from, timeout)? {
        ends.insert(p, end);
        tpl.add_partition_offset(topic, p, Offset::Offset(start))?;
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
            Some(Err(e)) if passing(&e) && last_progress.elapsed() <= timeout => {
                tracing::warn!(%topic, error = %e, "kafka read interrupted; reading on");
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
            Some(Err(e)) if passing(&e) && last_progress.elapsed() <= timeout => {
                tracing::warn!(%topic, partition, error = %e, "kafka read interrupted; reading on");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_connections_are_read_through_and_refusals_are_not() {
        use rdkafka::error::KafkaError;
        use rdkafka::types::RDKafkaErrorCode as C;
        for code in [
            C::AllBrokersDown,
            C::BrokerTransportFailure,
            C::NotLeaderForPartition,
        ] {
            assert!(passing(&KafkaError::MessageConsumption(code)), "{code:?}");
        }
        for code in [
            C::TopicAuthorizationFailed,
            C::SaslAuthenticationFailed,
            C::UnknownTopicOrPartition,
        ] {
            assert!(!passing(&KafkaError::MessageConsumption(code)), "{code:?}");
        }
    }
}
