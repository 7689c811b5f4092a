//! vecstream's fine-tuning: the training of the linear retrieval adapter on a frozen
//! encoder ([`train`]) and the model store of registered fine-tuned versions
//! ([`model_store`]).
//!
//! The engine (`vecstream-engine`) only *applies* an adapter; everything that produces one
//! or files it away lives here, on top of the engine's CPU kernels and file primitives.
//! The engine never depends on this crate.

pub mod model_store;
pub mod train;

pub use model_store::{MANIFEST_FILE, Manifest, ModelStore};
pub use train::{Checkpoint, PairTable, TrainConfig, Trainer, loss_and_gradient};
