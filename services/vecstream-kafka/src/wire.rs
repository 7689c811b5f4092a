//! Confluent wire format: magic byte 0, schema id (u32 big-endian), Avro binary datum.

use apache_avro::Schema;
use serde::{Serialize, de::DeserializeOwned};

use crate::KafkaEdgeError;

const MAGIC: u8 = 0;

/// Encodes `value` with `schema` and frames it with `schema_id`.
pub fn encode<T: Serialize>(
    schema_id: u32,
    schema: &Schema,
    value: &T,
) -> Result<Vec<u8>, KafkaEdgeError> {
    let avro = apache_avro::to_value(value).map_err(|e| KafkaEdgeError::Encode(e.to_string()))?;
    let resolved = avro
        .resolve(schema)
        .map_err(|e| KafkaEdgeError::Encode(e.to_string()))?;
    let datum = apache_avro::writer::datum::GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(resolved))
        .map_err(|e| KafkaEdgeError::Encode(e.to_string()))?;
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(&datum);
    Ok(out)
}

/// Splits a framed message into its schema id and Avro payload.
pub fn split(bytes: &[u8]) -> Result<(u32, &[u8]), KafkaEdgeError> {
    match bytes {
        [] => Err(KafkaEdgeError::WireFormat("empty value".into())),
        [m, ..] if *m != MAGIC => Err(KafkaEdgeError::WireFormat(format!(
            "magic byte {m:#04x}, expected 0x00"
        ))),
        [_, a, b, c, d, payload @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), payload)),
        _ => Err(KafkaEdgeError::WireFormat(
            "shorter than the 5-byte header".into(),
        )),
    }
}

/// Decodes an Avro payload written with `writer`, resolved to `reader` when given
/// (schema evolution), into `T`. Trailing bytes are an error: they mean a wrong schema.
pub fn decode<T: DeserializeOwned>(
    writer: &Schema,
    reader: Option<&Schema>,
    payload: &[u8],
) -> Result<T, KafkaEdgeError> {
    let mut cursor = payload;
    let value = apache_avro::reader::datum::GenericDatumReader::builder(writer)
        .maybe_reader_schema(reader)
        .build()
        .and_then(|r| r.read_value(&mut cursor))
        .map_err(|e| KafkaEdgeError::Decode(e.to_string()))?;
    if !cursor.is_empty() {
        return Err(KafkaEdgeError::Decode(format!(
            "{} trailing bytes after the datum",
            cursor.len()
        )));
    }
    apache_avro::from_value(&value).map_err(|e| KafkaEdgeError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vecstream_core::{Document, DocumentVectors, EventType, LineageEvent, VecstreamFacet};

    use super::*;
    use crate::schemas;

    fn doc() -> Document {
        Document {
            id: "doc-1".into(),
            tenant: "acme".into(),
            source: "file://a.md".into(),
            title: Some("Title".into()),
            body: "Hello, wörld".into(),
            content_type: "text/markdown".into(),
            metadata: BTreeMap::from([("lang".into(), "en".into())]),
            version: 7,
            deleted: false,
            produced_at: 1_700_000_000_123,
        }
    }

    #[test]
    fn document_round_trips_through_the_wire_format() {
        let schema = schemas::parse(schemas::DOCUMENT).unwrap();
        let bytes = encode(42, &schema, &doc()).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 42]);
        let (id, payload) = split(&bytes).unwrap();
        assert_eq!(id, 42);
        let back: Document = decode(&schema, None, payload).unwrap();
        assert_eq!(back, doc());
        let untitled = Document {
            title: None,
            ..doc()
        };
        let back: Document = decode(
            &schema,
            None,
            split(&encode(1, &schema, &untitled).unwrap()).unwrap().1,
        )
        .unwrap();
        assert_eq!(back.title, None);
    }

    #[test]
    fn vectors_and_lineage_round_trip() {
        let schema = schemas::parse(schemas::DOCUMENT_VECTORS).unwrap();
        let v = DocumentVectors {
            doc_id: "d".into(),
            doc_version: 1,
            tenant: "default".into(),
            model_id: "m".into(),
            content_hash: "h".into(),
            deleted: false,
            chunks: vec![vecstream_core::ChunkVector {
                chunk_id: vecstream_core::chunk_id("default", "d", 0, "m").to_string(),
                index: 0,
                text: "t".into(),
                char_start: 0,
                char_end: 1,
                token_count: 1,
                vector: vec![0.5, -1.25],
            }],
        };
        let back: DocumentVectors = decode(
            &schema,
            None,
            split(&encode(1, &schema, &v).unwrap()).unwrap().1,
        )
        .unwrap();
        assert_eq!(back, v);

        let schema = schemas::parse(schemas::LINEAGE_EVENT).unwrap();
        let ev = LineageEvent {
            event_type: EventType::Complete,
            event_time: 5,
            run: vecstream_core::Run {
                run_id: "r".into(),
                parent_run_id: Some("p".into()),
            },
            job: vecstream_core::Job {
                namespace: "vecstream".into(),
                name: "embedder".into(),
            },
            inputs: vec![vecstream_core::Dataset {
                namespace: "kafka://x".into(),
                name: "docs.documents.v1".into(),
            }],
            outputs: vec![],
            producer: "vecstream".into(),
            vecstream: VecstreamFacet {
                stage: "embedded".into(),
                source_offset: Some(9),
                ..Default::default()
            },
        };
        let back: LineageEvent = decode(
            &schema,
            None,
            split(&encode(1, &schema, &ev).unwrap()).unwrap().1,
        )
        .unwrap();
        assert_eq!(back, ev);
    }

    #[test]
    fn an_older_writer_schema_resolves_to_the_current_reader() {
        // A producer still on a schema without `tenant` and `metadata`.
        let old = schemas::parse(
            r#"{"type":"record","name":"Document","namespace":"vecstream.v1","fields":[
              {"name":"id","type":"string"},{"name":"source","type":"string"},
              {"name":"title","type":["null","string"],"default":null},
              {"name":"body","type":"string"},{"name":"content_type","type":"string"},
              {"name":"version","type":"long"},
              {"name":"produced_at","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#,
        )
        .unwrap();
        #[derive(serde::Serialize)]
        struct OldDoc<'a> {
            id: &'a str,
            source: &'a str,
            title: Option<&'a str>,
            body: &'a str,
            content_type: &'a str,
            version: i64,
            produced_at: i64,
        }
        let bytes = encode(
            3,
            &old,
            &OldDoc {
                id: "a",
                source: "s",
                title: None,
                body: "b",
                content_type: "text/plain",
                version: 1,
                produced_at: 2,
            },
        )
        .unwrap();
        let current = schemas::parse(schemas::DOCUMENT).unwrap();
        let d: Document = decode(&old, Some(&current), split(&bytes).unwrap().1).unwrap();
        assert_eq!(d.tenant, "default");
        assert!(d.metadata.is_empty());
        assert_eq!(d.version, 1);
    }

    #[test]
    fn malformed_frames_are_permanent_errors() {
        use vecstream_core::{Classify, ErrorClass};
        for bad in [&[][..], &[1, 0, 0, 0, 1][..], &[0, 0, 1][..]] {
            let err = split(bad).unwrap_err();
            assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        }
        let schema = schemas::parse(schemas::DOCUMENT).unwrap();
        let bytes = encode(1, &schema, &doc()).unwrap();
        let truncated = &bytes[5..bytes.len() - 3];
        assert!(decode::<Document>(&schema, None, truncated).is_err());
        let mut trailing = bytes[5..].to_vec();
        trailing.push(0);
        assert!(decode::<Document>(&schema, None, &trailing).is_err());
    }
}
