//! Layered configuration: defaults → `vecstream.toml` → `VECSTREAM_*` env → flags.

mod layers;
mod model;
mod secret;

pub use layers::{ConfigError, ConfigSource, LoadOptions, env_var_name};
pub use model::{
    Config, EmbedderSettings, EngineSettings, KafkaConfig, OpenLineageSettings, RegistryConfig,
    RemoteProvider, ReviewSettings, ServeSettings, SinkSettings, TelemetryConfig, TemporalConfig,
    WeaviateConfig, cache_dir,
};
pub use secret::Secret;
