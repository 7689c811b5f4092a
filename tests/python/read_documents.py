"""Reads documents that vecstream produced, with stock Confluent clients.

Uses confluent-kafka's Consumer and AvroDeserializer against the schema registry, exactly
as a producer or analyst in another language would, and prints one JSON line per wanted
document id (of the tenant) found on docs.documents.v1, matched by its record key: the bare
id for the tenant "default", "<tenant>\0<id>" otherwise. Exits 1 if some ids are not found
in time.

    python read_documents.py --ids a,b [--tenant T] [--bootstrap 127.0.0.1:9092]
        [--registry http://127.0.0.1:8081/apis/ccompat/v7] [--timeout 60]
"""

import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

TOPIC = "docs.documents.v1"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ids", required=True, help="comma-separated document ids to find")
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--registry", default="http://127.0.0.1:8081/apis/ccompat/v7")
    p.add_argument("--tenant", default="default")
    p.add_argument("--timeout", type=float, default=60.0)
    args = p.parse_args()

    def record_key(doc_id: str) -> str:
        return doc_id if args.tenant == "default" else f"{args.tenant}\0{doc_id}"

    keys = {record_key(i): i for i in args.ids.split(",")}
    wanted = set(keys)
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": args.registry}))
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"vecstream-e2e-python-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([TOPIC])
    deadline = time.monotonic() + args.timeout
    try:
        while wanted and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                print(f"consumer error: {msg.error()}", file=sys.stderr)
                continue
            key = msg.key().decode("utf-8", "replace") if msg.key() else None
            if key not in wanted or msg.value() is None:
                continue
            doc = deserializer(msg.value(), SerializationContext(TOPIC, MessageField.VALUE))
            produced_at = doc.get("produced_at")
            if hasattr(produced_at, "timestamp"):
                doc["produced_at"] = int(produced_at.timestamp() * 1000)
            print(json.dumps(doc, sort_keys=True, ensure_ascii=False), flush=True)
            wanted.discard(key)
    finally:
        consumer.close()
    if wanted:
        print(f"not found within {args.timeout}s: {sorted(keys[k] for k in wanted)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
