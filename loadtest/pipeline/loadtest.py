"""End-to-end load test of the pipeline on the local stack, with the engine-only ceiling
measured in the same run.

    loadtest/pipeline/run.sh [--count N] [--tenants T] [--rate R] [--update-ratio U]
                             [--delete-ratio D] [--bad-ratio B] [--chaos] [--chaos-every S]
                             [--migrate] [--rollback-window S] [--broken-sink] [--multi-tenancy]
                             [--stall-secs S] [--out DIR]

It starts `vecstream run embedder` and `vecstream run sink` (fresh consumer groups that begin
at the topics' current end), publishes a realistic document stream with the stock Python
client (length mix like real corpora; updates to shorter versions, tombstones and bad
records in the given ratios; a target rate or as fast as possible), and measures
documents/s, chunks/s and tokens/s, produce-to-upserted latency (lineage `sink:upserted`
event time against the produce time), consumer lag and the CPU and RSS of each process over
time. Then it runs `vecstream embed` on the chunk-sized texts of the same documents: the
engine-only ceiling; the report gives the pipeline's tokens/s as a ratio of it.

--chaos also starts `vecstream run worker` and sends documents over 1,500 tokens to their
LargeDocumentWorkflow on Temporal, then, every --chaos-every seconds, in turn: SIGKILL and
restart the embedder; the sink; Weaviate down for 15 s; the schema registry down for 15 s;
the worker; the Kafka broker stopped and started again (a broker restart mid-stream: the
producers buffer, transactions abort or retry, consumers rejoin), or, against the
three-broker stack (--brokers 3, `compose/local/stack up --brokers 3`), one broker killed
with SIGKILL (in turn node 2, 3, 1: leaders and the group and transaction coordinators move)
and restarted --broker-down seconds later; Weaviate down with the
sink killed during the outage (so a sink that commits before its upserts are durable loses
the batch it was retrying). Whatever the mode, the run ends with a check of Weaviate's
contents against the expected set and prints a verdict; it ends when every expected effect
is in, or when nothing has reached Weaviate for --stall-secs (lost records never arrive).

A document is its (tenant, id). The N documents are spread over --tenants tenants (the run
id, then <run>-t1, <run>-t2...) that share their ids: the same id under each tenant, with a
different body (so other chunks), updated and deleted per tenant independently (a tombstone
of one tenant's document leaves the other tenants' document of that id live). Every record
is keyed with the document's record key: `<tenant>` U+0000 `<id>` (the bare id only for the
tenant "default", which the run does not use); tombstones too. Bad records are, in turn,
undecodable values and mis-keyed documents (a valid document, version 99, under a key that
is not its record key: the embedder must dead-letter it, so it never shows). The check runs
per tenant: exactly the tenant's live ids, each at its last version (`doc_version`, a decimal
string), with chunk indexes 0..n-1 and as many chunks as the sink reported upserting, every
chunk's doc_id, tenant and doc_key (SHA-256 of the record key) those of its document, deleted
ones absent, and no other object of the tenant.

--migrate starts a model migration mid-stream (a third of the way through publishing): a
reindex of the run's alias to max_seq_length 128 with a short catch-up, approved as soon as
it awaits review, then its rollback window (--rollback-window seconds). With --chaos the
faults keep coming through it (the worker too: scans resume from their heartbeats). The
contents check then runs on every collection of the alias's family: while the window is
open, the new live collection and the previous one (each must hold exactly the expected
documents), and once it has closed, the live one again. The reindex is limited to the run's
first tenant (`reindex start --tenant <run>`; unlimited, it would re-embed every document
ever published on the stack's topic), so these checks cover that tenant only. The other
tenants' documents and tombstones of the same ids are on the topic it scans: the check shows
that none was taken for the first tenant's.

--multi-tenancy runs the pipeline with weaviate.multi_tenancy = true (one Weaviate tenant
per vecstream tenant): the check then names the tenant in its queries instead of filtering
on the `tenant` property.

--broken-sink (run.sh builds it: crate loadtest/broken-sink, binary given with
--sink-vecstream) runs a sink that commits offsets before upserting: with --chaos its verdict
must be FAIL, which shows that the check can fail.

Output: DIR/pipeline-<time>/{results.json, report.md, throughput.svg, lag.svg, latency.svg}.
"""

import argparse
import atexit
import hashlib
import json
import os
import pathlib
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
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
# Document identity (services/vecstream-core/src/ids.rs).
DEFAULT_TENANT = "default"
KEY_SEPARATOR = "\0"
# Weaviate's tenant names (weaviate.multi_tenancy = true accepts no others).
WEAVIATE_TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Version of the mis-keyed documents: above every real one, so a wrongly accepted one shows.
MISKEYED_VERSION = 99


def record_key(tenant, doc_id):
    """The Kafka record key of a document: its bare id for the default tenant, else
    `<tenant>` U+0000 `<id>` (ids.rs `record_key`). Documents, tombstones, vector records
    and lineage events of the document are all keyed by it."""
    return doc_id if tenant == DEFAULT_TENANT else f"{tenant}{KEY_SEPARATOR}{doc_id}"


def split_record_key(key):
    """(tenant, id) of a record key (ids.rs `split_record_key`): no separator, the default
    tenant's."""
    tenant, sep, doc_id = key.partition(KEY_SEPARATOR)
    return (tenant, doc_id) if sep else (DEFAULT_TENANT, key)


def doc_key(tenant, doc_id):
    """The exact identity stored with every chunk (`doc_key`): hex SHA-256 of the record key."""
    return hashlib.sha256(record_key(tenant, doc_id).encode("utf-8")).hexdigest()


def document(tenant, doc_id, version, text, now_ms):
    """A document record (schemas/document.avsc)."""
    return {"id": doc_id, "tenant": tenant, "source": "loadtest://generator", "title": None, "body": text,
            "content_type": "text/plain", "metadata": {}, "version": version, "deleted": False,
            "produced_at": now_ms}


def tenant_names(run, n):
    """The run's n tenants: the run id, then <run>-t1, <run>-t2... (Weaviate tenant names)."""
    names = [run] + [f"{run}-t{k}" for k in range(1, n)]
    for t in names:
        if not WEAVIATE_TENANT.fullmatch(t) or t == DEFAULT_TENANT:
            raise SystemExit(f"tenant name {t!r} is not a Weaviate tenant name")
    return names


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


def prefer_distinct_ids(rng, docs, candidates):
    """candidates (indexes into docs) shuffled, one per id first: picked from the front,
    updates and deletes touch one tenant of an id before a second one, so the same id stays
    as it was in the other tenants."""
    candidates = list(candidates)
    rng.shuffle(candidates)
    first, rest, seen = [], [], set()
    for i in candidates:
        (rest if docs[i][1] in seen else first).append(i)
        seen.add(docs[i][1])
    return first + rest


def workload(rng, words, run, tenants, count, update_ratio, delete_ratio, bad_ratio):
    """The stream: `count` documents (tenant, id, version 1, body) over the tenants, which
    share ids (id i under every tenant, each with its own body), then updates to a shorter
    version 2, tombstones and bad records, shuffled together, per (tenant, id).

    Returns (docs, events, expected, info): events are ("doc", (tenant, id, version, text)),
    ("delete", (tenant, id)), ("bad", key) and ("miskeyed", (key, (tenant, id, version,
    text))); expected is tenant -> id -> final version (None when deleted); info has the
    updated and deleted (tenant, id) lists, each document's last text and the counts of
    cross-tenant cases."""
    n_ids = -(-count // len(tenants))
    pairs = [(t, f"{run}-{i:05d}") for i in range(n_ids) for t in tenants][:count]
    docs = [(t, d, 1, body(rng, words, length_mix(rng))) for t, d in pairs]
    events = [("doc", d) for d in docs]
    updated = prefer_distinct_ids(rng, docs, range(count))[:int(count * update_ratio)]
    upd = set(updated)
    deleted = prefer_distinct_ids(rng, docs, (i for i in range(count) if i not in upd))[:int(count * delete_ratio)]
    update_text = {i: body(rng, words, rng.randint(10, 60)) for i in updated}
    tail = [("doc", (docs[i][0], docs[i][1], 2, t)) for i, t in update_text.items()]
    tail += [("delete", (docs[i][0], docs[i][1])) for i in deleted]
    for k in range(int(count * bad_ratio)):
        if k % 2 == 0:
            # Undecodable value, under a key of one of the run's tenants.
            tail.append(("bad", record_key(tenants[(k // 2) % len(tenants)], f"{run}-bad-{k}")))
            continue
        # A valid document under a key that is not its record key: the bare id (the key of
        # the default tenant's document) or its tenant with another id. Neither is the key
        # of a real document, so compaction never lets it replace one.
        t, d, _, _ = docs[rng.randrange(count)]
        key = d if (k // 2) % 2 == 0 else record_key(t, f"{d}-miskeyed")
        tail.append(("miskeyed", (key, (t, d, MISKEYED_VERSION, body(rng, words, rng.randint(10, 30))))))
    rng.shuffle(tail)
    events += tail
    expected = {t: {} for t in tenants}
    for t, d, v, _ in docs:
        expected[t][d] = v
    for i in updated:
        expected[docs[i][0]][docs[i][1]] = 2
    for i in deleted:
        expected[docs[i][0]][docs[i][1]] = None
    last_text = {(t, d): text for t, d, _, text in docs}
    last_text.update({docs[i][:2]: text for i, text in update_text.items()})

    def elsewhere(t, d):
        return {expected[o][d] for o in tenants if o != t and d in expected[o]}

    info = {
        "updated": [docs[i][:2] for i in updated],
        "deleted": [docs[i][:2] for i in deleted],
        "last_text": last_text,
        "ids": n_ids,
        # Deletes whose id stays live in another tenant, updates whose id is at another
        # version (or deleted) in another tenant: what tells tenants apart.
        "deletes_live_elsewhere": sum(1 for t, d in (docs[i][:2] for i in deleted)
                                      if elsewhere(t, d) - {None}),
        "updates_other_elsewhere": sum(1 for t, d in (docs[i][:2] for i in updated)
                                       if elsewhere(t, d) - {2}),
        "undecodable": sum(1 for k, _ in tail if k == "bad"),
        "miskeyed": sum(1 for k, _ in tail if k == "miskeyed"),
    }
    return docs, events, expected, info


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


def lineage_reader(stop, tenants, events, registry):
    """Appends (tenant, doc id, version, stage, time ms, chunks, collection) for every
    sink:upserted and sink:deleted event of a document of the given tenants (its key is the
    document's record key, `<tenant>` U+0000 `<id>`)."""
    tenants = set(tenants)
    deser = AvroDeserializer(registry)
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"loadtest-lineage-{time.time()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    parts = c.list_topics(LINEAGE, timeout=10).topics[LINEAGE].partitions
    c.assign([TopicPartition(LINEAGE, p, c.get_watermark_offsets(TopicPartition(LINEAGE, p), timeout=10)[1])
              for p in parts])
    while not stop.is_set():
        m = c.poll(0.5)
        if m is None or m.error() or not m.key():
            continue
        key_tenant, _ = split_record_key(m.key().decode(errors="replace"))
        if key_tenant not in tenants:
            continue
        e = deser(m.value(), SerializationContext(LINEAGE, MessageField.VALUE))
        f = e["vecstream"]
        if f["stage"] in ("sink:upserted", "sink:deleted"):
            t = e["eventTime"]
            # fastavro gives timestamp-millis as a datetime.
            t = int(t.timestamp() * 1000) if hasattr(t, "timestamp") else int(t)
            events.append((f.get("tenant") or key_tenant, f["doc_id"], f.get("doc_version"), f["stage"], t,
                           len(f.get("chunk_ids") or []), f.get("target_collection")))
    c.close()


class TenantNotFound(Exception):
    """A multi-tenant collection has no such tenant yet (made on its first write)."""


def graphql(query):
    req = urllib.request.Request(f"{WEAVIATE}/v1/graphql", json.dumps({"query": query}).encode(),
                                 {"Content-Type": "application/json"})
    data = json.load(urllib.request.urlopen(req, timeout=60))
    if data.get("errors"):
        if any("tenant not found" in str(e.get("message", "")) for e in data["errors"]):
            raise TenantNotFound(data["errors"])
        raise RuntimeError(data["errors"])
    return data["data"]


def scope(tenant, multi_tenancy):
    """The GraphQL `tenant:` argument with multi-tenancy, else nothing."""
    return f"tenant: {json.dumps(tenant)}, " if multi_tenancy else ""


def tenant_filter(tenant, multi_tenancy):
    """The `where` operands that keep to the tenant: the `tenant` property, or nothing when
    the query names a Weaviate tenant."""
    return [] if multi_tenancy else [f'{{path: ["tenant"], operator: Equal, valueText: {json.dumps(tenant)}}}']


def weaviate_rows(collection, tenant, doc_ids, multi_tenancy=False):
    """Chunk rows of the tenant's documents, by exact identity (`doc_key`), 200 documents
    per query (a query returns at most 10,000 objects)."""
    rows = []
    keys = sorted(doc_key(tenant, d) for d in doc_ids)
    for i in range(0, len(keys), 200):
        operands = tenant_filter(tenant, multi_tenancy) + [
            f'{{path: ["doc_key"], operator: ContainsAny, valueText: {json.dumps(keys[i:i + 200])}}}']
        where = (operands[0] if len(operands) == 1
                 else "{operator: And, operands: [%s]}" % ", ".join(operands))
        q = ('{ Get { %s(%swhere: %s, limit: 10000) '
             '{ doc_id doc_key tenant doc_version chunk_index } } }') % (
            collection, scope(tenant, multi_tenancy), where)
        try:
            rows += graphql(q)["Get"][collection] or []
        except TenantNotFound:
            return []
    return rows


def tenant_count(collection, tenant, multi_tenancy=False):
    """Objects of the tenant in the collection."""
    where = tenant_filter(tenant, multi_tenancy)
    args = scope(tenant, multi_tenancy) + (f"where: {where[0]}" if where else "")
    q = '{ Aggregate { %s%s { meta { count } } } }' % (collection, f"({args.rstrip(', ')})" if args else "")
    try:
        return graphql(q)["Aggregate"][collection][0]["meta"]["count"]
    except TenantNotFound:
        return 0


def parse_version(value):
    """A chunk's `doc_version`: the decimal string of the int64 version (a number in the
    old schema generation). (version or None, problem or None)."""
    if not isinstance(value, str):
        return (int(value) if isinstance(value, (int, float)) else None,
                f"doc_version {value!r} is not a decimal string (old schema generation?)")
    try:
        return int(value), None
    except ValueError:
        return None, f"doc_version {value!r} is not a decimal integer"


def check_rows(tenant, expected, rows, total, chunk_counts=None):
    """Problems of one tenant's contents. expected: doc id -> final version (None when
    deleted); rows: the chunks found for those documents' doc_keys; total: the tenant's
    objects in the collection; chunk_counts: doc id -> chunks the sink upserted for the
    final version (ids without one are not counted)."""
    keys = {doc_key(tenant, d): d for d in expected}
    by_doc, problems = {}, []
    for r in rows:
        d = keys.get(r.get("doc_key"))
        if d is None:
            problems.append(f"{tenant}: a chunk of doc_key {r.get('doc_key')!r} (doc_id {r.get('doc_id')!r}) "
                            "not asked for")
            continue
        if r.get("doc_id") != d or r.get("tenant") != tenant:
            problems.append(f"{tenant}/{d}: a chunk says doc_id {r.get('doc_id')!r}, tenant {r.get('tenant')!r}")
        version, why = parse_version(r.get("doc_version"))
        if why:
            problems.append(f"{tenant}/{d}: {why}")
        by_doc.setdefault(d, []).append((version, int(r["chunk_index"])))
    for doc, version in expected.items():
        found = by_doc.pop(doc, [])
        if version is None:
            if found:
                problems.append(f"{tenant}/{doc}: deleted but {len(found)} chunk(s) remain")
            continue
        if not found:
            problems.append(f"{tenant}/{doc}: missing")
            continue
        versions = {v for v, _ in found}
        indexes = sorted(i for _, i in found)
        if versions != {version}:
            problems.append(f"{tenant}/{doc}: versions {sorted(versions, key=str)}, expected {version}")
        if indexes != list(range(len(indexes))):
            problems.append(f"{tenant}/{doc}: chunk indexes {indexes[:8]}... not 0..n-1 (duplicate or stale)")
        n = (chunk_counts or {}).get(doc)
        if n is not None and len(found) != n:
            problems.append(f"{tenant}/{doc}: {len(found)} chunk(s), the sink upserted {n}")
    # Objects of the tenant under any other id (a stray write) show up in the total.
    if total != len(rows):
        problems.append(f"{tenant}: the tenant holds {total} objects, {len(rows)} belong to expected documents")
    return problems


def chunk_counts_of(lineage, tenant, expected, collection, any_collection):
    """doc id -> chunks of the final version, from the sink's `sink:upserted` events into
    the collection (with any_collection, from an event into any, when all agree)."""
    seen = {}
    for t, d, v, s, _, n, c in list(lineage):
        if s == "sink:upserted" and t == tenant and expected.get(d) == v:
            seen.setdefault(d, {})[c] = n
    out = {}
    for d, by_c in seen.items():
        if collection in by_c:
            out[d] = by_c[collection]
        elif any_collection and len(set(by_c.values())) == 1:
            out[d] = next(iter(by_c.values()))
    return out


def verify(collection, tenants, expected, lineage, multi_tenancy=False, any_collection=True):
    """expected: tenant -> doc id -> final version (None when deleted); each of the tenants
    is checked on its own. Returns (ok, problems, {tenant: number of problems})."""
    problems, per_tenant = [], {}
    for tenant in tenants:
        exp = expected[tenant]
        rows = weaviate_rows(collection, tenant, sorted(exp), multi_tenancy)
        total = tenant_count(collection, tenant, multi_tenancy)
        p = check_rows(tenant, exp, rows, total,
                       chunk_counts_of(lineage, tenant, exp, collection, any_collection))
        per_tenant[tenant] = len(p)
        problems += p
    return not problems, problems, per_tenant


def verify_migration(migration, reindex_status, tenants, expected, lineage, args):
    """The contents check on every collection of the migrating alias's family: in the
    rollback window, the new live and the previous collection; after it, the live one. A
    collection kept current by catch-ups may lag a few seconds: each check is retried for
    up to two minutes before it counts as failed. tenants: those the reindex covers."""
    checks = []

    def check(when, role, collection):
        deadline = time.time() + 120
        while True:
            ok, problems, _ = verify(collection, tenants, expected, lineage, args.multi_tenancy,
                                     any_collection=False)
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
    ap.add_argument("--count", type=int, default=5000, help="documents, all tenants together")
    ap.add_argument("--tenants", type=int, default=2,
                    help="tenants the documents are spread over, sharing their ids (names: the run id, <run>-t1...)")
    ap.add_argument("--rate", type=float, default=0, help="documents/s to publish; 0 = as fast as possible")
    ap.add_argument("--update-ratio", type=float, default=0.1)
    ap.add_argument("--delete-ratio", type=float, default=0.05)
    ap.add_argument("--bad-ratio", type=float, default=0.01)
    ap.add_argument("--chaos", action="store_true")
    ap.add_argument("--chaos-every", type=float, default=20, help="seconds between faults")
    ap.add_argument("--brokers", type=int, choices=[1, 3], default=1,
                    help="Kafka nodes of the stack (3: compose/local/stack up --brokers 3)")
    ap.add_argument("--broker-down", type=float, default=20,
                    help="with --brokers 3 --chaos: seconds a killed broker stays down")
    ap.add_argument("--migrate", action="store_true",
                    help="start a model migration mid-stream and approve it (see the docs above)")
    ap.add_argument("--rollback-window", type=int, default=90,
                    help="with --migrate: seconds the previous collection is kept after approval")
    ap.add_argument("--broken-sink", action="store_true",
                    help="the sink is a build that commits before upserting (--sink-vecstream)")
    ap.add_argument("--multi-tenancy", action="store_true",
                    help="weaviate.multi_tenancy = true: one Weaviate tenant per vecstream tenant")
    ap.add_argument("--stall-secs", type=float, default=150,
                    help="end the wait when nothing reached Weaviate for this long")
    ap.add_argument("--vecstream", default=os.environ.get("VECSTREAM_BIN"))
    ap.add_argument("--sink-vecstream", help="binary for the sink (default: --vecstream)")
    ap.add_argument("--out", default=str(ROOT / "loadtest" / "results"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    if args.tenants < 1 or args.count < args.tenants:
        raise SystemExit("--tenants must be at least 1 and at most --count")

    run = time.strftime("lt%Y%m%dT%H%M%S", time.gmtime())
    tenants = tenant_names(run, args.tenants)
    out = pathlib.Path(args.out) / f"pipeline-{run}"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    words = vocabulary()
    registry = SchemaRegistryClient({"url": REGISTRY})
    serializer = AvroSerializer(registry, (ROOT / "schemas" / "document.avsc").read_text(),
                                conf={"auto.register.schemas": True})

    # The stream: base documents over the tenants (shared ids), then updates (shorter),
    # deletes and bad records, interleaved; each per (tenant, id).
    docs, events, expected, info = workload(rng, words, run, tenants, args.count, args.update_ratio,
                                            args.delete_ratio, args.bad_ratio)
    updated, deleted = info["updated"], info["deleted"]
    print(f"[loadtest] {len(docs)} documents over {len(tenants)} tenant(s) ({', '.join(tenants)}) sharing "
          f"{info['ids']} ids; {len(updated)} updates ({info['updates_other_elsewhere']} of an id at another "
          f"version in another tenant), {len(deleted)} deletes ({info['deletes_live_elsewhere']} of an id live in "
          f"another tenant), {info['undecodable']} undecodable, {info['miskeyed']} mis-keyed", flush=True)
    if len(tenants) > 1 and deleted and not info["deletes_live_elsewhere"]:
        print("[loadtest] warning: no delete leaves its id live in another tenant", flush=True)

    groups = (f"loadtest-{run}-embedder", f"loadtest-{run}-sink")
    start_groups_at_end([(groups[0], DOCS), (groups[1], VECTORS)])
    alias = "Loadtest" + run.replace("-", "")
    global BOOTSTRAP
    if args.brokers == 3:
        BOOTSTRAP = "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    sets = [f"kafka.brokers={BOOTSTRAP}", f"embedder.group_id={groups[0]}", "embedder.transactional_id=loadtest-embedder",
            f"sink.group_id={groups[1]}", "sink.max_backoff_ms=2000", f"weaviate.alias={alias}",
            f"temporal.cpu_task_queue=loadtest-{run}-cpu", f"temporal.gpu_task_queue=loadtest-{run}-gpu",
            "embedder.control_poll_ms=500", "embedder.reindex_on_model_change=false"]
    if args.chaos:
        # The long tail goes through Temporal, so killing the worker hits work in flight.
        sets.append("embedder.large_document_tokens=1500")
    if args.multi_tenancy:
        sets.append("weaviate.multi_tenancy=true")
    if args.migrate:
        # A model of the run's own (no other alias shares its collection), so the check can
        # see the previous collection dropped when the rollback window closes.
        sets.append("engine.max_seq_length=192")
    if args.migrate:
        # Reviews are signed: a key of the run's own, which its worker trusts.
        key_dir = pathlib.Path(tempfile.mkdtemp(prefix="loadtest-keys-"))
        keygen = subprocess.run([args.vecstream, "review", "keygen", "--name", "loadtest",
                                 "--out", str(key_dir / "loadtest.key")], capture_output=True, text=True)
        if keygen.returncode != 0:
            raise SystemExit(f"vecstream review keygen failed: {keygen.stderr}")
        (key_dir / "authorized_keys").write_text(keygen.stdout)
        sets += [f"review.key={key_dir / 'loadtest.key'}",
                 f"review.authorized_keys={key_dir / 'authorized_keys'}"]
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
    reader = threading.Thread(target=lineage_reader, args=(stop, tenants, lineage, registry), daemon=True)
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

    def service_down(service, seconds, during=None):
        subprocess.run([ROOT / "compose/local/stack", "down", service], capture_output=True)
        time.sleep(seconds / 2)
        if during:
            during()
        time.sleep(seconds / 2)
        subprocess.run([ROOT / "compose/local/stack", "up", service], capture_output=True)

    def restart(kind):
        comps[kind].kill()
        comps[kind].start()

    cache = pathlib.Path(os.environ.get("VECSTREAM_CACHE", pathlib.Path.home() / ".cache/vecstream"))
    brokers_killed = []

    def kill_broker(seconds):
        # In turn node 2, 3, 1 (node 1 is also the bootstrap address the clients know first).
        node = ["kafka-2", "kafka-3", "kafka"][len(brokers_killed) % 3]
        brokers_killed.append(node)
        pid = int((cache / "run" / f"{node}.pid").read_text())
        os.killpg(pid, signal.SIGKILL)  # the stack starts each broker as its group's leader
        time.sleep(seconds)
        subprocess.run([ROOT / "compose/local/stack", "up", node], capture_output=True)
        return node

    def chaos():
        schedule = ["embedder", "sink", "weaviate", "registry", "worker", "kafka",
                    "weaviate+sink"]
        n = 0
        while not stop.wait(args.chaos_every):
            kind = schedule[n % len(schedule)]
            n += 1
            if kind in ("weaviate", "registry"):
                faults.append((time.time() - t0, f"{kind} down 15 s"))
                service_down(kind, 15)
            elif kind == "kafka" and args.brokers == 3:
                at = time.time() - t0
                node = kill_broker(args.broker_down)
                faults.append((at, f"kill -9 broker {node}, restarted {args.broker_down:.0f} s later"))
            elif kind == "kafka":
                faults.append((time.time() - t0, "kafka broker stopped and restarted"))
                service_down("kafka", 4)
            elif kind == "weaviate+sink":
                faults.append((time.time() - t0, "weaviate down 15 s, kill -9 sink during it"))
                service_down("weaviate", 15, during=lambda: restart("sink"))
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
        r = cli("reindex", "start", "--alias", alias, "--tenant", tenants[0], "--max-seq-length", "128",
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
        now = int(time.time() * 1000)
        if kind == "doc":
            tenant, doc_id, version, text = item
            producer.produce(DOCS, key=record_key(tenant, doc_id).encode(),
                             value=serializer(document(tenant, doc_id, version, text, now),
                                              SerializationContext(DOCS, MessageField.VALUE)))
            produced_at[(tenant, doc_id, version)] = now
        elif kind == "miskeyed":
            key, (tenant, doc_id, version, text) = item
            producer.produce(DOCS, key=key.encode(),
                             value=serializer(document(tenant, doc_id, version, text, now),
                                              SerializationContext(DOCS, MessageField.VALUE)))
        elif kind == "delete":
            tenant, doc_id = item
            # A tombstone names its tenant by its key.
            producer.produce(DOCS, key=record_key(tenant, doc_id).encode(), value=None)
            produced_at[(tenant, doc_id, "deleted")] = now
        else:
            producer.produce(DOCS, key=item.encode(), value=b"\x00 not avro at all")
        producer.poll(0)
    producer.flush(120)
    produce_s = time.time() - t0
    print(f"[loadtest] published {len(events)} records in {produce_s:.1f}s", flush=True)

    # Done when every live document's last version is upserted and every delete applied,
    # in every tenant.
    def settled():
        events_now = list(lineage)
        upserted = {(t, d, v) for t, d, v, s, _, _, _ in events_now if s == "sink:upserted"}
        deletes = {(t, d) for t, d, _, s, _, _, _ in events_now if s == "sink:deleted"}
        return all(((t, d, v) in upserted) if v is not None else ((t, d) in deletes)
                   for t, exp in expected.items() for d, v in exp.items())

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
    per_tenant = {}
    if args.migrate:
        # The reindex covers the run's first tenant only (reindex start --tenant).
        checks = verify_migration(migration, reindex_status, tenants[:1], expected, lineage, args)
        ok = all(c["ok"] for c in checks) and migration["error"] is None
        problems = [f"{c['when']} {c['role']} {c['collection']}: {p}" for c in checks for p in c["problems"]]
        if migration["error"]:
            problems.insert(0, migration["error"])
    else:
        collection = json.load(urllib.request.urlopen(f"{WEAVIATE}/v1/aliases/{alias}", timeout=5))["class"]
        ok, problems, per_tenant = verify(collection, tenants, expected, lineage, args.multi_tenancy)
        for t, n in per_tenant.items():
            print(f"[loadtest] contents of tenant {t}: {'PASS' if not n else f'FAIL ({n} problems)'}", flush=True)
    for c in comps.values():
        c.stop()

    # Latency of each first upsert of a (document, version) against its produce time.
    first = {}
    for tenant, d, v, s, t, _, _ in lineage:
        if s == "sink:upserted" and (tenant, d, v) in produced_at and (tenant, d, v) not in first:
            first[(tenant, d, v)] = t - produced_at[(tenant, d, v)]
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
        n = 0
        for (tenant, d), t in info["last_text"].items():
            ws = t.split()
            for s in range(0, len(ws), 150):  # ~200 tokens, under the 256-token window
                f.write(json.dumps({"id": f"{tenant}/{d}-{n}", "text": " ".join(ws[s:s + 150])}) + "\n")
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
        "run": run, "count": args.count, "tenants": tenants, "shared_ids": info["ids"],
        "multi_tenancy": args.multi_tenancy, "updates": len(updated), "deletes": len(deleted),
        "deletes_live_elsewhere": info["deletes_live_elsewhere"],
        "updates_other_elsewhere": info["updates_other_elsewhere"],
        "undecodable": info["undecodable"], "miskeyed": info["miskeyed"],
        "records_published": len(events), "chaos": args.chaos, "faults": faults,
        "brokers": args.brokers,
        "broken_sink": args.broken_sink, "stalled": stalled,
        "restarts": {n: c.restarts for n, c in comps.items()},
        "publish_seconds": produce_s, "drained_seconds": drained_s,
        "documents_embedded": embedded, "chunks_embedded": chunks, "tokens_embedded": tokens,
        "documents_per_s": embedded / drained_s, "chunks_per_s": chunks / drained_s, "tokens_per_s": pipeline_tps,
        "latency_ms": {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "count": len(lat)},
        "engine_only": engine, "pipeline_vs_engine_tokens_ratio": pipeline_tps / engine["tokens_per_s"],
        "processes": usage, "verdict": "PASS" if ok else "FAIL", "problems": problems[:50],
        "problems_per_tenant": per_tenant,
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
    # One verdict per tenant, on the row after the overall one (no blank line in the table).
    tenant_rows = "".join(f"\n| contents of tenant {t} | {'PASS' if not n else f'FAIL ({n} problems)'} |"
                          for t, n in per_tenant.items())
    report = f"""# Pipeline load test {run}

{args.count} documents over {len(tenants)} tenant(s) sharing {info['ids']} ids ({', '.join(tenants)}{', Weaviate multi-tenancy' if args.multi_tenancy else ''}),
{len(events)} records with {len(updated)} updates ({info['updates_other_elsewhere']} of an id at another version in another tenant),
{len(deleted)} deletes ({info['deletes_live_elsewhere']} of an id live in another tenant), {info['undecodable']} undecodable,
{info['miskeyed']} mis-keyed; rate {'max' if not args.rate else args.rate}/s,
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
| Weaviate contents check | **{result['verdict']}** {('(' + '; '.join(problems[:5]) + ')') if problems else ''} |{tenant_rows}
{migration_rows(migration, checks) if args.migrate else ''}

![throughput](throughput.svg) ![lag](lag.svg) ![latency](latency.svg)
"""
    (out / "report.md").write_text(report)
    print(report)
    print(f"[loadtest] results in {out}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
