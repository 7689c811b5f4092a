//! `vecstream embed`: JSONL texts in, JSONL vectors out in input order, one stats line on
//! stderr.

use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use vecstream_config::{Config, EngineSettings};
use vecstream_engine::{Engine, EngineConfig};

use crate::cli::EmbedArgs;

/// Texts per request to the engine; a few requests in flight keep its batches full.
const TEXTS_PER_REQUEST: usize = 256;
const REQUESTS_IN_FLIGHT: usize = 4;

/// The engine configuration of `[engine]`.
pub fn engine_config(s: &EngineSettings) -> anyhow::Result<EngineConfig> {
    let target = vecstream_workflows::ModelTarget::configured(s).map_err(anyhow::Error::msg)?;
    Ok(vecstream_workflows::activities::engine_config(s, &target)?)
}

#[derive(Serialize)]
struct Stats<'a> {
    texts: usize,
    tokens: usize,
    truncated: usize,
    seconds: f64,
    texts_per_s: f64,
    tokens_per_s: f64,
    backend: &'a str,
    precision: &'a str,
    model_id: &'a str,
}

pub async fn run(config: &Config, args: &EmbedArgs) -> anyhow::Result<ExitCode> {
    let file = std::fs::File::open(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let mut ids = Vec::new();
    let mut texts = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", args.input.display(), n + 1))?;
        let (Some(id), Some(text)) = (
            v.get("id").filter(|i| i.is_string() || i.is_number()),
            v.get("text").and_then(|t| t.as_str()),
        ) else {
            anyhow::bail!(
                "{}:{}: expected {{\"id\": string|number, \"text\": string}}",
                args.input.display(),
                n + 1
            );
        };
        ids.push(id.clone());
        texts.push(text.to_owned());
    }

    let cfg = engine_config(&config.engine)?;
    let engine = tokio::task::spawn_blocking(move || Engine::start(cfg)).await??;
    let info = engine.info().clone();
    tracing::info!(model_id = %info.model_id, backend = info.backend.as_str(), threads = info.threads, "engine ready");

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(texts.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} embed [{bar:40}] {pos}/{len} texts {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };

    let start = Instant::now();
    let (mut tokens, mut truncated) = (0usize, 0usize);
    let mut results = futures::stream::iter(
        texts
            .chunks(TEXTS_PER_REQUEST)
            .map(|c| engine.embed(c.to_vec())),
    )
    .buffered(REQUESTS_IN_FLIGHT);
    let mut next_id = ids.iter();
    while let Some(batch) = results.next().await {
        for e in batch? {
            tokens += e.tokens;
            truncated += e.truncated as usize;
            let id = next_id.next().expect("one result per input");
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({ "id": id, "vector": e.vector }),
            )?;
            out.write_all(b"\n")?;
            bar.inc(1);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    out.flush()?;
    bar.finish_and_clear();
    if truncated > 0 {
        tracing::warn!(
            truncated,
            limit = info.max_seq_length,
            "texts over the model's token limit were truncated (embedded from their first tokens)"
        );
    }
    let stats = Stats {
        texts: texts.len(),
        tokens,
        truncated,
        seconds,
        texts_per_s: texts.len() as f64 / seconds.max(1e-9),
        tokens_per_s: tokens as f64 / seconds.max(1e-9),
        backend: info.backend.as_str(),
        precision: info.precision.as_str(),
        model_id: &info.model_id,
    };
    eprintln!("{}", serde_json::to_string(&stats)?);
    Ok(ExitCode::SUCCESS)
}
