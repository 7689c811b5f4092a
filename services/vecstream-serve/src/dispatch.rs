//! The dispatcher: one task that takes batches from the lane scheduler and feeds them to
//! the engine one at a time, so a query never queues behind more than the batch in hand.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};
use vecstream_core::Lane;
use vecstream_engine::Engine;

use crate::lanes::{Queued, Rejected, Scheduler};
use crate::metrics::ServeMetrics;

type Reply = Result<Vec<Vec<f32>>, String>;

/// A request's answers as its texts come back (possibly over several batches).
struct Pending {
    state: Mutex<PendingState>,
}

struct PendingState {
    vectors: Vec<Option<Vec<f32>>>,
    left: usize,
    tx: Option<oneshot::Sender<Reply>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fill(&self, index: usize, result: Result<Vec<f32>, String>) {
        let mut st = self.lock();
        match result {
            Ok(v) => {
                if st.vectors[index].replace(v).is_none() {
                    st.left -= 1;
                }
                if st.left == 0
                    && let Some(tx) = st.tx.take()
                {
                    let vectors = st
                        .vectors
                        .iter_mut()
                        .map(|v| v.take().unwrap_or_default())
                        .collect();
                    let _ = tx.send(Ok(vectors));
                }
            }
            Err(e) => {
                if let Some(tx) = st.tx.take() {
                    let _ = tx.send(Err(e));
                }
            }
        }
    }
}

/// One text of a request.
pub(crate) struct Work {
    ids: Vec<u32>,
    pending: Arc<Pending>,
    index: usize,
}

impl Queued for Work {
    fn tokens(&self) -> usize {
        self.ids.len()
    }

    fn cancelled(&self) -> bool {
        // The caller went away (or the request already failed).
        self.pending
            .lock()
            .tx
            .as_ref()
            .is_none_or(|t| t.is_closed())
    }
}

/// See the module docs.
pub(crate) struct Dispatcher {
    scheduler: Mutex<Scheduler<Work>>,
    notify: Notify,
    engine: Arc<Engine>,
    budget: usize,
    max_wait: Duration,
    metrics: ServeMetrics,
}

impl Dispatcher {
    pub fn new(
        engine: Arc<Engine>,
        scheduler: Scheduler<Work>,
        budget: usize,
        max_wait: Duration,
        metrics: ServeMetrics,
    ) -> Arc<Self> {
        Arc::new(Self {
            scheduler: Mutex::new(scheduler),
            notify: Notify::new(),
            engine,
            budget: budget.max(1),
            max_wait,
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler<Work>> {
        self.scheduler.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuses now a request of about `cost` tokens in `lane` that cannot be queued.
    pub fn check(&self, lane: Lane, cost: usize) -> Result<(), Rejected> {
        self.lock().check(lane, cost)
    }

    /// Queues `sequences` (`[CLS] … [SEP]`) in `lane`; the receiver gets their vectors in
    /// order, or the engine's error.
    pub fn submit(
        &self,
        lane: Lane,
        sequences: Vec<Vec<u32>>,
    ) -> Result<oneshot::Receiver<Reply>, Rejected> {
        let (tx, rx) = oneshot::channel();
        let n = sequences.len();
        let pending = Arc::new(Pending {
            state: Mutex::new(PendingState {
                vectors: vec![None; n],
                left: n,
                tx: Some(tx),
            }),
        });
        if n == 0 {
            pending.lock().tx.take().map(|tx| tx.send(Ok(Vec::new())));
            return Ok(rx);
        }
        let items = sequences
            .into_iter()
            .enumerate()
            .map(|(index, ids)| Work {
                ids,
                pending: pending.clone(),
                index,
            })
            .collect();
        {
            let mut s = self.lock();
            s.admit(lane, items, Instant::now())?;
            self.metrics
                .queued_tokens
                .with_label_values(&[lane.as_str()])
                .set(s.queued_tokens(lane) as i64);
        }
        self.notify.notify_one();
        Ok(rx)
    }

    /// Runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            // Wait for work, then for a full batch or the oldest text's `max_wait`.
            loop {
                let (total, oldest) = {
                    let s = self.lock();
                    (s.total_queued(), s.oldest())
                };
                let Some(oldest) = oldest else {
                    self.notify.notified().await;
                    continue;
                };
                let left = self.max_wait.saturating_sub(oldest.elapsed());
                if total >= self.budget || left.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep(left) => {}
                }
            }
            let batch = {
                let mut s = self.lock();
                let batch = s.next_batch(self.budget, Instant::now());
                for lane in Lane::ALL {
                    self.metrics
                        .queued_tokens
                        .with_label_values(&[lane.as_str()])
                        .set(s.queued_tokens(lane) as i64);
                }
                batch
            };
            if batch.is_empty() {
                continue;
            }
            let mut tokens = 0;
            let mut sequences = Vec::with_capacity(batch.len());
            let mut slots = Vec::with_capacity(batch.len());
            for taken in batch {
                let lane = taken.lane.as_str();
                self.metrics
                    .wait_seconds
                    .with_label_values(&[lane])
                    .observe(taken.waited.as_secs_f64());
                self.metrics
                    .batch_tokens
                    .with_label_values(&[lane])
                    .inc_by(taken.item.ids.len() as u64);
                tokens += taken.item.ids.len();
                sequences.push(taken.item.ids);
                slots.push((taken.item.pending, taken.item.index));
            }
            let started = Instant::now();
            let result = self.engine.embed_tokens(sequences).await;
            self.lock().observe(tokens, started.elapsed());
            match result {
                Ok(embedded) => {
                    for ((pending, index), e) in slots.into_iter().zip(embedded) {
                        pending.fill(index, Ok(e.vector));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "embedding a batch failed");
                    for (pending, index) in slots {
                        pending.fill(index, Err(e.to_string()));
                    }
                }
            }
        }
    }
}
