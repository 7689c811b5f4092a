use std::process::ExitCode;

use vecstream_config::Config;

use crate::cli::ConfigCommand;

pub fn run(config: &Config, cmd: &ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Show { keys: true } => {
            for (key, env) in Config::env_keys() {
                println!("{key:<32} {env}");
            }
        }
        ConfigCommand::Show { keys: false } => print!("{}", config.to_redacted_toml()),
    }
    Ok(ExitCode::SUCCESS)
}
