"""Reads vecstream's OpenLineage export as a lineage consumer would, and validates it.

    python openlineage_check.py kafka --topic T --tenant RUN --docs a,b --timeout 120
        Reads the Kafka transport's topic (confluent-kafka Consumer, JSON values) until every
        document of the tenant has a run of the `sink` job that ended.
    python openlineage_check.py http --port P --tenant RUN --seconds 60 --min 3 [--quiet 5]
        Receives the HTTP transport's POSTs on /api/v1/lineage (as Marquez would) until at
        least --min events of the tenant came and none for --quiet seconds, or --seconds
        passed.

Both validate every event of the tenant against the official OpenLineage JSON schema
(tests/openlineage/spec, spec 2-0-2, the version openlineage-python emits) and each facet
against its own schema (the `vecstream` facet against schemas/openlineage/), check that
every run ends in COMPLETE or FAIL, that a sink run's parent is the embedder run of the
same document version, and print one JSON summary line. Exit 0 when all holds.
"""

import argparse
import json
import pathlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
from openlineage.client.event_v2 import RunEvent
from referencing import Registry, Resource

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC = ROOT / "tests" / "openlineage" / "spec"


def registry():
    """Every schema by its $id, so that $refs between them resolve offline."""
    resources = []
    files = [SPEC / "OpenLineage.json", *sorted((SPEC / "facets").glob("*.json")),
             ROOT / "schemas" / "openlineage" / "VecstreamRunFacet.json"]
    for path in files:
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


REGISTRY = registry()


def validator_for(url):
    """A validator for the schema a `schemaURL` / `_schemaURL` points at."""
    base, _, pointer = url.partition("#")
    schema = {"$ref": url} if pointer else {"$ref": base}
    return jsonschema.Draft202012Validator(schema, registry=REGISTRY,
                                           format_checker=jsonschema.FormatChecker())


def problems_of(event):
    out = []
    for e in validator_for(event.get("schemaURL", "")).iter_errors(event):
        out.append(f"event: {e.message} at {list(e.absolute_path)}")
    facets = [("run", k, v) for k, v in event.get("run", {}).get("facets", {}).items()]
    facets += [("job", k, v) for k, v in event.get("job", {}).get("facets", {}).items()]
    for side in ("inputs", "outputs"):
        for d in event.get(side, []):
            facets += [(d["name"], k, v) for k, v in d.get("facets", {}).items()]
    for where, name, facet in facets:
        url = facet.get("_schemaURL", "")
        if not url:
            out.append(f"{where}.{name}: no _schemaURL")
            continue
        if "raw.githubusercontent.com/vecstream" in url:
            url = "https://raw.githubusercontent.com/vecstream/vecstream/v0.1.0/schemas/openlineage/VecstreamRunFacet.json#/$defs/VecstreamRunFacet"
        for e in validator_for(url).iter_errors(facet):
            out.append(f"{where}.{name}: {e.message}")
    return out


def of_tenant(event, tenant):
    return event.get("run", {}).get("facets", {}).get("vecstream", {}).get("tenant") == tenant


def judge(events, tenant, docs):
    """The summary of a tenant's events, and what is wrong with them."""
    problems = []
    for e in events:
        problems += problems_of(e)
    # The version openlineage-python emits is the one we follow.
    expected_url = RunEvent._get_schema()
    if any(e["schemaURL"] != expected_url for e in events):
        problems.append("schemaURL is not the spec version of openlineage-python")
    runs = {}
    for e in events:
        runs.setdefault(e["run"]["runId"], []).append(e)
    for run_id, evs in runs.items():
        types = [x["eventType"] for x in evs]
        if not any(t in ("COMPLETE", "FAIL") for t in types):
            problems.append(f"run {run_id} ({evs[0]['job']['name']}) never ended: {types}")
    embedder_runs = {e["run"]["runId"] for e in events if e["job"]["name"] == "embedder"}
    sink_docs = set()
    for e in events:
        if e["job"]["name"] != "sink":
            continue
        facets = e["run"]["facets"]
        sink_docs.add(facets["vecstream"].get("docId"))
        parent = facets.get("parent", {}).get("run", {}).get("runId")
        if parent not in embedder_runs:
            problems.append(f"sink run {e['run']['runId']}: parent {parent} is no embedder run")
    failed = [e for e in events if e["eventType"] == "FAIL"]
    for e in failed:
        if "errorMessage" not in e["run"]["facets"]:
            problems.append(f"FAIL without errorMessage: {e['run']['runId']}")
    missing = [d for d in docs if d not in sink_docs]
    return {
        "events": len(events),
        "runs": len(runs),
        "failed": len(failed),
        "types": sorted({e["eventType"] for e in events}),
        "datasets": sorted({f"{d['namespace']}/{d['name']}" for e in events
                            for d in e["inputs"] + e["outputs"]}),
        "missing_docs": missing,
        "problems": problems[:20],
    }


def from_kafka(args):
    from confluent_kafka import Consumer
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"ol-check-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([args.topic])
    docs = [d for d in args.docs.split(",") if d]
    events, summary = [], None
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None or m.error():
            if events:
                summary = judge(events, args.tenant, docs)
                if not summary["missing_docs"] and args.fail_docs <= summary["failed"]:
                    break
            continue
        event = json.loads(m.value())
        if of_tenant(event, args.tenant):
            # The key is the run id: a run's events stay in order.
            assert m.key().decode() == event["run"]["runId"], m.key()
            events.append(event)
    consumer.close()
    summary = judge(events, args.tenant, docs)
    print(json.dumps(summary))
    return 0 if events and not summary["problems"] and not summary["missing_docs"] else 1


def from_http(args):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            ok = self.path == "/api/v1/lineage" and self.headers.get("authorization") == f"Bearer {args.api_key}"
            if ok:
                received.append(json.loads(body))
            self.send_response(201 if ok else 401)
            self.end_headers()

        def log_message(self, *a):
            pass

    class Server(ThreadingHTTPServer):
        # The exporter POSTs up to http_batch_size events at once: the default listen
        # backlog of 5 would refuse most of them.
        request_queue_size = 256
        daemon_threads = True

    server = Server(("127.0.0.1", args.port), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print("listening", flush=True, file=sys.stderr)
    deadline = time.time() + args.seconds
    last, count = time.time(), 0
    while time.time() < deadline:
        time.sleep(0.2)
        if len(received) > count:
            last, count = time.time(), len(received)
        # Enough of the tenant's events, and the sender has gone quiet: done.
        enough = len([e for e in list(received) if of_tenant(e, args.tenant)]) >= args.min
        if enough and time.time() - last > args.quiet:
            break
    server.shutdown()
    events = [e for e in received if of_tenant(e, args.tenant)]
    summary = judge(events, args.tenant, [])
    summary["received"] = len(received)
    print(json.dumps(summary))
    return 0 if len(events) >= args.min and not summary["problems"] else 1


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kafka")
    k.add_argument("--topic", required=True)
    k.add_argument("--bootstrap", default="127.0.0.1:9092")
    k.add_argument("--docs", default="")
    k.add_argument("--fail-docs", type=int, default=0)
    h = sub.add_parser("http")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--seconds", type=float, default=60)
    h.add_argument("--min", type=int, default=1)
    h.add_argument("--api-key", default="")
    h.add_argument("--quiet", type=float, default=5, help="seconds without a request that end it")
    for s in (k, h):
        s.add_argument("--tenant", required=True)
        s.add_argument("--timeout", type=float, default=120)
    args = p.parse_args()
    return from_kafka(args) if args.cmd == "kafka" else from_http(args)


if __name__ == "__main__":
    sys.exit(main())
