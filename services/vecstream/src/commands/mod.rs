//! One module per command.

pub mod config;
pub mod dlq;
pub mod embed;
pub mod jobs;
pub mod lineage;
pub mod produce;
pub mod run;
pub mod search;
pub mod status;
pub mod topics;

use std::process::ExitCode;

/// Exit status of a command that exists in the CLI but whose issue has not landed.
pub const EXIT_NOT_AVAILABLE: u8 = 69;

/// Says plainly that a command is not available in this build, and why.
pub fn pending(command: &str, issue: u32, title: &str) -> ExitCode {
    eprintln!(
        "vecstream {command}: not available in this build yet; it arrives with issue #{issue} ({title})."
    );
    ExitCode::from(EXIT_NOT_AVAILABLE)
}
