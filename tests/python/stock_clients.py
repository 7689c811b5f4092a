"""Stock Confluent clients against vecstream's topics, as another team would use them.

    python stock_clients.py produce --ids a,b [--tenant T]
        Publishes one document per id to docs.documents.v1 with confluent-kafka's Producer and
        AvroSerializer (schema schemas/document.avsc, registered under the topic's subject),
        keyed as vecstream documents are: the bare id for the tenant "default", else
        "<tenant>\0<id>" (tenant, U+0000, id).

    python stock_clients.py lineage --ids a,b [--tenant T] --stage sink:upserted [--timeout 90]
        Reads docs.lineage.v1 with Consumer + AvroDeserializer and prints one JSON line per event
        of the ids (of the tenant); exits 0 once every id has an event of the stage, 1 on timeout.

Common flags: --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081/apis/ccompat/v7
"""

import argparse
import json
import pathlib
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "schemas" / "document.avsc"


def record_key(tenant: str, doc_id: str) -> str:
    """The record key of a document: a document is its (tenant, id)."""
    return doc_id if tenant == "default" else f"{tenant}\0{doc_id}"


def produce(args, registry) -> int:
    serializer = AvroSerializer(registry, SCHEMA.read_text(), conf={"auto.register.schemas": True})
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
    failures = []
    for i, doc_id in enumerate(args.ids.split(",")):
        doc = {
            "id": doc_id,
            "tenant": args.tenant,
            "source": "python://stock_clients",
            "title": f"Python document {i}",
            "body": f"Written by a Python producer with the stock AvroSerializer, number {i}.",
            "content_type": "text/plain",
            "metadata": {"client": "confluent-kafka-python"},
            "version": 1,
            "deleted": False,
            "produced_at": int(time.time() * 1000),
        }
        value = serializer(doc, SerializationContext("docs.documents.v1", MessageField.VALUE))
        producer.produce(
            "docs.documents.v1",
            key=record_key(args.tenant, doc_id).encode(),
            value=value,
            on_delivery=lambda err, _msg: err and failures.append(str(err)),
        )
    producer.flush(30)
    if failures:
        print(f"delivery failed: {failures}", file=sys.stderr)
        return 1
    print(f"produced {len(args.ids.split(','))} document(s)")
    return 0


def lineage(args, registry) -> int:
    deserializer = AvroDeserializer(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"vecstream-e2e-python-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe(["docs.lineage.v1"])
    keys = {record_key(args.tenant, i): i for i in args.ids.split(",")}
    waiting = set(keys.values())
    deadline = time.monotonic() + args.timeout
    try:
        while waiting and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            key = msg.key().decode("utf-8", "replace") if msg.key() else None
            if key not in keys:
                continue
            event = deserializer(msg.value(), SerializationContext("docs.lineage.v1", MessageField.VALUE))
            print(json.dumps(event, sort_keys=True, default=str), flush=True)
            if event["vecstream"]["stage"] == args.stage:
                waiting.discard(keys[key])
    finally:
        consumer.close()
    if waiting:
        print(f"no {args.stage} event within {args.timeout}s for {sorted(waiting)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["produce", "lineage"])
    p.add_argument("--ids", required=True)
    p.add_argument("--tenant", default="default")
    p.add_argument("--stage", default="sink:upserted")
    p.add_argument("--timeout", type=float, default=90.0)
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--registry", default="http://127.0.0.1:8081/apis/ccompat/v7")
    args = p.parse_args()
    registry = SchemaRegistryClient({"url": args.registry})
    return produce(args, registry) if args.mode == "produce" else lineage(args, registry)


if __name__ == "__main__":
    sys.exit(main())
