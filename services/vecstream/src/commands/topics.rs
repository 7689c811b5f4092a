use std::process::ExitCode;

use vecstream_config::Config;
use vecstream_kafka::topics;

use crate::cli::TopicsCommand;

pub fn ensure_report(outcomes: &[topics::TopicOutcome]) -> String {
    outcomes
        .iter()
        .map(|o| {
            format!(
                "{:<24} {}\n",
                o.name,
                if o.created { "created" } else { "exists" }
            )
        })
        .collect()
}

pub async fn run(config: &Config, cmd: &TopicsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TopicsCommand::Create => {
            let outcomes = topics::ensure_topics(&config.kafka).await?;
            print!("{}", ensure_report(&outcomes));
        }
        TopicsCommand::List => {
            let info = topics::cluster_info(&config.kafka).await?;
            let ours: Vec<&str> = topics::specs().iter().map(|s| s.name).collect();
            let mut names = info.topics;
            names.sort();
            for name in names.iter().filter(|n| !n.starts_with("__")) {
                let mark = if ours.contains(&name.as_str()) {
                    "vecstream"
                } else {
                    ""
                };
                println!("{name:<32} {mark}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
