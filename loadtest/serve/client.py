"""Load client of loadtest/serve/run.sh: throughput of an OpenAI-compatible embeddings
endpoint, and query latency while bulk clients saturate it.

    client.py throughput --url URL --model M --corpus F [--concurrency C] [--batch B]
    client.py latency --url URL --model M --corpus F [--bulk-clients K] [--batch B]
        [--seconds S] [--warmup S]

Prints one JSON line. Vectors are asked for as base64 (what OpenAI's client does by default)
and not decoded: the client's own CPU stays small and equal for every server.
"""

import argparse
import json
import statistics
import sys
import threading
import time

import http.client
import urllib.parse


class Client:
    """One keep-alive HTTP/1.1 connection (standard library only)."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.path = u.path
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()


class HTTPError(Exception):
    pass


def post(client, url, model, texts, lane=None):
    headers = {"content-type": "application/json"}
    if lane:
        headers["x-vecstream-lane"] = lane
    payload = json.dumps({"model": model, "input": texts, "encoding_format": "base64"})
    client.conn.request("POST", client.path, body=payload, headers=headers)
    r = client.conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise HTTPError(f"{r.status}: {data[:200]!r}")
    body = json.loads(data)
    if len(body["data"]) != len(texts):
        raise SystemExit(f"{len(body['data'])} vectors for {len(texts)} texts")
    return body.get("usage", {}).get("prompt_tokens", 0)


def throughput(a, texts):
    batches = [texts[i:i + a.batch] for i in range(0, len(texts), a.batch)]
    lock = threading.Lock()
    tokens = [0]
    nxt = [0]

    def work():
        with Client(a.url) as c:
            while True:
                with lock:
                    if nxt[0] >= len(batches):
                        return
                    b = batches[nxt[0]]
                    nxt[0] += 1
                t = post(c, a.url, a.model, b)
                with lock:
                    tokens[0] += t

    # One warm-up request (model load, connection).
    with Client(a.url) as c:
        post(c, a.url, a.model, texts[: a.batch])
    start = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(a.concurrency)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    secs = time.perf_counter() - start
    return {"texts": len(texts), "seconds": secs, "texts_per_s": len(texts) / secs,
            "server_tokens": tokens[0], "concurrency": a.concurrency, "batch": a.batch}


def latency(a, texts):
    stop = threading.Event()
    bulk_texts = [0]
    lock = threading.Lock()

    def bulk(k):
        with Client(a.url) as c:
            i = k * a.batch
            while not stop.is_set():
                b = [texts[(i + j) % len(texts)] for j in range(a.batch)]
                i += a.batch * a.bulk_clients
                try:
                    post(c, a.url, a.model, b, lane="bulk")
                except HTTPError:
                    continue
                with lock:
                    bulk_texts[0] += len(b)

    threads = [threading.Thread(target=bulk, args=(k,), daemon=True) for k in range(a.bulk_clients)]
    [t.start() for t in threads]
    time.sleep(a.warmup)
    lat = []
    queries = [t.split(".")[0][:120] for t in texts[:200]]
    with Client(a.url) as c:
        end = time.perf_counter() + a.seconds
        bulk_before = bulk_texts[0]
        started = time.perf_counter()
        q = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            post(c, a.url, a.model, [queries[q % len(queries)]], lane="query")
            lat.append(time.perf_counter() - t0)
            q += 1
        elapsed = time.perf_counter() - started
        bulk_rate = (bulk_texts[0] - bulk_before) / elapsed
    stop.set()
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
    return {"queries": len(lat), "p50_ms": pct(0.50) * 1e3, "p90_ms": pct(0.90) * 1e3,
            "p99_ms": pct(0.99) * 1e3, "mean_ms": statistics.mean(lat) * 1e3,
            "bulk_texts_per_s": bulk_rate, "bulk_clients": a.bulk_clients, "batch": a.batch}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("mode", choices=["throughput", "latency"])
    p.add_argument("--url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--bulk-clients", type=int, default=4)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--warmup", type=float, default=3)
    a = p.parse_args()
    texts = [json.loads(l)["text"] for l in open(a.corpus, encoding="utf-8") if l.strip()]
    out = throughput(a, texts) if a.mode == "throughput" else latency(a, texts)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
