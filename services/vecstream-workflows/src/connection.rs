use std::time::Duration;

use temporalio_client::{
    Client, ClientOptions, ClientTlsOptions, Connection, ConnectionOptions, TlsOptions, Url,
};
use temporalio_common::protos::temporal::api::workflowservice::v1::DescribeNamespaceRequest;
use vecstream_config::TemporalConfig;
use vecstream_core::{Classify, ErrorClass};

/// Failures talking to Temporal.
#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    #[error("invalid temporal configuration: {0}")]
    Config(String),
    #[error("temporal unreachable at {address}: {message}")]
    Unreachable { address: String, message: String },
    #[error("temporal namespace {namespace:?}: {message}")]
    Namespace { namespace: String, message: String },
    /// A start refused because a workflow with this id exists already (running, or closed
    /// under a reuse policy that forbids another run): the same job started twice.
    #[error(
        "workflow {workflow_id}: refused: a workflow with this id exists already (a second \
         start of the same job){}{}",
        run_id.as_deref().map(|r| format!(", run {r}")).unwrap_or_default(),
        status_hint(workflow_id)
    )]
    AlreadyStarted {
        workflow_id: String,
        run_id: Option<String>,
    },
    #[error("workflow {workflow_id}: {message}")]
    Workflow {
        workflow_id: String,
        message: String,
    },
    #[error("worker: {0}")]
    Worker(String),
}

/// Where to look at an existing job, for the commands that have a `status`.
fn status_hint(workflow_id: &str) -> String {
    match workflow_id.split('-').next() {
        Some(job @ ("reindex" | "finetune")) => {
            format!("; see `vecstream {job} status {workflow_id}`")
        }
        _ => String::new(),
    }
}

impl Classify for TemporalError {
    fn class(&self) -> ErrorClass {
        match self {
            TemporalError::Unreachable { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }
}

fn read_pem(path: &str, what: &str) -> Result<Vec<u8>, TemporalError> {
    std::fs::read(path)
        .map_err(|e| TemporalError::Config(format!("cannot read {what} {path}: {e}")))
}

fn tls_options(cfg: &TemporalConfig) -> Result<Option<TlsOptions>, TemporalError> {
    let wants_tls =
        cfg.tls || cfg.address.starts_with("https://") || !cfg.tls_client_cert.is_empty();
    if !wants_tls {
        return Ok(None);
    }
    let ca = if cfg.tls_ca_cert.is_empty() {
        None
    } else {
        Some(read_pem(&cfg.tls_ca_cert, "temporal.tls_ca_cert")?)
    };
    let client_tls = match (
        cfg.tls_client_cert.is_empty(),
        cfg.tls_client_key.is_empty(),
    ) {
        (true, true) => None,
        (false, false) => Some(
            ClientTlsOptions::builder()
                .client_cert(read_pem(&cfg.tls_client_cert, "temporal.tls_client_cert")?)
                .client_private_key(read_pem(&cfg.tls_client_key, "temporal.tls_client_key")?)
                .build(),
        ),
        _ => {
            return Err(TemporalError::Config(
                "mTLS needs both tls_client_cert and tls_client_key".into(),
            ));
        }
    };
    let tls = TlsOptions::builder()
        .maybe_server_root_ca_cert(ca)
        .maybe_client_tls_options(client_tls)
        .build();
    Ok(Some(tls))
}

/// Connects a client to the configured frontend and namespace.
pub async fn connect(cfg: &TemporalConfig) -> Result<Client, TemporalError> {
    let url = Url::parse(&cfg.address)
        .map_err(|e| TemporalError::Config(format!("temporal.address {:?}: {e}", cfg.address)))?;
    let options = ConnectionOptions::new(url)
        .identity(format!("vecstream@{}", std::process::id()))
        .connect_timeout(Duration::from_secs(10))
        .maybe_tls_options(tls_options(cfg)?)
        .maybe_api_key((!cfg.api_key.is_empty()).then(|| cfg.api_key.expose().to_owned()))
        .build();
    let connection =
        Connection::connect(options)
            .await
            .map_err(|e| TemporalError::Unreachable {
                address: cfg.address.clone(),
                message: e.to_string(),
            })?;
    Client::new(
        connection,
        ClientOptions::new(cfg.namespace.clone()).build(),
    )
    .map_err(|e| TemporalError::Config(e.to_string()))
}

/// Checks that the namespace exists: the Temporal health check of `vecstream status`.
/// Returns the namespace's state as the server names it.
pub async fn describe_namespace(client: &Client, namespace: &str) -> Result<String, TemporalError> {
    let mut svc = client.connection().workflow_service();
    let req = DescribeNamespaceRequest {
        namespace: namespace.to_owned(),
        ..Default::default()
    };
    let resp = svc
        .describe_namespace(temporalio_client::tonic::Request::new(req))
        .await
        .map_err(|s| TemporalError::Namespace {
            namespace: namespace.to_owned(),
            message: s.message().to_owned(),
        })?
        .into_inner();
    let state = resp
        .namespace_info
        .map(|i| i.state().as_str_name().to_owned())
        .unwrap_or_default();
    Ok(state)
}
