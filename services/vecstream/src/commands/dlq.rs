//! `vecstream dlq list|replay`: what was dead-lettered and why, and putting it back once the
//! cause is fixed.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;
use vecstream_core::printable;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use vecstream_config::Config;
use vecstream_core::topics;
use vecstream_pipeline::dlq;

use crate::cli::DlqCommand;

/// One dead letter as `list` shows it.
#[derive(Debug, Clone, Serialize)]
struct Entry {
    partition: i32,
    offset: i64,
    key: Option<String>,
    /// The (tenant, id) the key names (`vecstream_core::split_record_key`).
    tenant: Option<String>,
    doc_id: Option<String>,
    reason: String,
    stage: String,
    message: String,
    source_topic: String,
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    time: Option<String>,
    bytes: usize,
    /// Bytes of the original record left out because the dead letter would not have fit
    /// the DLQ topic (the source headers say where the original is).
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_omitted: Option<u64>,
}

fn header(m: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn entry(m: &BorrowedMessage<'_>) -> Entry {
    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
    Entry {
        partition: m.partition(),
        offset: m.offset(),
        key: key.clone(),
        tenant: key
            .as_deref()
            .map(|k| vecstream_core::split_record_key(k).0.to_owned()),
        doc_id: key
            .as_deref()
            .map(|k| vecstream_core::split_record_key(k).1.to_owned()),
        reason: header(m, dlq::HEADER_REASON).unwrap_or_else(|| "?".into()),
        stage: header(m, dlq::HEADER_STAGE).unwrap_or_else(|| "?".into()),
        message: header(m, dlq::HEADER_MESSAGE).unwrap_or_default(),
        source_topic: header(m, dlq::HEADER_SOURCE_TOPIC).unwrap_or_default(),
        source_partition: header(m, dlq::HEADER_SOURCE_PARTITION).and_then(|p| p.parse().ok()),
        source_offset: header(m, dlq::HEADER_SOURCE_OFFSET).and_then(|o| o.parse().ok()),
        time: header(m, dlq::HEADER_TIME)
            .and_then(|t| t.parse().ok())
            .map(super::lineage::format_ms),
        bytes: m.payload_len(),
        payload_omitted: header(m, dlq::HEADER_PAYLOAD_OMITTED).and_then(|b| b.parse().ok()),
    }
}

fn print(e: &Entry, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
    } else {
        // Every header and the key come from whoever produced the record: printed escaped
        // (no terminal escape sequence gets through; the tenant separator shows as `\0`).
        println!(
            "{}/{}  {:<14} {:<6} key={} from={}/{}@{}  {}",
            e.partition,
            e.offset,
            printable(&e.reason),
            printable(&e.stage),
            e.key.as_deref().map_or("-".into(), printable),
            printable(&e.source_topic),
            e.source_partition
                .map(|p| p.to_string())
                .unwrap_or_default(),
            e.source_offset.map(|o| o.to_string()).unwrap_or_default(),
            printable(&e.message)
        );
    }
    Ok(())
}

pub async fn run(config: &Config, cmd: &DlqCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCommand::List { reason, json } => {
            let kafka = config.kafka.clone();
            let reason = reason.clone();
            let entries = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                vecstream_kafka::scan::scan_topic(
                    &kafka,
                    topics::DOCUMENTS_DLQ,
                    Duration::from_secs(30),
                    |m| {
                        let e = entry(m);
                        if reason.as_ref().is_none_or(|r| *r == e.reason) {
                            out.push(e);
                        }
                    },
                )
                .map(|_| out)
            })
            .await??;
            for e in &entries {
                print(e, *json)?;
            }
            eprintln!("{} dead-lettered record(s)", entries.len());
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay {
            key,
            tenant,
            reason,
            group,
            dry_run,
        } => {
            let key = key.as_deref().map(|id| {
                vecstream_core::record_key(
                    tenant.as_deref().unwrap_or(vecstream_core::DEFAULT_TENANT),
                    id,
                )
            });
            replay(config, key.as_deref(), reason.as_deref(), group, *dry_run).await
        }
    }
}

/// The consumer group that remembers a replay's progress: `group` itself without a filter;
/// with one, a group of that filter (`<group>.reason=<r>`, `<group>.key=<sha256 16 hex>`),
/// so that a filtered replay never counts another filter's records as replayed.
fn replay_group(group: &str, key: Option<&str>, reason: Option<&str>) -> String {
    let mut name = group.to_owned();
    if let Some(r) = reason {
        name.push_str(&format!(".reason={r}"));
    }
    if let Some(k) = key {
        let hash = vecstream_core::key_hash(k.as_bytes());
        name.push_str(&format!(".key={}", &hash[..16]));
    }
    name
}

/// Reads the DLQ from the replay group's committed offsets (one group per filter, see
/// [`replay_group`]) to the current end, republishes the matching records to their source
/// topic and partition with their original key and bytes, and commits after each one is
/// acknowledged: a record is replayed at most once per group and filter, and a replay
/// interrupted part-way resumes after the last record it republished. (A record replayed
/// under two filters is republished twice: harmless, the pipeline is idempotent.)
async fn replay(
    config: &Config,
    key: Option<&str>,
    reason: Option<&str>,
    group: &str,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs(30);
    // What the group has not replayed yet, up to the end as it is now: the records the
    // replay causes come after and are not replayed again.
    let group = replay_group(group, key, reason);
    let consumer = vecstream_kafka::scan::scan_consumer(&config.kafka, &group)?;
    let mut wanted = Vec::new();
    let mut done: HashMap<i32, i64> = HashMap::new();
    let mut skipped = 0u64;
    let kafka_consumer = &consumer;
    let scanned = tokio::task::block_in_place(|| {
        vecstream_kafka::scan::scan_with(
            kafka_consumer,
            topics::DOCUMENTS_DLQ,
            vecstream_kafka::scan::ScanFrom::Committed,
            timeout,
            |m| {
                done.insert(m.partition(), m.offset() + 1);
                let e = entry(m);
                let matches = key.is_none_or(|k| e.key.as_deref() == Some(k))
                    && reason.is_none_or(|r| r == e.reason);
                if matches
                    && (e.source_topic == topics::DOCUMENTS || e.source_topic == topics::VECTORS)
                {
                    wanted.push((
                        e,
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec),
                    ));
                } else {
                    skipped += 1;
                }
            },
        )
    });
    scanned?;
    let producer: FutureProducer = vecstream_kafka::idempotent_producer(&config.kafka)?;
    let mut replayed = 0u64;
    for (e, k, payload) in &wanted {
        print(e, false)?;
        replayed += 1;
        if dry_run {
            continue;
        }
        let origin = format!("{}/{}", e.partition, e.offset);
        let mut headers = OwnedHeaders::new().insert(Header {
            key: dlq::HEADER_REPLAY_OF,
            value: Some(origin.as_str()),
        });
        // Where it was before it was dead-lettered: the embedder orders it by that offset
        // (a replay from before a tombstone stays deleted).
        let (source_partition, source_offset) = (
            e.source_partition.map(|p| p.to_string()),
            e.source_offset.map(|o| o.to_string()),
        );
        if let (Some(p), Some(o)) = (&source_partition, &source_offset) {
            headers = headers
                .insert(Header {
                    key: dlq::HEADER_SOURCE_PARTITION,
                    value: Some(p.as_str()),
                })
                .insert(Header {
                    key: dlq::HEADER_SOURCE_OFFSET,
                    value: Some(o.as_str()),
                });
        }
        // Back to the partition it came from: per-document order holds (the producer's
        // partitioner may not be ours), and vectors records sit with their document's.
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&e.source_topic).headers(headers);
        if let Some(p) = e.source_partition {
            record = record.partition(p);
        }
        if let Some(k) = k {
            record = record.key(k.as_slice());
        }
        if let Some(p) = payload {
            record = record.payload(p.as_slice());
        }
        producer
            .send(record, timeout)
            .await
            .map_err(|(err, _)| anyhow::anyhow!("republishing {origin}: {err}"))?;
        // Remembered as soon as it is acknowledged: an interrupted replay resumes after it.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            topics::DOCUMENTS_DLQ,
            e.partition,
            Offset::Offset(e.offset + 1),
        )?;
        consumer.commit(&tpl, CommitMode::Sync)?;
    }
    // The rest of what was scanned (records this filter does not take) is this group's too.
    if !dry_run && !done.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in &done {
            tpl.add_partition_offset(topics::DOCUMENTS_DLQ, *p, Offset::Offset(*o))?;
        }
        consumer.commit(&tpl, CommitMode::Sync)?;
    }
    eprintln!(
        "{} {replayed} record(s), skipped {skipped}{}",
        if dry_run { "would replay" } else { "replayed" },
        if dry_run {
            " (dry run: nothing published or remembered)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_filter_remembers_its_own_replay() {
        assert_eq!(replay_group("g", None, None), "g");
        assert_eq!(
            replay_group("g", None, Some("empty_body")),
            "g.reason=empty_body"
        );
        let by_key = replay_group("g", Some("doc-1"), None);
        assert!(by_key.starts_with("g.key=") && by_key.len() == "g.key=".len() + 16);
        assert_ne!(by_key, replay_group("g", Some("doc-2"), None));
        assert_ne!(
            replay_group("g", None, Some("invalid")),
            replay_group("g", None, Some("empty_body"))
        );
    }
}
