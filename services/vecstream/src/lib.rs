//! `vecstream`: one binary for every part of the pipeline and its operations.
//!
//! The binary (`main.rs`) calls [`main_with`] with the default [`Hooks`]. The library exists
//! so that a test build can run the very same command with another hook: the load test's
//! deliberately broken sink (`loadtest/broken-sink`) plugs in a wrong commit order there,
//! instead of a fault switch living in the production code.

mod cli;
mod commands;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use vecstream_config::{Config, LoadOptions};
use vecstream_pipeline::{CommitStrategy, EffectsThenOffsets};

use crate::cli::{Cli, Command};

/// The parts of the command a test build may replace.
#[derive(Debug, Clone)]
pub struct Hooks {
    /// How `run sink` orders a batch's effects and offsets.
    pub sink_commit: Arc<dyn CommitStrategy>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            sink_commit: Arc::new(EffectsThenOffsets),
        }
    }
}

/// Parses the command line and runs the command; the process's exit code.
pub fn main_with(hooks: Hooks) -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, hooks)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, hooks: Hooks) -> anyhow::Result<ExitCode> {
    let mut overrides = cli.global.overrides();
    if let Command::Embed(args) = &cli.command {
        overrides.extend(args.overrides());
    }
    if let Command::Serve(args) = &cli.command {
        overrides.extend(args.overrides().map_err(anyhow::Error::msg)?);
    }
    let options = LoadOptions {
        file: cli.global.config.clone(),
        overrides,
        env: None,
    };
    let (config, sources) = Config::load(&options)?;
    let _tracing = vecstream_telemetry::init_tracing(&config.telemetry)?;
    tracing::debug!(?sources, "configuration loaded");
    for warning in config.plaintext_credentials() {
        tracing::warn!("{warning}");
    }

    if matches!(cli.command, Command::Lineage(_) | Command::Dlq(_)) {
        // Refused credentials or an untrusted certificate: said now, naming Kafka.
        vecstream_kafka::topics::cluster_info(&config.kafka).await?;
    }
    match cli.command {
        Command::Status(args) => commands::status::run(&config, &args).await,
        Command::Produce(args) => commands::produce::run(&config, &args).await,
        Command::Topics(cmd) => commands::topics::run(&config, &cmd).await,
        Command::Config(cmd) => commands::config::run(&config, &cmd),
        Command::Run(args) => commands::run::run(&config, &args, &hooks).await,
        Command::Embed(args) => commands::embed::run(&config, &args).await,
        Command::Search(args) => commands::search::run(&config, &args).await,
        Command::Serve(_) => commands::serve::run(&config).await,
        Command::Reindex(cmd) => commands::jobs::reindex(&config, &cmd).await,
        Command::Review(cmd) => commands::review::run(&config, &cmd).await,
        Command::Finetune(cmd) => commands::finetune::run(&config, &cmd).await,
        Command::Eval(cmd) => commands::jobs::eval(&config, &cmd).await,
        Command::Lineage(cmd) => commands::lineage::run(&config, &cmd).await,
        Command::Dlq(cmd) => commands::dlq::run(&config, &cmd).await,
    }
}
