//! One module per command.

pub mod collections;
pub mod config;
pub mod dlq;
pub mod embed;
pub mod finetune;
pub mod job_common;
pub mod jobs;
pub mod lineage;
pub mod lineage_status;
pub mod produce;
pub mod review;
pub mod run;
pub mod run_embedder;
pub mod search;
pub mod serve;
pub mod status;
pub mod topics;
