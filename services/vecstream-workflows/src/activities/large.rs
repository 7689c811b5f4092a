//! The body of `large.embed`: one document too large for the stream.

use std::sync::Arc;
use std::time::Duration;

use temporalio_sdk::activities::{ActivityContext, ActivityError};
use vecstream_core::{EventType, VecstreamFacet, topics};

use super::JobActivities;
use crate::errors::{ActivityResultExt, JobError};
use crate::types::{LargeDocumentInput, LargeDocumentResult};

impl JobActivities {
    /// Embeds one large document (read again from its offset) in slices, heartbeating the
    /// chunks done, and publishes its vector record and lineage as the stream would.
    ///
    /// Whatever the end (skipped, cancelled by a delete, refused, out of attempts), it
    /// publishes a lineage event that closes the run the embedder's `escalated` opened.
    pub(super) async fn embed_large_document(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: LargeDocumentInput,
    ) -> Result<LargeDocumentResult, ActivityError> {
        let outcome = self.embed_large_body(&ctx, &input).await;
        let last_attempt = ctx.info().retry_policy.as_ref().is_some_and(|p| {
            p.maximum_attempts() > 0 && ctx.info().attempt >= p.maximum_attempts()
        });
        let close = match &outcome {
            Ok(done) => done
                .skipped
                .as_ref()
                .map(|why| (EventType::Other, "skipped", why.clone())),
            Err(ActivityError::Cancelled { .. }) => Some((
                EventType::Other,
                "cancelled",
                "the job was cancelled: a delete or a newer version superseded the document"
                    .to_owned(),
            )),
            Err(ActivityError::Application(failure))
                if failure.is_non_retryable() || last_attempt =>
            {
                Some((
                    EventType::Fail,
                    "failed",
                    failure.source_error().to_string(),
                ))
            }
            Err(_) => None,
        };
        if let Some((event_type, outcome_name, detail)) = close
            && let Err(e) = self
                .close_large_run(&ctx, &input, event_type, outcome_name, detail)
                .await
        {
            tracing::warn!(doc_id = %input.doc_id, error = ?e, "the large document's closing lineage event was not published");
        }
        outcome
    }

    /// The lineage event that ends a large document's run other than by embedding it.
    async fn close_large_run(
        &self,
        ctx: &ActivityContext,
        input: &LargeDocumentInput,
        event_type: EventType,
        outcome: &str,
        detail: String,
    ) -> Result<(), ActivityError> {
        // The run is keyed by the model the embedder escalated with: the job's target.
        let model_id = self.provider(&input.target).await?.model_id().to_owned();
        let factory = vecstream_pipeline::lineage::LineageFactory::new(
            "embed",
            "embedder",
            &self.config.kafka.brokers,
        );
        let facet = VecstreamFacet {
            doc_id: Some(input.doc_id.clone()),
            tenant: Some(input.tenant.clone()),
            doc_version: Some(input.version),
            model_id: Some(model_id),
            source_topic: Some(topics::DOCUMENTS.into()),
            source_partition: Some(input.partition),
            source_offset: Some(input.offset),
            workflow_id: ctx.info().workflow_id.clone(),
            error: Some(detail),
            ..Default::default()
        };
        let event = factory.event(
            event_type,
            outcome,
            facet,
            vec![factory.topic(topics::DOCUMENTS)],
            Vec::new(),
            vecstream_pipeline::lineage::now_ms(),
        );
        let key = vecstream_core::record_key(&input.tenant, &input.doc_id);
        vecstream_pipeline::lineage::publish_one(&self.config, &key, &event)
            .await
            .activity_err()
    }

    async fn embed_large_body(
        self: &Arc<Self>,
        ctx: &ActivityContext,
        input: &LargeDocumentInput,
    ) -> Result<LargeDocumentResult, ActivityError> {
        use vecstream_pipeline::document::{DocumentReader, Read, chunked, normalized, vectors_of};
        let skipped = |why: String| LargeDocumentResult {
            chunks: 0,
            tokens: 0,
            skipped: Some(why),
        };
        let kafka = self.config.kafka.clone();
        let (partition, offset) = (input.partition, input.offset);
        let (messages, _) = tokio::task::spawn_blocking(move || {
            let consumer = vecstream_kafka::scan::scan_consumer(&kafka, "vecstream-large")?;
            vecstream_kafka::scan::read_range(
                &consumer,
                topics::DOCUMENTS,
                partition,
                offset,
                offset + 1,
                1,
                Duration::from_secs(30),
            )
        })
        .await
        .map_err(JobError::from)
        .activity_err()?
        .activity_err()?;
        let Some(m) = messages
            .into_iter()
            .find(|m| rdkafka::message::Message::offset(m) == offset)
        else {
            return Ok(skipped(
                "the record was compacted away: a newer version replaced it".into(),
            ));
        };
        let read = DocumentReader::new(&self.config)
            .activity_err()?
            .read(
                rdkafka::message::Message::key(&m),
                rdkafka::message::Message::payload(&m),
            )
            .await
            .activity_err()?;
        let doc = match read {
            Read::Doc(d)
                if d.tenant == input.tenant
                    && d.id == input.doc_id
                    && d.version == input.version =>
            {
                d
            }
            _ => {
                return Ok(skipped(
                    "the record holds another document or version".into(),
                ));
            }
        };
        let settings = &self.config.embedder;
        let provider = self.provider(&input.target).await?;
        let chunker = vecstream_engine::Chunker::new(
            provider.tokenizer().clone(),
            (settings.chunk_tokens > 0).then_some(settings.chunk_tokens),
            settings.chunk_overlap,
        )
        .map_err(|e| JobError::engine("chunker", e))
        .activity_err()?;
        let (text, hash) = normalized(&doc, settings.max_body_bytes)
            .map_err(|(_, m)| JobError::Invalid(m))
            .activity_err()?;
        let chunks = chunked(&chunker, &text, settings.max_chunks)
            .map_err(|(_, m)| JobError::Invalid(m))
            .activity_err()?;
        let tokens: usize = chunks.iter().map(|c| c.token_count()).sum();
        let started = std::time::Instant::now();
        let mut vectors = Vec::with_capacity(chunks.len());
        // Who embedded: every member that took a slice (a fallback mid-document shows).
        let mut providers = std::collections::BTreeSet::new();
        let mut backends = std::collections::BTreeSet::new();
        for slice in chunks.chunks(32) {
            if ctx.is_cancelled() {
                return Err(ActivityError::cancelled());
            }
            let inputs: Vec<vecstream_providers::EmbedInput> =
                slice.iter().map(Into::into).collect();
            let embedded = provider
                .embed(&inputs)
                .await
                .map_err(JobError::from)
                .activity_err()?;
            providers.insert(embedded.provider);
            backends.insert(embedded.backend);
            vectors.extend(embedded.vectors);
            ctx.record_heartbeat(vectors.len()).await?;
        }
        // Last look before publishing: a job cancelled (its document deleted) publishes
        // nothing, and the heartbeat is what brings the cancellation.
        ctx.record_heartbeat(vectors.len()).await?;
        if ctx.is_cancelled() {
            return Err(ActivityError::cancelled());
        }
        let model_id = provider.model_id().to_owned();
        let mut record = vectors_of(&doc, &hash, &chunks, &vectors, &model_id);
        let trace = input
            .traceparent
            .as_deref()
            .and_then(vecstream_core::TraceParent::parse)
            .unwrap_or_else(vecstream_core::TraceParent::new_root)
            .child();
        record.trace_id = Some(trace.trace_id_hex());
        vecstream_pipeline::lineage::publish_record(
            &self.config,
            vecstream_pipeline::lineage::Outgoing {
                topic: topics::VECTORS,
                schema: vecstream_kafka::schemas::DOCUMENT_VECTORS,
                key: &doc.record_key(),
                partition: Some(input.partition),
                trace: Some(&trace),
            },
            &record,
        )
        .await
        .activity_err()?;
        let factory = vecstream_pipeline::lineage::LineageFactory::new(
            "embed",
            "embedder",
            &self.config.kafka.brokers,
        );
        let facet = VecstreamFacet {
            doc_id: Some(doc.id.clone()),
            tenant: Some(doc.tenant.clone()),
            doc_version: Some(doc.version),
            content_hash: Some(hash),
            chunk_ids: record.chunks.iter().map(|c| c.chunk_id.clone()).collect(),
            model_id: Some(model_id),
            backend: (!backends.is_empty())
                .then(|| backends.into_iter().collect::<Vec<_>>().join(",")),
            provider: (!providers.is_empty())
                .then(|| providers.into_iter().collect::<Vec<_>>().join(",")),
            source_topic: Some(topics::DOCUMENTS.into()),
            source_partition: Some(input.partition),
            source_offset: Some(input.offset),
            workflow_id: Some(ctx.info().workflow_id.clone().unwrap_or_default()),
            trace_id: Some(trace.trace_id_hex()),
            duration_ms: Some(started.elapsed().as_millis() as i64),
            ..Default::default()
        };
        let event = factory.event(
            EventType::Complete,
            "embedded",
            facet,
            vec![factory.topic(topics::DOCUMENTS)],
            vec![factory.topic(topics::VECTORS)],
            vecstream_pipeline::lineage::now_ms(),
        );
        vecstream_pipeline::lineage::publish_one(&self.config, &doc.record_key(), &event)
            .await
            .activity_err()?;
        Ok(LargeDocumentResult {
            chunks: chunks.len(),
            tokens,
            skipped: None,
        })
    }
}
