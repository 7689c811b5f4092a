use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use vecstream_engine::Engine;

use crate::{EmbedInput, Lane, Provider, ProviderError};

/// This process's engine.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    engine: Arc<Engine>,
}

impl LocalProvider {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &str {
        "local"
    }

    fn backend(&self) -> &str {
        self.engine.info().backend.as_str()
    }

    fn vector_space(&self) -> &str {
        &self.engine.info().model_id
    }

    fn embed<'a>(
        &'a self,
        inputs: &'a [EmbedInput],
        _lane: Lane,
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, ProviderError>> {
        async move {
            // Chunks come tokenised already; bare texts (queries) are tokenised here.
            let embedded = if inputs.iter().all(|i| !i.token_ids.is_empty()) {
                self.engine
                    .embed_tokens(inputs.iter().map(|i| i.token_ids.clone()).collect())
                    .await?
            } else {
                self.engine
                    .embed(inputs.iter().map(|i| i.text.clone()).collect())
                    .await?
            };
            Ok(embedded.into_iter().map(|e| e.vector).collect())
        }
        .boxed()
    }
}
