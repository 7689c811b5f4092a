//! Loading: defaults → file → environment → flags, each layer a `toml::Value` merged
//! over the previous one, deserialised once at the end so unknown keys are caught.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Value;
use vecstream_core::{Classify, ErrorClass};

use crate::Config;

/// Prefix of every environment variable vecstream reads.
pub const ENV_PREFIX: &str = "VECSTREAM_";

/// Why the configuration could not be loaded. Always permanent: fix the input.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid value for {origin}: {message}")]
    Value { origin: String, message: String },
    #[error("unknown config key `{key}` (from {origin}); known keys: see `vecstream --help`")]
    UnknownKey { key: String, origin: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Classify for ConfigError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Permanent
    }
}

/// Where the values came from, for `vecstream status` and start-up logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Defaults,
    File(PathBuf),
    Env(String),
    Flag(String),
}

/// Inputs of [`Config::load`].
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// Explicit config file (`--config`); must exist. When `None`, `./vecstream.toml` is
    /// read if present.
    pub file: Option<PathBuf>,
    /// `(dotted key, raw value)` pairs from flags, applied last.
    pub overrides: Vec<(String, String)>,
    /// Environment to read; `None` reads the process environment.
    pub env: Option<BTreeMap<String, String>>,
}

/// The environment variable of a dotted key: `kafka.sasl_password` →
/// `VECSTREAM_KAFKA_SASL_PASSWORD`.
pub fn env_var_name(dotted_key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        dotted_key.replace('.', "_").to_uppercase()
    )
}

impl Config {
    /// Loads the layered configuration and validates it.
    pub fn load(opts: &LoadOptions) -> Result<(Config, Vec<ConfigSource>), ConfigError> {
        let defaults =
            Value::try_from(Config::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut merged = defaults.clone();
        let mut sources = vec![ConfigSource::Defaults];

        let file = match &opts.file {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from("vecstream.toml")).filter(|p| p.exists()),
        };
        if let Some(path) = file {
            merge(&mut merged, read_file(&path)?);
            sources.push(ConfigSource::File(path));
        }

        let env = opts
            .env
            .clone()
            .unwrap_or_else(|| std::env::vars().collect());
        for (key, default) in leaves(&defaults) {
            let var = env_var_name(&key);
            if let Some(raw) = env.get(&var) {
                set_leaf(&mut merged, &key, parse_like(default, raw, &var)?);
                sources.push(ConfigSource::Env(var));
            }
        }

        for (key, raw) in &opts.overrides {
            let origin = format!("--set {key}");
            let default = lookup(&defaults, key).ok_or_else(|| ConfigError::UnknownKey {
                key: key.clone(),
                origin: origin.clone(),
            })?;
            set_leaf(&mut merged, key, parse_like(default, raw, &origin)?);
            sources.push(ConfigSource::Flag(key.clone()));
        }

        let config: Config = merged
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        config.validate()?;
        Ok((config, sources))
    }

    /// The credentials configured for an endpoint that would carry them unencrypted
    /// (`http://`, Kafka `plaintext`/`sasl_plaintext`), one sentence each: every process
    /// logs them once at start.
    pub fn plaintext_credentials(&self) -> Vec<String> {
        let mut out = Vec::new();
        let protocol = self.kafka.security_protocol.to_lowercase();
        if !self.kafka.sasl_password.is_empty() && !protocol.ends_with("ssl") {
            out.push(format!(
                "kafka.sasl_password is set but kafka.security_protocol is {protocol}: the \
                 SASL exchange with the brokers is not encrypted (use sasl_ssl)"
            ));
        }
        let plain = |url: &str| url.starts_with("http://");
        if !self.registry.password.is_empty() && plain(&self.registry.url) {
            out.push(format!(
                "registry.password is set but registry.url is {}: basic auth goes out \
                 unencrypted (use https://)",
                self.registry.url
            ));
        }
        if !self.weaviate.api_key.is_empty() && plain(&self.weaviate.url) {
            out.push(format!(
                "weaviate.api_key is set but weaviate.url is {}: the key goes out \
                 unencrypted (use https://)",
                self.weaviate.url
            ));
        }
        for p in &self.engine.providers {
            if !p.api_key.is_empty() && plain(&p.url) {
                out.push(format!(
                    "engine.providers `{}` has an api_key but its url is {}: the key goes out \
                     unencrypted (use https://)",
                    p.name, p.url
                ));
            }
        }
        if !self.temporal.api_key.is_empty() && !self.temporal.tls && plain(&self.temporal.address)
        {
            out.push(format!(
                "temporal.api_key is set but temporal.address is {} without temporal.tls: the \
                 key goes out unencrypted",
                self.temporal.address
            ));
        }
        out
    }

    /// Every key with its environment variable, in file order.
    pub fn env_keys() -> Vec<(String, String)> {
        let defaults = Value::try_from(Config::default()).expect("defaults serialise");
        leaves(&defaults)
            .into_iter()
            .map(|(k, _)| (env_var_name(&k), k))
            .map(|(e, k)| (k, e))
            .collect()
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let protocols = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
        let protocol = self.kafka.security_protocol.to_lowercase();
        if !protocols.contains(&protocol.as_str()) {
            return Err(invalid(
                "kafka.security_protocol",
                &format!("must be one of {protocols:?}"),
            ));
        }
        if protocol.starts_with("sasl") && self.kafka.sasl_mechanism.is_empty() {
            return Err(invalid(
                "kafka.sasl_mechanism",
                "required with a sasl_* security_protocol",
            ));
        }
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must name at least one broker"));
        }
        if self.kafka.partitions < 1
            || (self.kafka.replication_factor < 1 && self.kafka.replication_factor != -1)
        {
            return Err(invalid(
                "kafka.partitions/replication_factor",
                "must be at least 1 (replication_factor: or -1, the cluster's default)",
            ));
        }
        for (key, url) in [
            ("registry.url", &self.registry.url),
            ("temporal.address", &self.temporal.address),
            ("weaviate.url", &self.weaviate.url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(key, "must start with http:// or https://"));
            }
        }
        self.validate_providers()?;
        self.validate_serve()?;
        let ol = &self.openlineage;
        if !(ol.http_url.is_empty()
            || ol.http_url.starts_with("http://")
            || ol.http_url.starts_with("https://"))
        {
            return Err(invalid(
                "openlineage.http_url",
                "must start with http:// or https://",
            ));
        }
        if ol.http_buffer_events == 0 || ol.http_batch_size == 0 || ol.http_max_attempts == 0 {
            return Err(invalid(
                "openlineage.http_buffer_events/http_batch_size/http_max_attempts",
                "must be at least 1",
            ));
        }
        if !["text", "json"].contains(&self.telemetry.log_format.as_str()) {
            return Err(invalid("telemetry.log_format", "must be text or json"));
        }
        if self
            .telemetry
            .metrics_addr
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(invalid(
                "telemetry.metrics_addr",
                "must be host:port with an IP host",
            ));
        }
        Ok(())
    }
}

/// The lanes of `vecstream serve`, highest priority first.
pub const LANES: [&str; 3] = ["query", "stream", "bulk"];

impl Config {
    fn validate_providers(&self) -> Result<(), ConfigError> {
        let engine = &self.engine;
        let mut names = std::collections::BTreeSet::new();
        for p in &engine.providers {
            let key = format!("engine.providers `{}`", p.name);
            if p.name.is_empty() || p.name == "local" {
                return Err(invalid(
                    "engine.providers.name",
                    "every provider needs a name other than `local`",
                ));
            }
            if !names.insert(p.name.as_str()) {
                return Err(invalid(&key, "two providers have this name"));
            }
            if !["openai", "tei"].contains(&p.kind.as_str()) {
                return Err(invalid(&key, "kind must be openai or tei"));
            }
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                return Err(invalid(&key, "url must start with http:// or https://"));
            }
            if p.kind == "openai" && p.model.is_empty() {
                return Err(invalid(&key, "an openai provider needs a model"));
            }
            if !p.lane.is_empty() && !LANES.contains(&p.lane.as_str()) {
                return Err(invalid(&key, "lane must be query, stream, bulk or empty"));
            }
            if p.max_batch == 0 || p.max_attempts == 0 || p.timeout_ms == 0 {
                return Err(invalid(
                    &key,
                    "max_batch, max_attempts and timeout_ms must be at least 1",
                ));
            }
            if p.requests_per_second < 0.0 || !p.requests_per_second.is_finite() {
                return Err(invalid(&key, "requests_per_second must be 0 or more"));
            }
        }
        let known = |n: &str| n == "local" || names.contains(n);
        if !known(&engine.provider) {
            return Err(invalid(
                "engine.provider",
                &format!(
                    "`{}` is neither `local` nor the name of an [[engine.providers]] entry",
                    engine.provider
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::from([engine.provider.as_str()]);
        for f in &engine.fallback {
            if !known(f) {
                return Err(invalid(
                    "engine.fallback",
                    &format!("`{f}` is neither `local` nor a provider's name"),
                ));
            }
            if !seen.insert(f.as_str()) {
                return Err(invalid(
                    "engine.fallback",
                    &format!("`{f}` is listed twice (or is the provider itself)"),
                ));
            }
        }
        Ok(())
    }

    fn validate_serve(&self) -> Result<(), ConfigError> {
        let s = &self.serve;
        if !LANES.contains(&s.default_lane.as_str()) {
            return Err(invalid(
                "serve.default_lane",
                "must be query, stream or bulk",
            ));
        }
        if s.starvation_ms < 100 {
            return Err(invalid(
                "serve.starvation_ms",
                "must be at least 100: below, every lower lane counts as starved and goes first",
            ));
        }
        if s.max_inputs == 0 || s.max_body_bytes == 0 || s.batch_tokens == 0 {
            return Err(invalid(
                "serve.max_inputs/max_body_bytes/batch_tokens",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

fn invalid(key: &str, message: &str) -> ConfigError {
    ConfigError::Value {
        origin: key.to_owned(),
        message: message.to_owned(),
    }
}

fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let value: Value = toml::from_str(&text).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    // Reject unknown keys here, with the file named, rather than at the final merge.
    let defaults = Value::try_from(Config::default()).expect("defaults serialise");
    for (key, _) in leaves(&value) {
        if lookup(&defaults, &key).is_none() {
            return Err(ConfigError::UnknownKey {
                key,
                origin: path.display().to_string(),
            });
        }
    }
    Ok(value)
}

/// Dotted paths of every non-table value.
fn leaves(value: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(prefix: &str, value: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        match value {
            Value::Table(table) => {
                for (k, v) in table {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            leaf => out.push((prefix.to_owned(), leaf)),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

fn lookup<'a>(value: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted
        .split('.')
        .try_fold(value, |v, part| v.as_table()?.get(part))
        .filter(|v| !v.is_table())
}

fn set_leaf(root: &mut Value, dotted: &str, new: Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut cur = root;
    for part in parts {
        let table = cur
            .as_table_mut()
            .expect("parent of a known leaf is a table");
        cur = table
            .entry(part)
            .or_insert_with(|| Value::Table(Default::default()));
    }
    if let Some(table) = cur.as_table_mut() {
        table.insert(last.to_owned(), new);
    }
}

fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Table(b), Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Parses a raw string (env or flag) into the TOML type of the key's default.
fn parse_like(default: &Value, raw: &str, origin: &str) -> Result<Value, ConfigError> {
    let bad = |what: &str| ConfigError::Value {
        origin: origin.to_owned(),
        message: format!("expected {what}, got {raw:?}"),
    };
    Ok(match default {
        Value::Integer(_) => Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?),
        Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?),
        Value::Boolean(_) => match raw.trim().to_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Value::Boolean(true),
            "0" | "false" | "no" | "off" | "" => Value::Boolean(false),
            _ => return Err(bad("true or false")),
        },
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.into()))
                .collect(),
        ),
        _ => Value::String(raw.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: Option<&str>,
        env: &[(&str, &str)],
        flags: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vecstream.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let opts = LoadOptions {
            file: file.map(|_| path.clone()),
            overrides: flags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env: Some(
                env.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        };
        Config::load(&opts).map(|(c, _)| c)
    }

    #[test]
    fn providers_from_the_file_with_a_fallback_list_from_the_env() {
        let file = r#"
[engine]
provider = "serve"
[[engine.providers]]
name = "serve"
kind = "openai"
url = "http://127.0.0.1:8088/v1"
model = "m"
requests_per_second = 20.0
[[engine.providers]]
name = "tei"
kind = "tei"
url = "http://127.0.0.1:8089"
"#;
        let c = load(
            Some(file),
            &[("VECSTREAM_ENGINE_FALLBACK", "tei, local")],
            &[],
        )
        .unwrap();
        assert_eq!(c.engine.provider, "serve");
        assert_eq!(c.engine.fallback, vec!["tei", "local"]);
        assert_eq!(c.engine.providers.len(), 2);
        assert_eq!(c.engine.providers[0].requests_per_second, 20.0);
        assert_eq!(
            c.engine.providers[1].max_attempts, 4,
            "defaults fill the rest"
        );

        let err = load(Some(file), &[("VECSTREAM_ENGINE_FALLBACK", "nope")], &[]).unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
        let err = load(Some(file), &[("VECSTREAM_ENGINE_FALLBACK", "serve")], &[]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let bad_key = file
            .replace("max_batch", "x")
            .replace("model = \"m\"", "model = \"m\"\nmodle = 1");
        let err = load(Some(&bad_key), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("modle"), "{err}");
        let err = load(
            Some(&file.replace("kind = \"tei\"", "kind = \"grpc\"")),
            &[],
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("openai or tei"), "{err}");
        let err = load(None, &[("VECSTREAM_SERVE_DEFAULT_LANE", "vip")], &[]).unwrap_err();
        assert!(err.to_string().contains("serve.default_lane"), "{err}");
    }

    #[test]
    fn defaults_point_at_the_local_stack() {
        let c = load(None, &[], &[]).unwrap();
        assert_eq!(c.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(c.registry.url, "http://127.0.0.1:8081/apis/ccompat/v7");
        assert_eq!(c.temporal.address, "http://127.0.0.1:7233");
        assert_eq!(c.weaviate.url, "http://127.0.0.1:8080");
        assert_eq!(c.telemetry.metrics_addr, "127.0.0.1:9464");
    }

    #[test]
    fn file_then_env_then_flags_win_in_that_order() {
        let file = "[kafka]\nbrokers = \"file:9092\"\npartitions = 3\n[weaviate]\nurl = \"http://file:8080\"\n";
        let env = [
            ("VECSTREAM_KAFKA_BROKERS", "env:9092"),
            ("VECSTREAM_WEAVIATE_URL", "http://env:8080"),
        ];
        let c = load(Some(file), &env, &[("weaviate.url", "http://flag:8080")]).unwrap();
        assert_eq!(c.kafka.partitions, 3, "file beats defaults");
        assert_eq!(c.kafka.brokers, "env:9092", "env beats file");
        assert_eq!(c.weaviate.url, "http://flag:8080", "flag beats env");
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_it() {
        let err = load(Some("[kafka]\nbrokerz = \"x\"\n"), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("kafka.brokerz"), "{err}");
        let err = load(Some("[kafkaa]\nbrokers = \"x\"\n"), &[], &[]).unwrap_err();
        assert!(err.to_string().contains("kafkaa.brokers"), "{err}");
        assert_eq!(err.class(), ErrorClass::Permanent);
    }

    #[test]
    fn unknown_flag_key_and_bad_types_are_errors() {
        assert!(matches!(
            load(None, &[], &[("kafka.nope", "1")]),
            Err(ConfigError::UnknownKey { .. })
        ));
        let err = load(None, &[("VECSTREAM_KAFKA_PARTITIONS", "many")], &[]).unwrap_err();
        assert!(
            err.to_string().contains("VECSTREAM_KAFKA_PARTITIONS"),
            "{err}"
        );
        let err = load(None, &[("VECSTREAM_TEMPORAL_TLS", "maybe")], &[]).unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
    }

    #[test]
    fn validation_rejects_bad_values() {
        assert!(load(None, &[], &[("kafka.security_protocol", "carrier-pigeon")]).is_err());
        assert!(load(None, &[], &[("kafka.security_protocol", "sasl_ssl")]).is_err());
        assert!(load(None, &[], &[("weaviate.url", "localhost:8080")]).is_err());
        assert!(load(None, &[], &[("telemetry.log_format", "xml")]).is_err());
    }

    #[test]
    fn replication_factor_is_the_clusters_default_unless_set() {
        // -1 asks the cluster for its default.replication.factor (3 on a production
        // cluster, 1 on the one-broker stack).
        assert_eq!(load(None, &[], &[]).unwrap().kafka.replication_factor, -1);
        let three = load(None, &[], &[("kafka.replication_factor", "3")]).unwrap();
        assert_eq!(three.kafka.replication_factor, 3);
        for bad in ["0", "-2"] {
            let err = load(None, &[], &[("kafka.replication_factor", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("replication_factor"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn secrets_from_env_are_usable_but_never_rendered() {
        let c = load(None, &[("VECSTREAM_KAFKA_SASL_PASSWORD", "s3cret")], &[]).unwrap();
        assert_eq!(c.kafka.sasl_password.expose(), "s3cret");
        let rendered = format!("{c:?}\n{}", c.to_redacted_toml());
        assert!(!rendered.contains("s3cret"));
        assert!(rendered.contains("<redacted>"));
    }

    #[test]
    fn every_key_has_an_env_var() {
        let keys = Config::env_keys();
        assert!(keys.contains(&(
            "kafka.sasl_password".into(),
            "VECSTREAM_KAFKA_SASL_PASSWORD".into()
        )));
        assert!(keys.contains(&(
            "telemetry.otlp_endpoint".into(),
            "VECSTREAM_TELEMETRY_OTLP_ENDPOINT".into()
        )));
        assert!(keys.len() >= 25, "{keys:?}");
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let opts = LoadOptions {
            file: Some("/nonexistent/vecstream.toml".into()),
            env: Some(BTreeMap::new()),
            ..Default::default()
        };
        assert!(matches!(Config::load(&opts), Err(ConfigError::Read { .. })));
    }

    #[test]
    fn credentials_on_plaintext_endpoints_are_named() {
        let c = load(None, &[], &[]).unwrap();
        assert!(
            c.plaintext_credentials().is_empty(),
            "no credential, nothing to say"
        );
        let c = load(
            None,
            &[
                ("VECSTREAM_KAFKA_SASL_PASSWORD", "s3cret"),
                ("VECSTREAM_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
                ("VECSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                ("VECSTREAM_REGISTRY_PASSWORD", "s3cret"),
                ("VECSTREAM_WEAVIATE_API_KEY", "k"),
                ("VECSTREAM_TEMPORAL_API_KEY", "k"),
            ],
            &[],
        )
        .unwrap();
        let warnings = c.plaintext_credentials();
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        for key in [
            "kafka.sasl_password",
            "registry.password",
            "weaviate.api_key",
            "temporal.api_key",
        ] {
            assert!(warnings.iter().any(|w| w.starts_with(key)), "{key}");
        }
        assert!(!warnings.iter().any(|w| w.contains("s3cret")));
        let c = load(
            None,
            &[
                ("VECSTREAM_KAFKA_SASL_PASSWORD", "s3cret"),
                ("VECSTREAM_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                ("VECSTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                ("VECSTREAM_WEAVIATE_API_KEY", "k"),
                ("VECSTREAM_WEAVIATE_URL", "https://weaviate.example.com"),
            ],
            &[],
        )
        .unwrap();
        assert!(c.plaintext_credentials().is_empty());
    }
}
