//! `vecstream lineage tail|trace`: the analysts' topic, decoded through the registry.

use std::process::ExitCode;
use std::time::Duration;
use vecstream_core::printable;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use vecstream_config::Config;
use vecstream_core::{LineageEvent, topics};
use vecstream_kafka::{SchemaRegistry, schemas, wire};

use crate::cli::LineageCommand;

pub async fn run(config: &Config, cmd: &LineageCommand) -> anyhow::Result<ExitCode> {
    let registry = SchemaRegistry::new(&config.registry)?;
    let reader = schemas::parse(schemas::LINEAGE_EVENT)?;
    match cmd {
        LineageCommand::Export {
            from_beginning,
            since,
        } => export(config, *from_beginning, since.as_deref()).await,
        LineageCommand::Status {
            doc_id,
            tenant,
            doc_version,
            wait,
            timeout,
            json,
        } => {
            let ask = super::lineage_status::Ask {
                doc_id,
                tenant,
                version: *doc_version,
                wait: wait.then_some(Duration::from_secs(*timeout)),
                json: *json,
            };
            super::lineage_status::run(config, &registry, &reader, ask).await
        }
        LineageCommand::Trace {
            doc_id,
            tenant,
            json,
        } => {
            let mut raw = Vec::new();
            let kafka = config.kafka.clone();
            // Events are keyed by the document's record key, like its records.
            let key = vecstream_core::record_key(tenant, doc_id);
            let scanned = tokio::task::spawn_blocking(move || {
                vecstream_kafka::scan::scan_topic(
                    &kafka,
                    topics::LINEAGE,
                    Duration::from_secs(30),
                    |m| {
                        if m.key() == Some(key.as_bytes())
                            && let Some(p) = m.payload()
                        {
                            raw.push(p.to_vec());
                        }
                    },
                )
                .map(|n| (n, raw))
            })
            .await??;
            let (_, raw) = scanned;
            let mut events = Vec::with_capacity(raw.len());
            for bytes in raw {
                events.push(decode(&registry, &reader, &bytes).await?);
            }
            events.sort_by_key(|e| e.event_time);
            if events.is_empty() {
                eprintln!("no lineage events for {doc_id:?} of tenant {tenant:?}");
                return Ok(ExitCode::from(1));
            }
            for e in &events {
                print_event(e, *json)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        LineageCommand::Tail {
            doc,
            tenant,
            from_beginning,
            json,
        } => {
            let doc = doc.as_ref().map(|d| vecstream_core::record_key(tenant, d));
            let consumer: StreamConsumer = vecstream_kafka::client_config(&config.kafka)
                .set(
                    "group.id",
                    format!("vecstream-lineage-tail-{}", std::process::id()),
                )
                .set("enable.auto.commit", "false")
                .set(
                    "auto.offset.reset",
                    if *from_beginning {
                        "earliest"
                    } else {
                        "latest"
                    },
                )
                .set("isolation.level", "read_committed")
                .create()?;
            consumer.subscribe(&[topics::LINEAGE])?;
            loop {
                let m = tokio::select! {
                    m = consumer.recv() => m?,
                    _ = super::run::shutdown_signal() => return Ok(ExitCode::SUCCESS),
                };
                if doc.as_ref().is_some_and(|d| m.key() != Some(d.as_bytes())) {
                    continue;
                }
                let Some(payload) = m.payload() else { continue };
                match decode(&registry, &reader, payload).await {
                    Ok(e) => print_event(&e, *json)?,
                    Err(e) => eprintln!(
                        "partition {} offset {}: undecodable event: {e}",
                        m.partition(),
                        m.offset()
                    ),
                }
            }
        }
    }
}

/// `vecstream lineage export`: follow (the exporter's group) or back-fill with a progress
/// bar.
async fn export(
    config: &Config,
    from_beginning: bool,
    since: Option<&str>,
) -> anyhow::Result<ExitCode> {
    use indicatif::{ProgressBar, ProgressStyle};
    use vecstream_openlineage::{Exporter, Mode, OpenLineageMetrics};
    let since_ms = since.map(parse_since).transpose()?;
    let exporter = Exporter::new(config, OpenLineageMetrics::unregistered()?)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        super::run::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mode = if from_beginning {
        Mode::Backfill { since_ms }
    } else {
        Mode::Follow
    };
    let bar = if from_beginning {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} openlineage export [{bar:40}] {pos}/{len} events {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total.max(done));
        bar.set_position(done);
    };
    let report = exporter.run(mode, stop_rx, &progress).await?;
    bar.finish_and_clear();
    eprintln!(
        "openlineage export: {} lineage events read, {} sent over HTTP, {} to Kafka, {} dropped, {} undecodable",
        report.read, report.sent_http, report.sent_kafka, report.dropped, report.undecodable
    );
    Ok(if report.dropped > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--since` as an RFC 3339 time (Weaviate's date filters).
pub fn rfc3339_since(s: &str) -> anyhow::Result<String> {
    let ms = parse_since(s)?;
    Ok(format_ms(ms))
}

/// `--since`: RFC 3339 time, or an age (`2h`, `30m`) back from now; epoch milliseconds.
fn parse_since(s: &str) -> anyhow::Result<i64> {
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let age = humantime::parse_duration(s).with_context(|| {
                format!("--since {s:?}: neither an RFC 3339 time nor an age such as 2h")
            })?;
            std::time::SystemTime::now() - age
        }
    };
    Ok(at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0))
}

pub(crate) async fn decode(
    registry: &SchemaRegistry,
    reader: &apache_avro::Schema,
    bytes: &[u8],
) -> anyhow::Result<LineageEvent> {
    let (id, payload) = wire::split(bytes)?;
    let writer = registry.schema_by_id(id).await?;
    Ok(wire::decode(&writer, Some(reader), payload)?)
}

fn print_event(e: &LineageEvent, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let f = &e.vecstream;
    let version = f.doc_version.map(|v| format!("@{v}")).unwrap_or_default();
    let mut line = format!(
        "{} {:<24} {}{}",
        format_ms(e.event_time),
        f.stage,
        f.doc_id.as_deref().unwrap_or("-"),
        version
    );
    if !f.chunk_ids.is_empty() {
        line.push_str(&format!(" chunks={}", f.chunk_ids.len()));
    }
    if let Some(m) = &f.model_id {
        line.push_str(&format!(" model={m}"));
    }
    if let Some(c) = &f.target_collection {
        line.push_str(&format!(" collection={c}"));
    }
    if let (Some(t), Some(p), Some(o)) = (&f.source_topic, f.source_partition, f.source_offset) {
        line.push_str(&format!(" from={t}/{p}@{o}"));
    }
    if let Some(ms) = f.duration_ms {
        line.push_str(&format!(" took={ms}ms"));
    }
    if let Some(b) = &f.backend {
        line.push_str(&format!(" backend={b}"));
    }
    if let Some(t) = &f.trace_id {
        line.push_str(&format!(" trace={t}"));
    }
    if let Some(err) = &f.error {
        line.push_str(&format!(" error={err:?}"));
    }
    // Ids, errors and names come from producers: no escape sequence reaches the terminal.
    println!("{}", printable(&line));
    Ok(())
}

/// `2026-11-24T03:42:34.123Z` from epoch milliseconds, without a date library.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_format_as_utc() {
        assert_eq!(super::format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::format_ms(1_795_491_754_123),
            "2026-11-24T03:42:34.123Z"
        );
        assert_eq!(
            super::format_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
