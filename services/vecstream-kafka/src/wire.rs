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
/// The datum is first checked against [`DecodeLimits::default`] (see [`check_datum`]).
pub fn decode<T: DeserializeOwned>(
    writer: &Schema,
    reader: Option<&Schema>,
    payload: &[u8],
) -> Result<T, KafkaEdgeError> {
    check_datum(writer, payload, DecodeLimits::default())?;
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

/// What decoding one datum may cost. A hostile datum (a recursive schema nested thousands
/// deep, an `array<array<null>>` claiming billions of items) is refused before the decoder
/// builds anything: an error, never a stack overflow or an out-of-memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Deepest nesting of values (records, unions, arrays, maps). Our schemas need 5.
    pub max_depth: usize,
    /// Memory the decoded value may take, estimated as one generic value per item plus the
    /// bytes of every string and byte array. A 16 MiB vectors record needs about 250 MiB.
    pub max_alloc_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_alloc_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Walks `payload` as a datum of `writer` without building it: every length and count is
/// checked against the bytes actually there and against `limits`, a datum that ends inside
/// a value (even an optional trailing field) is an error, and so are trailing bytes.
pub fn check_datum(
    writer: &Schema,
    payload: &[u8],
    limits: DecodeLimits,
) -> Result<(), KafkaEdgeError> {
    let resolved = apache_avro::schema::ResolvedSchema::try_from(writer)
        .map_err(|e| KafkaEdgeError::Decode(format!("writer schema: {e}")))?;
    let mut scan = DatumScan {
        names: resolved.get_names(),
        input: payload,
        pos: 0,
        alloc: 0,
        limits,
    };
    scan.value(writer, 0)
        .map_err(|e| KafkaEdgeError::Decode(format!("{e} (at byte {})", scan.pos)))?;
    if scan.pos != payload.len() {
        return Err(KafkaEdgeError::Decode(format!(
            "{} trailing bytes after the datum",
            payload.len() - scan.pos
        )));
    }
    Ok(())
}

/// Size of one decoded generic value: what each item costs the decoder at least.
const VALUE_BYTES: usize = std::mem::size_of::<apache_avro::types::Value>();

struct DatumScan<'a> {
    names: &'a apache_avro::schema::NamesRef<'a>,
    input: &'a [u8],
    pos: usize,
    alloc: usize,
    limits: DecodeLimits,
}

impl DatumScan<'_> {
    fn value(&mut self, schema: &Schema, depth: usize) -> Result<(), String> {
        use apache_avro::schema::{InnerDecimalSchema, UuidSchema};
        if depth > self.limits.max_depth {
            return Err(format!(
                "values nested deeper than {}",
                self.limits.max_depth
            ));
        }
        self.charge(1, 0)?;
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => match self.take(1)?[0] {
                0 | 1 => Ok(()),
                b => Err(format!("boolean byte {b:#04x}")),
            },
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => self.long().map(drop),
            Schema::Float => self.take(4).map(drop),
            Schema::Double => self.take(8).map(drop),
            Schema::Bytes
            | Schema::String
            | Schema::BigDecimal
            | Schema::Uuid(UuidSchema::Bytes | UuidSchema::String)
            | Schema::Decimal(apache_avro::schema::DecimalSchema {
                inner: InnerDecimalSchema::Bytes,
                ..
            }) => {
                let len = self.length("string or bytes")?;
                self.charge(0, len)?;
                self.take(len).map(drop)
            }
            Schema::Fixed(f)
            | Schema::Duration(f)
            | Schema::Uuid(UuidSchema::Fixed(f))
            | Schema::Decimal(apache_avro::schema::DecimalSchema {
                inner: InnerDecimalSchema::Fixed(f),
                ..
            }) => self.take(f.size).map(drop),
            Schema::Enum(e) => {
                let index = self.long()?;
                if usize::try_from(index).is_ok_and(|i| i < e.symbols.len()) {
                    Ok(())
                } else {
                    Err(format!(
                        "enum index {index} out of {} symbols",
                        e.symbols.len()
                    ))
                }
            }
            Schema::Union(u) => {
                let index = self.long()?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| u.variants().get(i))
                    .ok_or_else(|| {
                        format!("union index {index} out of {} branches", u.variants().len())
                    })?;
                self.value(variant, depth + 1)
            }
            Schema::Record(r) => {
                for field in &r.fields {
                    self.value(&field.schema, depth + 1)?;
                }
                Ok(())
            }
            Schema::Array(a) => self.blocks(depth, |scan, depth| scan.value(&a.items, depth)),
            Schema::Map(m) => self.blocks(depth, |scan, depth| {
                let len = scan.length("map key")?;
                scan.charge(0, len)?;
                scan.take(len)?;
                scan.value(&m.types, depth)
            }),
            Schema::Ref { name } => {
                let target = self
                    .names
                    .get(name)
                    .copied()
                    .ok_or_else(|| format!("unresolved schema reference {name}"))?;
                self.value(target, depth + 1)
            }
        }
    }

    /// Array or map blocks: a count (negative: followed by the block's byte size), items,
    /// until a zero count. The whole count is charged before any item is read.
    fn blocks(
        &mut self,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.long()?;
            }
            let count = usize::try_from(count.unsigned_abs())
                .map_err(|_| format!("collection block of {count} items"))?;
            self.charge(count, 0)?;
            for _ in 0..count {
                item(self, depth + 1)?;
            }
        }
    }

    fn charge(&mut self, items: usize, bytes: usize) -> Result<(), String> {
        self.alloc = items
            .checked_mul(VALUE_BYTES)
            .and_then(|b| b.checked_add(bytes))
            .and_then(|b| b.checked_add(self.alloc))
            .filter(|&total| total <= self.limits.max_alloc_bytes)
            .ok_or_else(|| {
                format!(
                    "decoding would take more than {} bytes of memory",
                    self.limits.max_alloc_bytes
                )
            })?;
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| {
                format!(
                    "datum ends inside a value ({n} bytes needed, {} left)",
                    self.input.len() - self.pos
                )
            })?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A zig-zag varint long.
    fn long(&mut self) -> Result<i64, String> {
        let mut raw: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn length(&mut self, what: &str) -> Result<usize, String> {
        let len = self.long()?;
        usize::try_from(len).map_err(|_| format!("negative length {len} of a {what}"))
    }
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
            source: "crm".into(),
            title: Some("T".into()),
            metadata: [("team".to_owned(), "billing".to_owned())].into(),
            produced_at: Some(1_764_590_400_000),
            trace_id: Some("0af7651916cd43dd8448eb211c80319c".into()),
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
    /// The documents schema plus one trailing field, and a datum of it: the document's
    /// bytes followed by `tail`.
    fn with_trailing_field(field: &str, tail: &[u8]) -> (Schema, Vec<u8>) {
        let base = schemas::parse(schemas::DOCUMENT).unwrap();
        let json = schemas::DOCUMENT.trim_end();
        let json = json.strip_suffix('}').unwrap().trim_end();
        let json = json.strip_suffix(']').unwrap();
        let schema = schemas::parse(&format!("{json},{field}]}}")).unwrap();
        let mut datum = split(&encode(1, &base, &doc()).unwrap())
            .unwrap()
            .1
            .to_vec();
        datum.extend_from_slice(tail);
        (schema, datum)
    }

    #[test]
    fn hostile_datums_are_errors_not_crashes() {
        // A recursive schema nested 200,000 deep: the decoder's recursion would overflow.
        let node = r#"{"name":"nested","type":["null",{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}],"default":null}"#;
        let mut tail = vec![2u8; 200_000];
        tail.push(0);
        let (schema, datum) = with_trailing_field(node, &tail);
        let err = decode::<Document>(&schema, None, &datum).unwrap_err();
        assert!(err.to_string().contains("nested deeper than 64"), "{err}");
        // Ten levels are fine, and the extra field is ignored by the reader.
        let mut tail = vec![2u8; 10];
        tail.push(0);
        let (schema, datum) = with_trailing_field(node, &tail);
        let reader = schemas::parse(schemas::DOCUMENT).unwrap();
        assert_eq!(
            decode::<Document>(&schema, Some(&reader), &datum).unwrap(),
            doc()
        );

        // array<array<null>>: one outer item claiming 2^40 null items (zero bytes each).
        let bomb = r#"{"name":"junk","type":{"type":"array","items":{"type":"array","items":"null"}},"default":[]}"#;
        let mut tail = vec![2u8]; // one outer item
        let mut claim: u64 = 1 << 41; // zig-zag of 2^40
        while claim >= 0x80 {
            tail.push((claim as u8 & 0x7f) | 0x80);
            claim >>= 7;
        }
        tail.extend_from_slice(&[claim as u8, 0, 0]);
        let (schema, datum) = with_trailing_field(bomb, &tail);
        let err = decode::<Document>(&schema, None, &datum).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");

        // A trailing optional field cut after its union index: invalid, never `null`.
        let optional = r#"{"name":"extra","type":["null","string"],"default":null}"#;
        let (schema, datum) = with_trailing_field(optional, &[2]);
        let err = decode::<Document>(&schema, Some(&reader), &datum).unwrap_err();
        assert!(err.to_string().contains("ends inside a value"), "{err}");
        let (schema, datum) = with_trailing_field(optional, &[2, 4, b'o', b'k']);
        assert!(decode::<Document>(&schema, Some(&reader), &datum).is_ok());

        // A union index past the branches, a negative string length, a claimed length
        // past the end.
        for (tail, why) in [
            (&[14u8][..], "union index 7"),
            (&[2, 3][..], "negative length"),
            (&[2, 0xfe, 0xff, 0x7f][..], "ends inside a value"),
        ] {
            let (schema, datum) = with_trailing_field(optional, tail);
            let err = decode::<Document>(&schema, Some(&reader), &datum).unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
    }
}
