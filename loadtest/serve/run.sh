#!/usr/bin/env bash
# `vecstream serve` benchmark (issue #18), in one run on the same texts:
#   1. throughput: `vecstream embed` (the engine alone), `vecstream serve` and infinity-emb
#      (PyPI infinity-emb, torch on the CPU, the same model directory, its OpenAI-compatible
#      endpoint) at the same client concurrency, alternating for --rounds rounds;
#   2. query-lane latency (p50/p90/p99 of one-text queries) while --bulk-clients clients keep
#      the bulk lane saturated, with lanes and with `--no-lanes` (one first-come queue).
# Ratios: serve/embed (goal >= 0.9), serve/infinity, and no-lanes/lanes query latency.
#
#   loadtest/serve/run.sh [--count N] [--rounds R] [--concurrency C] [--batch B]
#       [--bulk-clients K] [--seconds S] [--threads T] [--skip-infinity]
#
# Builds a release vecstream (VECSTREAM_BIN=path uses that binary). Installs infinity-emb
# into $VECSTREAM_CACHE/infinity-venv on first use (torch from PyPI, a few GB). Results go to
# loadtest/results/serve-<date>.json and a markdown table on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
COUNT=1000 ROUNDS=2 CONCURRENCY=4 BATCH=32 BULK=4 SECONDS_=30 THREADS=2 INFINITY=1
while (($#)); do
  case "$1" in
    --count) COUNT="$2"; shift 2 ;; --rounds) ROUNDS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;; --batch) BATCH="$2"; shift 2 ;;
    --bulk-clients) BULK="$2"; shift 2 ;; --seconds) SECONDS_="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;; --skip-infinity) INFINITY=0; shift ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
CACHE="${VECSTREAM_CACHE:-$HOME/.cache/vecstream}"
MODEL="$CACHE/models/all-MiniLM-L6-v2"
INF="$CACHE/infinity-venv"
PY="$CACHE/venv/bin/python"
PORT_SERVE=18188 PORT_INF=18197
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
compose/local/stack install >/dev/null
if ((INFINITY)) && ! "$INF/bin/python" -c "import infinity_emb, torch" 2>/dev/null; then
  echo "[serve-bench] installing infinity-emb + torch into $INF (once)" >&2
  python3 -m venv "$INF"
  # click 8.2+ breaks infinity-emb 0.0.77's typer CLI ("Secondary flag is not valid").
  "$INF/bin/pip" install -q --disable-pip-version-check "infinity-emb[server,torch]==0.0.77" "click==8.1.8" >&2
fi
[[ -n "${VECSTREAM_BIN:-}" ]] || cargo build -q --release -p vecstream
VEC="${VECSTREAM_BIN:-$CARGO_TARGET_DIR/release/vecstream}"
mkdir -p loadtest/results
corpus="$CACHE/bench-corpus-$COUNT.jsonl"
[[ -s "$corpus" ]] || python3 loadtest/embed/make_corpus.py --count "$COUNT" >"$corpus"
model_id=$("$VEC" --log-level error embed --quiet --input <(head -1 "$corpus") --output /dev/null 2>&1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["model_id"])')
out="loadtest/results/serve-$(date -u +%Y%m%dT%H%M%S).json"
lines="$out.lines"; : >"$lines"
pids=()
cleanup() { for p in "${pids[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_ready() { # url
  for _ in $(seq 1 240); do curl -sf "$1" >/dev/null && return 0; sleep 0.5; done
  echo "[serve-bench] $1 never answered" >&2; return 1
}
start_serve() { # extra flags...
  "$VEC" --log-level warn serve --addr "127.0.0.1:$PORT_SERVE" --threads "$THREADS" "$@" >/dev/null 2>&1 &
  serve_pid=$!; pids+=("$serve_pid"); wait_ready "http://127.0.0.1:$PORT_SERVE/readyz"
}
stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
client() { "$PY" loadtest/serve/client.py "$@"; }

for r in $(seq 1 "$ROUNDS"); do
  vs=$("$VEC" --log-level warn embed --quiet --input "$corpus" --output /dev/null --threads "$THREADS" 2>&1 >/dev/null | tail -1)
  echo "{\"round\":$r,\"system\":\"vecstream embed\",\"stats\":$vs}" | tee -a "$lines"
  start_serve
  s=$(client throughput --url "http://127.0.0.1:$PORT_SERVE/v1/embeddings" --model "$model_id" --corpus "$corpus" --concurrency "$CONCURRENCY" --batch "$BATCH")
  echo "{\"round\":$r,\"system\":\"vecstream serve\",\"stats\":$s}" | tee -a "$lines"
  stop_pid "$serve_pid"
  if ((INFINITY)); then
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS="$THREADS" "$INF/bin/infinity_emb" v2 --model-id "$MODEL" --port "$PORT_INF" \
      --engine torch --device cpu --no-bettertransformer --batch-size "$BATCH" >/dev/null 2>&1 &
    inf_pid=$!; pids+=("$inf_pid"); wait_ready "http://127.0.0.1:$PORT_INF/health"
    i=$(client throughput --url "http://127.0.0.1:$PORT_INF/embeddings" --model "$MODEL" --corpus "$corpus" --concurrency "$CONCURRENCY" --batch "$BATCH")
    echo "{\"round\":$r,\"system\":\"infinity-emb\",\"stats\":$i}" | tee -a "$lines"
    stop_pid "$inf_pid"
  fi
done
for mode in lanes no-lanes; do
  if [[ $mode == lanes ]]; then start_serve; else start_serve --no-lanes; fi
  l=$(client latency --url "http://127.0.0.1:$PORT_SERVE/v1/embeddings" --model "$model_id" --corpus "$corpus" --bulk-clients "$BULK" --batch "$BATCH" --seconds "$SECONDS_")
  echo "{\"system\":\"vecstream serve ($mode)\",\"latency\":$l}" | tee -a "$lines"
  stop_pid "$serve_pid"
done
python3 - "$lines" "$out" "$THREADS" "$CONCURRENCY" "$BATCH" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(system):
    v = [r["stats"]["texts_per_s"] for r in rows if r.get("system") == system and "stats" in r]
    return statistics.median(v) if v else None
embed, serve, inf = med("vecstream embed"), med("vecstream serve"), med("infinity-emb")
lat = {r["system"]: r["latency"] for r in rows if "latency" in r}
lanes, fifo = lat["vecstream serve (lanes)"], lat["vecstream serve (no-lanes)"]
result = {
    "runs": rows, "threads": int(sys.argv[3]), "concurrency": int(sys.argv[4]), "batch": int(sys.argv[5]),
    "median_texts_per_s": {"vecstream embed": embed, "vecstream serve": serve, "infinity-emb": inf},
    "ratio_serve_to_embed": serve / embed,
    "ratio_serve_to_infinity": serve / inf if inf else None,
    "query_latency_ms": {"lanes": lanes, "no_lanes": fifo},
    "ratio_p99_no_lanes_to_lanes": fifo["p99_ms"] / lanes["p99_ms"],
}
json.dump(result, open(sys.argv[2], "w"), indent=2)
print("| system | texts/s (median) | ratio |\n|---|---|---|")
print(f"| vecstream embed | {embed:.1f} | 1.00 |")
print(f"| vecstream serve (HTTP, {sys.argv[4]} clients x {sys.argv[5]} texts) | {serve:.1f} | {serve/embed:.2f} of embed |")
if inf:
    print(f"| infinity-emb 0.0.77 (torch CPU) | {inf:.1f} | serve = {serve/inf:.2f}x |")
print("\n| query lane while bulk is saturated | p50 ms | p90 ms | p99 ms | bulk texts/s |\n|---|---|---|---|---|")
for name, l in (("lanes", lanes), ("no lanes (FIFO)", fifo)):
    print(f"| {name} | {l['p50_ms']:.0f} | {l['p90_ms']:.0f} | {l['p99_ms']:.0f} | {l['bulk_texts_per_s']:.1f} |")
print(f"\np99 without lanes / with lanes: {result['ratio_p99_no_lanes_to_lanes']:.1f}x")
PY
rm -f "$lines"
echo "results: $out"
