//! The embedder's Kafka transaction: a batch's records and its consumer offsets become
//! visible together or not at all. A producer fenced by a newer instance with the same
//! transactional id is fatal (the process must stop); everything else aborts and retries.

use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use vecstream_config::{EmbedderSettings, KafkaConfig};

use super::records::OutRecord;
use crate::PipelineError;

pub(super) const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// A transactional producer.
pub(super) struct Transactions {
    producer: FutureProducer,
    /// A commit librdkafka could not finish but says can be resumed: the next call resumes
    /// it (the same batch, retried by the caller) instead of aborting it.
    commit_pending: std::sync::atomic::AtomicBool,
}

impl Transactions {
    /// Creates the producer and fences any previous instance with `transactional_id`
    /// (blocks until that one's open transaction is aborted).
    pub async fn connect(
        kafka: &KafkaConfig,
        transactional_id: &str,
    ) -> Result<Self, PipelineError> {
        let producer: FutureProducer = vecstream_kafka::idempotent_config(kafka)
            .set("transactional.id", transactional_id)
            .set(
                "transaction.timeout.ms",
                (TXN_TIMEOUT.as_millis() * 2).to_string(),
            )
            .create()?;
        let this = Self {
            producer,
            commit_pending: Default::default(),
        };
        this.blocking("init_transactions", |p| p.init_transactions(TXN_TIMEOUT))
            .await?;
        Ok(this)
    }

    /// Runs a blocking transactional call on a blocking thread (never on the async
    /// runtime's workers, and with any runtime flavour).
    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        call: impl FnOnce(&FutureProducer) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<T, PipelineError> {
        self.blocking_raw(what, call)
            .await?
            .map_err(|e| txn_error(what, e))
    }

    /// [`Self::blocking`] keeping librdkafka's error, for the caller to tell resumable,
    /// abortable and fatal apart.
    async fn blocking_raw<T: Send + 'static>(
        &self,
        what: &'static str,
        call: impl FnOnce(&FutureProducer) -> Result<T, KafkaError> + Send + 'static,
    ) -> Result<Result<T, KafkaError>, PipelineError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || call(&producer))
            .await
            .map_err(|e| PipelineError::Transaction {
                retryable: true,
                message: format!("{what}: {e}"),
            })
    }

    /// Commits the open transaction. A commit librdkafka can resume (a broker restarting
    /// through all the attempts) is left open and resumed by the next call; one that
    /// requires an abort is aborted; a fatal error ends the producer.
    async fn finish_commit(&self) -> Result<(), PipelineError> {
        use std::sync::atomic::Ordering;
        let committed = self
            .blocking_raw("commit_transaction", |p| {
                retrying_retriable("commit_transaction", || p.commit_transaction(TXN_TIMEOUT))
            })
            .await?;
        match committed {
            Ok(()) => {
                self.commit_pending.store(false, Ordering::SeqCst);
                Ok(())
            }
            Err(e) if resumable(&e) => {
                self.commit_pending.store(true, Ordering::SeqCst);
                Err(txn_error(
                    "commit_transaction (resumed at the next attempt)",
                    e,
                ))
            }
            Err(e) => {
                self.commit_pending.store(false, Ordering::SeqCst);
                if !is_fatal(&e) {
                    self.abort().await;
                }
                Err(txn_error("commit_transaction", e))
            }
        }
    }

    async fn abort(&self) {
        if let Err(abort) = self
            .blocking("abort_transaction", |p| p.abort_transaction(TXN_TIMEOUT))
            .await
        {
            tracing::warn!(error = %abort, "abort_transaction failed");
        }
    }

    /// Produces `records` and commits `offsets` for `group` in one transaction; aborts it
    /// on a failure before the commit. When the previous call left a resumable commit, this
    /// call (the caller's retry of that same batch) resumes it instead.
    pub async fn commit(
        &self,
        records: &[OutRecord],
        offsets: &TopicPartitionList,
        group: ConsumerGroupMetadata,
    ) -> Result<(), PipelineError> {
        if self
            .commit_pending
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return self.finish_commit().await;
        }
        self.producer
            .begin_transaction()
            .map_err(|e| txn_error("begin_transaction", e))?;
        let outcome = async {
            let sends = records.iter().map(|r| {
                let mut rec: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(r.topic).key(r.key.as_slice());
                if let Some(p) = &r.payload {
                    rec = rec.payload(p.as_slice());
                }
                if let Some(p) = r.partition {
                    rec = rec.partition(p);
                }
                if let Some(h) = &r.headers {
                    rec = rec.headers(h.clone());
                }
                self.producer.send(rec, Timeout::After(TXN_TIMEOUT))
            });
            for result in futures::future::join_all(sends).await {
                result.map_err(|(e, _)| {
                    if is_fatal(&e) {
                        txn_error("produce", e)
                    } else {
                        PipelineError::from(e)
                    }
                })?;
            }
            let offsets = offsets.clone();
            self.blocking("send_offsets_to_transaction", move |p| {
                retrying_retriable("send_offsets_to_transaction", || {
                    p.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)
                })
            })
            .await
        }
        .await;
        if let Err(e) = outcome {
            self.abort().await;
            return Err(e);
        }
        self.finish_commit().await
    }
}

/// Calls of a transaction step that may simply be repeated before giving up on it.
const RETRIABLE_ATTEMPTS: u32 = 5;

/// Repeats `call` while librdkafka says its error is retriable (a commit that timed out
/// while a broker restarts): as librdkafka prescribes, the same call is made again rather
/// than the transaction aborted and redone. Any other error, or the last attempt's, is
/// returned (the caller aborts when it must).
fn retrying_retriable<T>(
    what: &str,
    mut call: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    let mut attempt = 1;
    loop {
        match call() {
            Err(KafkaError::Transaction(e))
                if e.is_retriable() && !e.txn_requires_abort() && attempt < RETRIABLE_ATTEMPTS =>
            {
                tracing::warn!(error = %e, attempt, "{what} can be retried as is: retrying");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
            }
            other => return other,
        }
    }
}

/// A transactional call librdkafka says may be made again as is (and must not be aborted).
fn resumable(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(t)
        if t.is_retriable() && !t.txn_requires_abort() && !t.is_fatal())
}

/// Errors that end the producer for good: librdkafka's fatal transactional errors, being
/// fenced by a newer instance with our transactional id, and a producer whose transaction
/// state no longer allows the next call (`__CONFLICT`, `__STATE`: restarting is the way out).
fn is_fatal(e: &KafkaError) -> bool {
    if let KafkaError::Transaction(t) = e
        && t.is_fatal()
    {
        return true;
    }
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                | RDKafkaErrorCode::Conflict
                | RDKafkaErrorCode::State
        )
    )
}

pub(super) fn txn_error(what: &str, e: KafkaError) -> PipelineError {
    PipelineError::Transaction {
        retryable: !is_fatal(&e),
        message: format!("{what}: {e}"),
    }
}

/// The transactional id: `embedder.transactional_id`, or one named after the host. Without
/// a host name it is unique to the process (never a shared constant, which would let two
/// hosts fence each other), at the price of not fencing a predecessor's open transaction.
pub(super) fn transactional_id(settings: &EmbedderSettings) -> String {
    if !settings.transactional_id.is_empty() {
        return settings.transactional_id.clone();
    }
    match hostname() {
        Some(host) => format!("vecstream-embedder-{host}"),
        None => {
            let id = format!("vecstream-embedder-{}", uuid::Uuid::new_v4().simple());
            tracing::warn!(
                transactional_id = %id,
                "no host name (HOSTNAME, /etc/hostname): using a transactional id unique to \
                 this process; a restart cannot fence its predecessor's open transaction \
                 (it times out instead). Set embedder.transactional_id to a stable, unique name"
            );
            id
        }
    }
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vecstream_core::Classify;

    #[test]
    fn fatal_transaction_errors_are_permanent() {
        for code in [
            RDKafkaErrorCode::Fatal,
            RDKafkaErrorCode::Fenced,
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
            RDKafkaErrorCode::Conflict,
            RDKafkaErrorCode::State,
        ] {
            let e = txn_error("commit", KafkaError::MessageProduction(code));
            assert!(!e.class().is_retryable(), "{code:?}: {e}");
        }
    }

    #[test]
    fn transient_transaction_errors_are_retryable() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::NotCoordinator,
        ] {
            let e = txn_error("commit", KafkaError::MessageProduction(code));
            assert!(e.class().is_retryable(), "{code:?}: {e}");
        }
    }

    #[test]
    fn a_configured_transactional_id_wins_and_none_is_ever_a_shared_constant() {
        let mut s = EmbedderSettings {
            transactional_id: "mine".into(),
            ..Default::default()
        };
        assert_eq!(transactional_id(&s), "mine");
        s.transactional_id.clear();
        let a = transactional_id(&s);
        assert!(a.starts_with("vecstream-embedder-") && a != "vecstream-embedder-local");
    }
}
