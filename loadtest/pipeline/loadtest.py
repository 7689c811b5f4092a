"""End-to-end load test of the pipeline on the local stack, with the engine-only ceiling
measured in the same run.

    loadtest/pipeline/run.sh [--count N] [--rate R] [--update-ratio U] [--delete-ratio D]
                             [--bad-ratio B] [--chaos] [--chaos-every S] [--migrate]
                             [--rollback-window S] [--broken-sink] [--stall-secs S] [--out DIR]

It starts `vecstream run embedder` and `vecstream run sink` (fresh consumer groups that begin
at the topics' current end), publishes a realistic document stream with the stock Python
client (length mix like real corpora; updates to shorter versions, tombstones and
undecodable records in the given ratios; a target rate or as fast as possible), and measures
documents/s, chunks/s and tokens/s, produce-to-upserted latency (lineage `sink:upserted`
event time against the produce time), consumer lag and the CPU and RSS of each process over
time. Then it runs `vecstream embed` on the chunk-sized texts of the same documents: the
engine-only ceiling; the report gives the pipeline's tokens/s as a ratio of it.

--chaos also starts `vecstream run worker` and sends documents over 1,500 tokens to their
LargeDocumentWorkflow on Temporal, then, every --chaos-every seconds, in turn: SIGKILL and
restart the embedder; the sink; Weaviate down for 15 s; the worker; Weaviate down with the
sink killed during the outage (so a sink that commits before its upserts are durable loses
the batch it was retrying). Whatever the mode, the run ends with a check of Weaviate's
contents against the expected set (every live document at its last version with chunk
indexes 0..n-1 and nothing else; deleted ones absent) and prints a verdict; it ends when
every expected effect is in, or when nothing has reached Weaviate for --stall-secs (lost
records never arrive).

--migrate starts a model migration mid-stream (a third of the way through publishing): a
reindex of the run's alias to max_seq_length 128 with a short catch-up, approved as soon as
it awaits review, then its rollback window (--rollback-window seconds). With --chaos the
faults keep coming through it (the worker too: scans resume from their heartbeats). The
contents check then runs on every collection of the alias's family: while the window is
open, the new live collection and the previous one (each must hold exactly the expected
documents), and once it has closed, the live one again.

--broken-sink (run.sh builds it: crate loadtest/broken-sink, binary given with
--sink-vecstream) runs a sink that commits offsets before upserting: with --chaos its verdict
must be FAIL, which shows that the check can fail.

Output: DIR/pipeline-<time>/{results.json, report.md, throughput.svg, lag.svg, latency.svg}.
"""

import argparse
import atexit
import json
import os
import pathlib
import random
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

ROOT = pathlib.Path(__file__).resolve().parents[2]
BOOTSTRAP = "127.0.0.1:9092"
REGISTRY = "http://127.0.0.1:8081/apis/ccompat/v7"
WEAVIATE = "http://127.0.0.1:8080"
DOCS, VECTORS, LINEAGE = "docs.documents.v1", "docs.vectors.v1", "docs.lineage.v1"
PORTS = {"embedder": 19801, "sink": 19802, "worker": 19803}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def vocabulary():
    words = []
    for f in ("tests/fixtures/retrieval/docs.jsonl", "tests/fixtures/embeddings/texts.jsonl"):
        for line in open(ROOT / f, encoding="utf-8"):
            words.extend(w for w in json.loads(line)["text"].split() if w.isalpha())
    return words


def body(rng, words, n_words):
    out, sentence = [], []
    for _ in range(n_words):
        sentence.append(rng.choice(words))
        if len(sentence) >= rng.randint(8, 20):
            out.append(" ".join(sentence).capitalize() + ".")
            sentence = []
    if sentence:
        out.append(" ".join(sentence).capitalize() + ".")
    return " ".join(out)


def length_mix(rng):
    """Words per document: most short, some medium, a few long (a long-tailed corpus)."""
    r = rng.random()
    if r < 0.6:
        return rng.randint(20, 120)
    if r < 0.9:
        return rng.randint(150, 450)
    return rng.randint(800, 2000)


class Component:
    """A `vecstream run` process with its metrics endpoint."""

    def __init__(self, vecstream, name, sets, log_dir):
        self.vecstream, self.name, self.sets, self.log_dir = vecstream, name, sets, log_dir
        self.restarts = 0
        self.proc = None
        self.start()

    def start(self):
        # A process of an earlier run still on the port would answer the readiness check.
        if self.ready():
            raise SystemExit(f"port {PORTS[self.name]} is in use (a {self.name} of another run?); stop it first")
        log = open(self.log_dir / f"{self.name}.log", "a")
        args = [self.vecstream, "--metrics-addr", f"127.0.0.1:{PORTS[self.name]}"]
        for s in self.sets:
            args += ["--set", s]
        self.proc = subprocess.Popen(args + ["run", self.name], stdout=subprocess.DEVNULL,
                                     stderr=log, env={**os.environ, "VECSTREAM_TELEMETRY_LOG_LEVEL": "info"})
        for _ in range(120):
            if self.ready():
                return
            time.sleep(0.5)
        raise SystemExit(f"{self.name} not ready; see {self.log_dir / (self.name + '.log')}")

    def ready(self):
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{PORTS[self.name]}/readyz", timeout=1).status == 200
        except Exception:
            return False

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.restarts += 1

    def stop(self):
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def metrics(self):
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{PORTS[self.name]}/metrics", timeout=2).read().decode()
        except Exception:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def usage(self):
        """(cpu seconds, rss bytes) of the process now."""
        try:
            stat = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
            cpu = (int(stat[11]) + int(stat[12])) / CLK_TCK
            rss = next(int(l.split()[1]) * 1024 for l in open(f"/proc/{self.proc.pid}/status") if l.startswith("VmRSS"))
            return cpu, rss
        except Exception:
            return None, None


def metric_sum(m, prefix):
    return sum(v for k, v in m.items() if k.startswith(prefix))


def start_groups_at_end(groups_topics):
    """New consumer groups whose committed offsets are the topics' current end."""
    for group, topic in groups_topics:
        c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group, "enable.auto.commit": False})
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = [TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                   for p in parts]
        c.commit(offsets=offsets, asynchronous=False)
        c.close()


def lineage_reader(stop, tenant_prefix, events, registry):
    deser = AvroDeserializer(registry)
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"loadtest-lineage-{time.time()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    parts = c.list_topics(LINEAGE, timeout=10).topics[LINEAGE].partitions
    c.assign([TopicPartition(LINEAGE, p, c.get_watermark_offsets(TopicPartition(LINEAGE, p), timeout=10)[1])
              for p in parts])
    while not stop.is_set():
        m = c.poll(0.5)
        if m is None or m.error() or not m.key() or not m.key().decode(errors="replace").startswith(tenant_prefix):
            continue
        e = deser(m.value(), SerializationContext(LINEAGE, MessageField.VALUE))
        f = e["vecstream"]
        if f["stage"] in ("sink:upserted", "sink:deleted"):
            t = e["eventTime"]
            # fastavro gives timestamp-millis as a datetime.
            t = int(t.timestamp() * 1000) if hasattr(t, "timestamp") else int(t)
            events.append((f["doc_id"], f.get("doc_version"), f["stage"], t, len(f.get("chunk_ids") or [])))
    c.close()


def weaviate_rows(collection, tenant, doc_ids):
    """Chunk rows of the tenant's documents, 200 ids per query (a query returns at most
    10,000 objects)."""
    rows = []
    for i in range(0, len(doc_ids), 200):
        ids = json.dumps(doc_ids[i:i + 200])
        q = ('{ Get { %s(where: {operator: And, operands: ['
             '{path: ["tenant"], operator: Equal, valueText: "%s"}, '
             '{path: ["doc_id"], operator: ContainsAny, valueText: %s}]}, limit: 10000) '
             '{ doc_id doc_version chunk_index } } }') % (collection, tenant, ids)
        req = urllib.request.Request(f"{WEAVIATE}/v1/graphql", json.dumps({"query": q}).encode(),
                                     {"Content-Type": "application/json"})
        data = json.load(urllib.request.urlopen(req, timeout=60))
        if data.get("errors"):
            raise RuntimeError(data["errors"])
        rows += data["data"]["Get"][collection] or []
    return rows


def tenant_count(collection, tenant):
    q = ('{ Aggregate { %s(where: {path: ["tenant"], operator: Equal, valueText: "%s"}) '
         '{ meta { count } } } }') % (collection, tenant)
    req = urllib.request.Request(f"{WEAVIATE}/v1/graphql", json.dumps({"query": q}).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=60))["data"]["Aggregate"][collection][0]["meta"]["count"]


def verify(collection, tenant, expected):
    """expected: doc id -> final version (None when deleted). Returns (ok, problems)."""
    by_doc = {}
    all_rows = weaviate_rows(collection, tenant, sorted(expected))
    for r in all_rows:
        by_doc.setdefault(r["doc_id"], []).append((int(r["doc_version"]), int(r["chunk_index"])))
    problems = []
    for doc, version in expected.items():
        rows = by_doc.pop(doc, [])
        if version is None:
            if rows:
                problems.append(f"{doc}: deleted but {len(rows)} chunk(s) remain")
            continue
        if not rows:
            problems.append(f"{doc}: missing")
            continue
        versions = {v for v, _ in rows}
        indexes = sorted(i for _, i in rows)
        if versions != {version}:
            problems.append(f"{doc}: versions {sorted(versions)}, expected {version}")
        if indexes != list(range(len(indexes))):
            problems.append(f"{doc}: chunk indexes {indexes[:8]}... not 0..n-1 (duplicate or stale)")
    problems += [f"{doc}: not expected ({len(rows)} chunk(s))" for doc, rows in by_doc.items()]
    # Objects of the tenant under any other id (a stray write) show up in the total.
    total = tenant_count(collection, tenant)
    if total != len(all_rows):
        problems.append(f"the tenant holds {total} objects, {len(all_rows)} belong to expected documents")
    return not problems, problems


def verify_migration(migration, reindex_status, run, expected, args):
    """The contents check on every collection of the migrating alias's family: in the
    rollback window, the new live and the previous collection; after it, the live one. A
    collection kept current by catch-ups may lag a few seconds: each check is retried for
    up to two minutes before it counts as failed."""
    checks = []

    def check(when, role, collection):
        deadline = time.time() + 120
        while True:
            ok, problems = verify(collection, run, expected)
            if ok or time.time() > deadline:
                checks.append({"when": when, "role": role, "collection": collection, "ok": ok,
                               "problems": problems})
                print(f"[loadtest] {when}: {role} {collection}: {'PASS' if ok else 'FAIL'}", flush=True)
                return
            time.sleep(3)

    deadline = time.time() + 1200
    p = None
    while time.time() < deadline:
        p = reindex_status() if migration["workflow"] else None
        if p and p["phase"] in ("rollback_window", "closing_window", "approved", "rejected", "rolled_back"):
            break
        time.sleep(2)
    if not p:
        checks.append({"when": "end", "role": "-", "collection": "-", "ok": False,
                       "problems": ["the migration never reached its approval"]})
        return checks
    if p["phase"] == "rollback_window":
        for c in p["collections"]:
            check("rollback window", c["role"], c["collection"])
    while time.time() < deadline and p and p["phase"] not in ("approved", "rejected", "rolled_back"):
        time.sleep(3)
        p = reindex_status() or p
    live = [c for c in (p or {}).get("collections", []) if c["role"] == "live"]
    if p and p["phase"] == "approved" and live:
        check("after the window", "live", live[0]["collection"])
        previous = [c for c in p["collections"] if c["role"] == "previous"]
        aliases = json.load(urllib.request.urlopen(f"{WEAVIATE}/v1/aliases", timeout=5))["aliases"]
        for c in previous:
            try:
                urllib.request.urlopen(f"{WEAVIATE}/v1/schema/{c['collection']}", timeout=5)
                exists = True
            except Exception:
                exists = False
            # Dropped, unless another alias serves it (then it must be kept).
            users = [a["alias"] for a in aliases if a["class"] == c["collection"]]
            ok = exists == bool(users)
            checks.append({"when": "after the window", "role": "previous (dropped)" if not exists
                           else f"previous (kept: alias {', '.join(users)} serves it)",
                           "collection": c["collection"], "ok": ok,
                           "problems": [] if ok else [("kept although no alias uses it" if exists
                                                       else f"dropped although {users} serve it")]})
    else:
        checks.append({"when": "end", "role": "-", "collection": "-", "ok": False,
                       "problems": [f"the migration ended {p and p['phase']}, not approved"]})
    return checks


def migration_rows(migration, checks):
    phases = ", ".join(f"{t:.0f}s {ph}" for t, ph in migration["phases"])
    rows = [f"| migration ({migration['workflow']}) | {phases} |"]
    for c in checks:
        rows.append(f"| contents of {c['role']} {c['collection']} ({c['when']}) | {'PASS' if c['ok'] else 'FAIL'} |")
    return "\n".join(rows)


def svg_lines(path, title, series, ylabel):
    """series: {name: [(x, y), ...]} as a small SVG line chart."""
    w, h, pad = 720, 300, 50
    pts = [p for s in series.values() for p in s]
    if not pts:
        return
    xmax = max(x for x, _ in pts) or 1
    ymax = max(y for _, y in pts) or 1
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="{w/2}" y="18" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{pad}" y1="{h-pad}" x2="{w-10}" y2="{h-pad}" stroke="black"/>',
           f'<line x1="{pad}" y1="{h-pad}" x2="{pad}" y2="30" stroke="black"/>',
           f'<text x="{pad}" y="{h-pad+18}">0</text><text x="{w-10}" y="{h-pad+18}" text-anchor="end">{xmax:.0f} s</text>',
           f'<text x="{pad-4}" y="34" text-anchor="end">{ymax:.0f}</text>',
           f'<text x="12" y="{h/2}" transform="rotate(-90 12 {h/2})" text-anchor="middle">{ylabel}</text>']
    for i, (name, s) in enumerate(series.items()):
        coords = " ".join(f"{pad + x / xmax * (w - pad - 10):.1f},{h - pad - y / ymax * (h - pad - 30):.1f}" for x, y in s)
        out.append(f'<polyline fill="none" stroke="{colors[i % 4]}" stroke-width="1.5" points="{coords}"/>')
        out.append(f'<text x="{w-150}" y="{40 + 16*i}" fill="{colors[i % 4]}">{name}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))


def svg_histogram(path, title, values_ms):
    if not values_ms:
        return
    top = statistics.quantiles(values_ms, n=100)[98] if len(values_ms) > 100 else max(values_ms)
    bins = 30
    width = max(top, 1) / bins
    counts = [0] * bins
    for v in values_ms:
        counts[min(int(v / width), bins - 1)] += 1
    svg_lines(path, title, {"documents": [(i * width / 1000, c) for i, c in enumerate(counts)]}, "documents")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=0, help="documents/s to publish; 0 = as fast as possible")
    ap.add_argument("--update-ratio", type=float, default=0.1)
    ap.add_argument("--delete-ratio", type=float, default=0.05)
    ap.add_argument("--bad-ratio", type=float, default=0.01)
    ap.add_argument("--chaos", action="store_true")
    ap.add_argument("--chaos-every", type=float, default=20, help="seconds between faults")
    ap.add_argument("--migrate", action="store_true",
                    help="start a model migration mid-stream and approve it (see the docs above)")
    ap.add_argument("--rollback-window", type=int, default=90,
                    help="with --migrate: seconds the previous collection is kept after approval")
    ap.add_argument("--broken-sink", action="store_true",
                    help="the sink is a build that commits before upserting (--sink-vecstream)")
    ap.add_argument("--stall-secs", type=float, default=150,
                    help="end the wait when nothing reached Weaviate for this long")
    ap.add_argument("--vecstream", default=os.environ.get("VECSTREAM_BIN"))
    ap.add_argument("--sink-vecstream", help="binary for the sink (default: --vecstream)")
    ap.add_argument("--out", default=str(ROOT / "loadtest" / "results"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()

    run = time.strftime("lt%Y%m%dT%H%M%S", time.gmtime())
    out = pathlib.Path(args.out) / f"pipeline-{run}"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    words = vocabulary()
    registry = SchemaRegistryClient({"url": REGISTRY})
    serializer = AvroSerializer(registry, (ROOT / "schemas" / "document.avsc").read_text(),
                                conf={"auto.register.schemas": True})

    # The stream: base documents, then updates (shorter), deletes and poison, interleaved.
    docs = [(f"{run}-{i:05d}", 1, body(rng, words, length_mix(rng))) for i in range(args.count)]
    events = [("doc", d) for d in docs]
    updated = rng.sample(range(args.count), int(args.count * args.update_ratio))
    deleted = rng.sample([i for i in range(args.count) if i not in set(updated)], int(args.count * args.delete_ratio))
    update_text = {docs[i][0]: body(rng, words, rng.randint(10, 60)) for i in updated}
    tail = [("doc", (d, 2, t)) for d, t in update_text.items()]
    tail += [("delete", docs[i][0]) for i in deleted]
    tail += [("bad", f"{run}-bad-{i}") for i in range(int(args.count * args.bad_ratio))]
    rng.shuffle(tail)
    events += tail
    expected = {d[0]: 1 for d in docs}
    for i in updated:
        expected[docs[i][0]] = 2
    for i in deleted:
        expected[docs[i][0]] = None

    groups = (f"loadtest-{run}-embedder", f"loadtest-{run}-sink")
    start_groups_at_end([(groups[0], DOCS), (groups[1], VECTORS)])
    alias = "Loadtest" + run.replace("-", "")
    sets = [f"embedder.group_id={groups[0]}", "embedder.transactional_id=loadtest-embedder",
            f"sink.group_id={groups[1]}", "sink.max_backoff_ms=2000", f"weaviate.alias={alias}",
            f"temporal.cpu_task_queue=loadtest-{run}-cpu", f"temporal.gpu_task_queue=loadtest-{run}-gpu",
            "embedder.control_poll_ms=500", "embedder.reindex_on_model_change=false"]
    if args.chaos:
        # The long tail goes through Temporal, so killing the worker hits work in flight.
        sets.append("embedder.large_document_tokens=1500")
    if args.migrate:
        # A model of the run's own (no other alias shares its collection), so the check can
        # see the previous collection dropped when the rollback window closes.
        sets.append("engine.max_seq_length=192")
    if args.broken_sink and not args.sink_vecstream:
        raise SystemExit("--broken-sink needs --sink-vecstream (run.sh builds it)")
    binaries = {"embedder": args.vecstream, "sink": args.sink_vecstream or args.vecstream,
                "worker": args.vecstream}
    names = ("embedder", "sink", "worker") if args.chaos or args.migrate else ("embedder", "sink")
    comps = {}
    # Whatever happens to this script (SIGTERM included), its processes do not outlive it.
    atexit.register(lambda: [c.stop() for c in comps.values()])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for n in names:
        comps[n] = Component(binaries[n], n, sets, out)

    stop = threading.Event()
    lineage = []
    reader = threading.Thread(target=lineage_reader, args=(stop, run, lineage, registry), daemon=True)
    reader.start()
    time.sleep(2)

    produced_at = {}
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "linger.ms": 5})
    t0 = time.time()
    samples = []

    def sampler():
        while not stop.is_set():
            row = {"t": time.time() - t0}
            for n, c in comps.items():
                m = c.metrics()
                row[n] = {"cpu": c.usage()[0], "rss": c.usage()[1],
                          "lag": metric_sum(m, "vecstream_pipeline_consumer_lag"),
                          "embedded_docs": m.get('vecstream_embedder_documents_total{outcome="embedded"}', 0),
                          "chunks": m.get("vecstream_embedder_chunks_total", 0),
                          "tokens": m.get("vecstream_embedder_tokens_total", 0),
                          "upserted": m.get('vecstream_sink_records_total{outcome="upserted"}', 0)}
            samples.append(row)
            time.sleep(1)

    threading.Thread(target=sampler, daemon=True).start()

    faults = []

    def weaviate_down(seconds, during=None):
        subprocess.run([ROOT / "compose/local/stack", "down", "weaviate"], capture_output=True)
        time.sleep(seconds / 2)
        if during:
            during()
        time.sleep(seconds / 2)
        subprocess.run([ROOT / "compose/local/stack", "up", "weaviate"], capture_output=True)

    def restart(kind):
        comps[kind].kill()
        comps[kind].start()

    def chaos():
        schedule = ["embedder", "sink", "weaviate", "worker", "weaviate+sink"]
        n = 0
        while not stop.wait(args.chaos_every):
            kind = schedule[n % len(schedule)]
            n += 1
            if kind == "weaviate":
                faults.append((time.time() - t0, "weaviate down 15 s"))
                weaviate_down(15)
            elif kind == "weaviate+sink":
                faults.append((time.time() - t0, "weaviate down 15 s, kill -9 sink during it"))
                weaviate_down(15, during=lambda: restart("sink"))
            else:
                faults.append((time.time() - t0, f"kill -9 {kind}"))
                restart(kind)

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    if args.chaos:
        chaos_thread.start()

    migration = {"workflow": None, "phases": [], "error": None}

    def cli(*argv):
        cmd = [args.vecstream, "--log-level", "warn"]
        for s_ in sets:
            cmd += ["--set", s_]
        return subprocess.run(cmd + list(argv), capture_output=True, text=True)

    def reindex_status():
        r = cli("reindex", "status", migration["workflow"], "--json")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def migrate():
        """Starts the reindex, approves it once it awaits review, follows it to its end."""
        model_dir = pathlib.Path(os.environ.get("VECSTREAM_CACHE", pathlib.Path.home() / ".cache/vecstream"))
        r = cli("reindex", "start", "--alias", alias, "--tenant", run, "--max-seq-length", "128",
                "--model-dir", str(model_dir / "models/all-MiniLM-L6-v2"),
                "--catch-up-secs", "2", "--switch-grace", "5", "--rollback-window", str(args.rollback_window),
                "--review-timeout", "3600", "--heartbeat-secs", "10")
        if r.returncode != 0:
            migration["error"] = f"reindex start: {r.stderr.strip()}"
            print(f"[loadtest] {migration['error']}", flush=True)
            return
        migration["workflow"] = r.stdout.strip()
        approved = False
        while True:
            p = reindex_status()
            if p is not None:
                if not migration["phases"] or migration["phases"][-1][1] != p["phase"]:
                    migration["phases"].append((time.time() - t0, p["phase"]))
                    print(f"[loadtest] migration {p['phase']} at {time.time() - t0:.0f}s", flush=True)
                if p["awaiting_review"] and not approved:
                    approved = cli("review", "approve", migration["workflow"], "--reviewer", "loadtest",
                                   "--comment", "approved mid-stream").returncode == 0
                if p["phase"] in ("approved", "rejected", "rolled_back"):
                    return
            time.sleep(2)

    migration_thread = threading.Thread(target=migrate, daemon=True)

    interval = 1 / args.rate if args.rate > 0 else 0
    next_at = time.time()
    for n_event, (kind, item) in enumerate(events):
        if args.migrate and n_event == len(events) // 3:
            migration_thread.start()
        if interval:
            next_at += interval
            time.sleep(max(0, next_at - time.time()))
        if kind == "doc":
            doc_id, version, text = item
            now = int(time.time() * 1000)
            doc = {"id": doc_id, "tenant": run, "source": "loadtest://generator", "title": None, "body": text,
                   "content_type": "text/plain", "metadata": {}, "version": version, "deleted": False,
                   "produced_at": now}
            producer.produce(DOCS, key=doc_id.encode(),
                             value=serializer(doc, SerializationContext(DOCS, MessageField.VALUE)))
            produced_at[(doc_id, version)] = now
        elif kind == "delete":
            producer.produce(DOCS, key=item.encode(), value=None)
            produced_at[(item, "deleted")] = int(time.time() * 1000)
        else:
            producer.produce(DOCS, key=item.encode(), value=b"\x00 not avro at all")
        producer.poll(0)
    producer.flush(120)
    produce_s = time.time() - t0
    print(f"[loadtest] published {len(events)} records in {produce_s:.1f}s", flush=True)

    # Done when every live document's last version is upserted and every delete applied.
    def settled():
        upserted = {(d, v) for d, v, s, _, _ in lineage if s == "sink:upserted"}
        deletes = {d for d, _, s, _, _ in lineage if s == "sink:deleted"}
        return all(((d, v) in upserted) if v is not None else (d in deletes) for d, v in expected.items())

    # Lost records never arrive: stop waiting when nothing reached Weaviate for a while.
    seen, progress_at = 0, time.time()
    stalled = False
    while not settled() and time.time() - t0 < args.timeout:
        time.sleep(1)
        if len(lineage) != seen:
            seen, progress_at = len(lineage), time.time()
        elif time.time() - progress_at > args.stall_secs:
            stalled = True
            print(f"[loadtest] nothing reached Weaviate for {args.stall_secs:.0f}s: checking what is there",
                  flush=True)
            break
    drained_s = (progress_at if stalled else time.time()) - t0
    stop.set()
    # A fault in progress (Weaviate down) ends before the check, and Weaviate must answer.
    if chaos_thread.is_alive():
        chaos_thread.join()
    for _ in range(120):
        try:
            if urllib.request.urlopen(f"{WEAVIATE}/v1/.well-known/ready", timeout=2).status == 200:
                break
        except Exception:
            pass
        time.sleep(0.5)
    time.sleep(1.5)
    # The alias exists once a sink has written (on a fresh stack, during this run).
    checks = []
    if args.migrate:
        checks = verify_migration(migration, reindex_status, run, expected, args)
        ok = all(c["ok"] for c in checks) and migration["error"] is None
        problems = [f"{c['when']} {c['role']} {c['collection']}: {p}" for c in checks for p in c["problems"]]
        if migration["error"]:
            problems.insert(0, migration["error"])
    else:
        collection = json.load(urllib.request.urlopen(f"{WEAVIATE}/v1/aliases/{alias}", timeout=5))["class"]
        ok, problems = verify(collection, run, expected)
    for c in comps.values():
        c.stop()

    # Latency of each first upsert of a (document, version) against its produce time.
    first = {}
    for d, v, s, t, _ in lineage:
        if s == "sink:upserted" and (d, v) in produced_at and (d, v) not in first:
            first[(d, v)] = t - produced_at[(d, v)]
    lat = sorted(first.values())
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]) if lat else (lambda p: None)
    last = samples[-1] if samples else {}

    def total(comp, field):
        """A counter summed over process restarts (a restarted process counts from 0)."""
        acc, prev = 0.0, 0.0
        for smp in samples:
            cur = (smp.get(comp) or {}).get(field) or 0.0
            acc += cur - prev if cur >= prev else cur
            prev = cur
        return acc

    tokens = total("embedder", "tokens")
    chunks = total("embedder", "chunks")
    embedded = total("embedder", "embedded_docs")

    # Engine-only ceiling on the same tokens: the live documents' texts, chunk-sized.
    corpus = out / "engine-corpus.jsonl"
    with open(corpus, "w") as f:
        texts = {d: t for d, _, t in docs}
        texts.update(update_text)
        n = 0
        for d, t in texts.items():
            ws = t.split()
            for s in range(0, len(ws), 150):  # ~200 tokens, under the 256-token window
                f.write(json.dumps({"id": f"{d}-{n}", "text": " ".join(ws[s:s + 150])}) + "\n")
                n += 1
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([args.vecstream, "--log-level", "warn", "embed", "--quiet", "--input", str(corpus),
                        "--output", "/dev/null"], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    engine = json.loads(r.stderr.strip().splitlines()[-1])
    # CPU-seconds of the whole `vecstream embed` process (model loading included).
    engine["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    corpus.unlink()
    pipeline_tps = tokens / drained_s if drained_s else 0
    usage = {n: {"cpu_seconds": total(n, "cpu"),
                 "peak_rss_mb": max((s[n]["rss"] or 0) for s in samples) / 2**20 if samples else None} for n in comps}
    result = {
        "run": run, "count": args.count, "records_published": len(events), "chaos": args.chaos, "faults": faults,
        "broken_sink": args.broken_sink, "stalled": stalled,
        "restarts": {n: c.restarts for n, c in comps.items()},
        "publish_seconds": produce_s, "drained_seconds": drained_s,
        "documents_embedded": embedded, "chunks_embedded": chunks, "tokens_embedded": tokens,
        "documents_per_s": embedded / drained_s, "chunks_per_s": chunks / drained_s, "tokens_per_s": pipeline_tps,
        "latency_ms": {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "count": len(lat)},
        "engine_only": engine, "pipeline_vs_engine_tokens_ratio": pipeline_tps / engine["tokens_per_s"],
        "processes": usage, "verdict": "PASS" if ok else "FAIL", "problems": problems[:50],
        "migration": {"workflow": migration["workflow"], "phases": migration["phases"],
                      "checks": [{k: v for k, v in c.items() if k != "problems"} for c in checks]}
        if args.migrate else None,
    }
    # Per CPU-second, the embedder against the engine alone: what the pipeline's own work
    # (Kafka, Avro, chunking, transactions, lineage) costs, apart from sharing the cores.
    embedder_cpu = usage["embedder"]["cpu_seconds"]
    result["tokens_per_cpu_second"] = {
        "embedder": tokens / embedder_cpu if embedder_cpu else None,
        "engine_only": engine["tokens"] / engine["cpu_seconds"] if engine["cpu_seconds"] else None,
    }
    tpc = result["tokens_per_cpu_second"]
    result["embedder_vs_engine_per_cpu_second"] = (tpc["embedder"] / tpc["engine_only"]
                                                    if tpc["embedder"] and tpc["engine_only"] else None)
    (out / "results.json").write_text(json.dumps({**result, "samples": samples}, indent=1))
    xs = lambda key, field: [(s["t"], s[key][field]) for s in samples if s.get(key)]
    rate = lambda pts: [(pts[i][0], (pts[i][1] - pts[i - 1][1]) / max(pts[i][0] - pts[i - 1][0], 1e-9))
                        for i in range(1, len(pts))]
    svg_lines(out / "throughput.svg", "Throughput (per second)",
              {"docs embedded/s": rate(xs("embedder", "embedded_docs")), "records upserted/s": rate(xs("sink", "upserted"))},
              "per second")
    svg_lines(out / "lag.svg", "Consumer lag (records)",
              {"embedder": xs("embedder", "lag"), "sink": xs("sink", "lag")}, "records")
    svg_histogram(out / "latency.svg", "Produce-to-upserted latency (x: seconds)", lat)
    report = f"""# Pipeline load test {run}

{args.count} documents ({len(events)} records with {len(updated)} updates, {len(deleted)} deletes,
{int(args.count * args.bad_ratio)} undecodable), rate {'max' if not args.rate else args.rate}/s,
chaos {'on: ' + ', '.join(f'{t:.0f}s {k}' for t, k in faults) if args.chaos else 'off'}.
{'**Sink: the deliberately broken build that commits offsets before upserting** (expected verdict: FAIL).' if args.broken_sink else ''}
{f'The wait ended after {args.stall_secs:.0f} s without progress: some expected effects never arrived.' if stalled else ''}

| measure | value |
|---|---|
| published in | {produce_s:.1f} s |
| all effects in Weaviate after | {drained_s:.1f} s |
| documents embedded/s | {result['documents_per_s']:.1f} |
| chunks/s | {result['chunks_per_s']:.1f} |
| tokens/s (pipeline) | {pipeline_tps:.0f} |
| tokens/s (engine only, `vecstream embed`, same texts) | {engine['tokens_per_s']:.0f} |
| **pipeline / engine** | **{result['pipeline_vs_engine_tokens_ratio']:.2f}** |
| latency p50 / p95 / p99 (produce → upserted) | {q(0.5)} / {q(0.95)} / {q(0.99)} ms |
| tokens per CPU-second: embedder / engine only | {tpc['embedder'] or 0:.0f} / {tpc['engine_only'] or 0:.0f} (**{result['embedder_vs_engine_per_cpu_second'] or 0:.2f}**) |
| embedder CPU s / peak RSS | {usage['embedder']['cpu_seconds']:.1f} / {usage['embedder']['peak_rss_mb']:.0f} MB (cores used: {usage['embedder']['cpu_seconds'] / drained_s:.2f}) |
| sink CPU s / peak RSS | {usage['sink']['cpu_seconds']:.1f} / {usage['sink']['peak_rss_mb']:.0f} MB |
{f"| worker CPU s / peak RSS | {usage['worker']['cpu_seconds']:.1f} / {usage['worker']['peak_rss_mb']:.0f} MB |" if 'worker' in usage else ''}
| restarts (chaos) | {', '.join(f'{n} {c.restarts}' for n, c in comps.items())} |
| Weaviate contents check | **{result['verdict']}** {('(' + '; '.join(problems[:5]) + ')') if problems else ''} |
{migration_rows(migration, checks) if args.migrate else ''}

![throughput](throughput.svg) ![lag](lag.svg) ![latency](latency.svg)
"""
    (out / "report.md").write_text(report)
    print(report)
    print(f"[loadtest] results in {out}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
