//! `vecstream produce`: JSONL or a directory of files → Avro documents on docs.documents.v1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use vecstream_config::Config;
use vecstream_core::{Document, TraceParent, topics};
use vecstream_kafka::{DocumentPublisher, SchemaRegistry};

use crate::cli::ProduceArgs;

/// Records in flight at once: enough to keep the idempotent producer's pipeline full.
const MAX_IN_FLIGHT: usize = 512;

/// One JSONL input line. `text` and `_id` are accepted for corpora in the BEIR style.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputLine {
    #[serde(alias = "_id")]
    id: String,
    #[serde(alias = "text")]
    body: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    deleted: bool,
}

/// An input that cannot become a document, and where it is.
#[derive(Debug, PartialEq)]
pub struct InvalidInput {
    pub location: String,
    pub reason: String,
}

/// Settings shared by every input.
#[derive(Debug)]
pub struct InputDefaults {
    pub tenant: String,
    pub now_millis: i64,
    pub max_body_bytes: usize,
}

fn check_body(body: &str, deleted: bool, max: usize) -> Result<(), String> {
    if body.trim().is_empty() && !deleted {
        return Err("empty body".into());
    }
    if body.len() > max {
        return Err(format!(
            "body of {} bytes is over the limit of {max} (--max-body-bytes)",
            body.len()
        ));
    }
    Ok(())
}

/// Parses a JSONL file: one document per non-blank line.
pub fn read_jsonl(
    path: &Path,
    text: &str,
    d: &InputDefaults,
) -> (Vec<Document>, Vec<InvalidInput>) {
    let mut docs = Vec::new();
    let mut invalid = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let location = format!("{}:{}", path.display(), n + 1);
        let parsed = serde_json::from_str::<InputLine>(line)
            .map_err(|e| e.to_string())
            .and_then(|l| {
                if l.id.trim().is_empty() {
                    return Err("empty id".into());
                }
                check_body(&l.body, l.deleted, d.max_body_bytes)?;
                Ok(Document {
                    source: l
                        .source
                        .unwrap_or_else(|| format!("file://{}#L{}", path.display(), n + 1)),
                    id: l.id,
                    tenant: l.tenant.unwrap_or_else(|| d.tenant.clone()),
                    title: l.title,
                    body: l.body,
                    content_type: l.content_type.unwrap_or_else(|| "text/plain".into()),
                    metadata: l
                        .metadata
                        .into_iter()
                        .map(|(k, v)| {
                            (
                                k,
                                v.as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect(),
                    version: l.version.unwrap_or(d.now_millis),
                    deleted: l.deleted,
                    produced_at: d.now_millis,
                })
            });
        match parsed {
            Ok(doc) => docs.push(doc),
            Err(reason) => invalid.push(InvalidInput { location, reason }),
        }
    }
    (docs, invalid)
}

fn content_type_of(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "txt" | "text" | "rst" => Some("text/plain"),
        "md" | "markdown" => Some("text/markdown"),
        "html" | "htm" => Some("text/html"),
        _ => None,
    }
}

fn title_of(body: &str, content_type: &str, path: &Path) -> Option<String> {
    let found = match content_type {
        "text/markdown" => body
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .map(str::trim)
            .map(str::to_owned),
        "text/html" => {
            let lower = body.to_ascii_lowercase();
            lower.find("<title>").and_then(|s| {
                let start = s + "<title>".len();
                lower[start..]
                    .find("</title>")
                    .map(|e| body[start..start + e].trim().to_owned())
            })
        }
        _ => None,
    };
    found
        .filter(|t| !t.is_empty())
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
}

/// Reads a directory tree: each text file (txt, md, html, rst) becomes one document whose
/// id is its path relative to `root`. Hidden entries are skipped; other files are counted.
pub fn read_dir(
    root: &Path,
    d: &InputDefaults,
) -> anyhow::Result<(Vec<Document>, Vec<InvalidInput>, usize)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if path.is_dir() {
                stack.push(path)
            } else {
                files.push(path)
            }
        }
    }
    files.sort();
    let (mut docs, mut invalid, mut unsupported) = (Vec::new(), Vec::new(), 0);
    for path in files {
        let Some(content_type) = content_type_of(&path) else {
            unsupported += 1;
            continue;
        };
        let rel: PathBuf = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let id = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let location = path.display().to_string();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                invalid.push(InvalidInput {
                    location,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let body = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                invalid.push(InvalidInput {
                    location,
                    reason: format!("not UTF-8: {}", e.utf8_error()),
                });
                continue;
            }
        };
        if let Err(reason) = check_body(&body, false, d.max_body_bytes) {
            invalid.push(InvalidInput { location, reason });
            continue;
        }
        let source = std::fs::canonicalize(&path)
            .map(|p| format!("file://{}", p.display()))
            .unwrap_or(location);
        docs.push(Document {
            title: title_of(&body, content_type, &path),
            id,
            tenant: d.tenant.clone(),
            source,
            body,
            content_type: content_type.into(),
            metadata: BTreeMap::from([("path".to_owned(), rel.display().to_string())]),
            version: d.now_millis,
            deleted: false,
            produced_at: d.now_millis,
        });
    }
    Ok((docs, invalid, unsupported))
}

pub async fn run(config: &Config, args: &ProduceArgs) -> anyhow::Result<ExitCode> {
    let defaults = InputDefaults {
        tenant: args.tenant.clone(),
        now_millis: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
        max_body_bytes: args.max_body_bytes,
    };
    let (docs, invalid) = if args.input.is_dir() {
        let (docs, invalid, unsupported) = read_dir(&args.input, &defaults)?;
        if unsupported > 0 {
            eprintln!("skipped {unsupported} file(s) that are not txt, md, html or rst");
        }
        (docs, invalid)
    } else {
        let text = std::fs::read_to_string(&args.input)
            .with_context(|| format!("cannot read {}", args.input.display()))?;
        read_jsonl(&args.input, &text, &defaults)
    };
    for bad in &invalid {
        eprintln!("invalid input {}: {}", bad.location, bad.reason);
    }
    if !invalid.is_empty() && !args.skip_invalid {
        anyhow::bail!(
            "{} invalid input(s); nothing was published (fix them or pass --skip-invalid)",
            invalid.len()
        );
    }
    if docs.is_empty() {
        anyhow::bail!("no documents found in {}", args.input.display());
    }

    let outcomes = vecstream_kafka::topics::ensure_topics(&config.kafka)
        .await
        .context("creating topics")?;
    for created in outcomes.iter().filter(|o| o.created) {
        eprintln!("created topic {}", created.name);
    }
    let registry = SchemaRegistry::new(&config.registry)?;
    let publisher = DocumentPublisher::connect(&config.kafka, &registry)
        .await
        .context("connecting the producer")?;
    let metrics = vecstream_telemetry::Metrics::new();
    let produced = metrics
        .documents_produced
        .with_label_values(&[topics::DOCUMENTS]);

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(docs.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} produce [{bar:40}] {pos}/{len} docs {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let start = Instant::now();
    // A rate too high for a period (or not a number) publishes as fast as it can.
    let period = Duration::try_from_secs_f64(1.0 / args.rate)
        .ok()
        .filter(|p| !p.is_zero());
    let mut ticker = period.map(|period| {
        let mut t = tokio::time::interval(period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    let mut in_flight = FuturesUnordered::new();
    let mut failures = 0usize;
    let mut handle = |result: Result<_, vecstream_kafka::KafkaEdgeError>, id: &str| match result {
        Ok(_) => {
            produced.inc();
            bar.inc(1);
        }
        Err(e) => {
            failures += 1;
            bar.println(format!("failed to publish {id}: {e}"));
        }
    };
    for doc in &docs {
        if let Some(t) = ticker.as_mut() {
            t.tick().await;
        }
        // Each document starts a trace; the pipeline continues it (`traceparent` header).
        let span = tracing::info_span!("produce_document", doc_id = %doc.id);
        let trace = vecstream_telemetry::own_hop(&span).unwrap_or_else(TraceParent::new_root);
        let publisher = &publisher;
        in_flight.push(async move {
            let _span = span;
            (publisher.publish_traced(doc, &trace).await, doc.id.as_str())
        });
        if in_flight.len() >= MAX_IN_FLIGHT
            && let Some((result, id)) = in_flight.next().await
        {
            handle(result, id);
        }
    }
    while let Some((result, id)) = in_flight.next().await {
        handle(result, id);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let published = docs.len() - failures;
    println!(
        "published {published} document(s) to {} (schema id {}) in {secs:.2}s ({:.0} docs/s){}",
        topics::DOCUMENTS,
        publisher.schema_id(),
        published as f64 / secs.max(1e-9),
        if invalid.is_empty() {
            String::new()
        } else {
            format!(", {} invalid skipped", invalid.len())
        }
    );
    if failures > 0 {
        anyhow::bail!("{failures} document(s) could not be published");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> InputDefaults {
        InputDefaults {
            tenant: "t".into(),
            now_millis: 1000,
            max_body_bytes: 60,
        }
    }

    #[test]
    fn jsonl_lines_become_documents_and_bad_lines_are_located() {
        let text = concat!(
            r#"{"id":"a","body":"hello","metadata":{"n":1,"s":"x"}}"#,
            "\n",
            "\n",
            r#"{"_id":"b","text":"beir style","title":"B","version":7}"#,
            "\n",
            r#"{"id":"c","body":"  "}"#,
            "\n",
            r#"{"id":"d","body":"x","colour":"red"}"#,
            "\n",
            "not json\n",
            r#"{"id":"e","body":"this body is far too long for the configured limit of one hundred bytes, so it is refused"}"#,
            "\n",
            r#"{"id":"f","body":"","deleted":true}"#,
            "\n",
        );
        let (docs, invalid) = read_jsonl(Path::new("in.jsonl"), text, &defaults());
        let ids: Vec<_> = docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "f"]);
        assert_eq!(docs[0].tenant, "t");
        assert_eq!(
            docs[0].version, 1000,
            "version defaults to the produce time"
        );
        assert_eq!(docs[0].metadata["n"], "1");
        assert_eq!(docs[0].source, "file://in.jsonl#L1");
        assert_eq!(docs[1].version, 7);
        assert_eq!(docs[1].title.as_deref(), Some("B"));
        assert!(docs[2].deleted);
        let where_: Vec<_> = invalid.iter().map(|i| i.location.as_str()).collect();
        assert_eq!(
            where_,
            ["in.jsonl:4", "in.jsonl:5", "in.jsonl:6", "in.jsonl:7"]
        );
        assert!(invalid[0].reason.contains("empty body"));
        assert!(
            invalid[1].reason.contains("colour"),
            "{}",
            invalid[1].reason
        );
        assert!(invalid[3].reason.contains("over the limit"));
    }

    #[test]
    fn directory_files_become_documents_with_relative_ids() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("guides")).unwrap();
        std::fs::write(
            dir.path().join("guides/intro.md"),
            "# Getting started\nbody",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("page.html"),
            "<html><title>Page</title>hi</html>",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "plain").unwrap();
        std::fs::write(dir.path().join("image.png"), [0u8, 1, 2]).unwrap();
        std::fs::write(dir.path().join("bad.txt"), [0xff, 0xfe, b'a']).unwrap();
        std::fs::write(dir.path().join(".hidden.md"), "# no").unwrap();
        let (docs, invalid, unsupported) = read_dir(dir.path(), &defaults()).unwrap();
        let ids: Vec<_> = docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["guides/intro.md", "notes.txt", "page.html"]);
        assert_eq!(docs[0].title.as_deref(), Some("Getting started"));
        assert_eq!(docs[0].content_type, "text/markdown");
        assert_eq!(docs[2].title.as_deref(), Some("Page"));
        assert_eq!(docs[1].title.as_deref(), Some("notes"));
        assert_eq!(unsupported, 1);
        assert_eq!(invalid.len(), 1);
        assert!(invalid[0].reason.contains("not UTF-8"));
    }
}
