#!/usr/bin/env bash
# Engine benchmark: sentence-transformers (PyTorch CPU) and `vecstream embed`, alternately,
# on the same corpus, in one run; prints each run and the ratio of median tokens/s.
#
#   loadtest/embed/bench.sh [--count N] [--rounds R] [--threads T] [--precision P] [--backend cpu|cuda]
#
# --backend cuda (on a GPU machine with the NVIDIA driver, and libnvrtc and libcublas on the
# loader path, e.g. from PyPI nvidia-cuda-nvrtc-cu12 / nvidia-cublas-cu12) builds vecstream
# with `--features cuda` and runs both systems on the GPU (sentence-transformers with
# device="cuda"). --precision fp16 (CUDA only) runs vecstream's fp16 path against
# sentence-transformers with model.half(); int8 (CPU only) against its fp32.
#
# Needs the reference venv (created here on first use: sentence-transformers + torch from
# PyPI, about 4 GB) and a release build of vecstream (built here). Results go to
# loadtest/results/embed-<date>.json. VECSTREAM_BIN=path skips the build and benchmarks that binary.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
COUNT=2000 ROUNDS=3 THREADS=2 PRECISION=fp32 BACKEND=cpu
while (($#)); do
  case "$1" in
    --count) COUNT="$2"; shift 2 ;; --rounds) ROUNDS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;; --precision) PRECISION="$2"; shift 2 ;;
    --backend) BACKEND="$2"; shift 2 ;;
    *) echo "unknown flag $1" >&2; exit 2 ;;
  esac
done
CACHE="${VECSTREAM_CACHE:-$HOME/.cache/vecstream}"
MODEL="$CACHE/models/all-MiniLM-L6-v2"
REF="$CACHE/venv-ref"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
compose/local/stack install >/dev/null
if [[ ! -x "$REF/bin/python" ]] || ! "$REF/bin/python" -c "import sentence_transformers" 2>/dev/null; then
  echo "[bench] installing sentence-transformers + torch into $REF (once)" >&2
  python3 -m venv "$REF" && "$REF/bin/pip" install -q sentence-transformers >&2
fi
features=()
[[ "$BACKEND" == cuda ]] && features=(--features cuda)
[[ -n "${VECSTREAM_BIN:-}" ]] || cargo build -q --release -p vecstream "${features[@]}"
VEC="${VECSTREAM_BIN:-$CARGO_TARGET_DIR/release/vecstream}"
mkdir -p loadtest/results
corpus="$CACHE/bench-corpus-$COUNT.jsonl"
[[ -s "$corpus" ]] || python3 loadtest/embed/make_corpus.py --count "$COUNT" >"$corpus"
out="loadtest/results/embed-$(date -u +%Y%m%dT%H%M%S).json"
: >"$out.lines"
for r in $(seq 1 "$ROUNDS"); do
  st=$("$REF/bin/python" loadtest/embed/st_embed.py --model "$MODEL" --input "$corpus" --threads "$THREADS" --device "$BACKEND" --precision "$([[ $PRECISION == fp16 ]] && echo fp16 || echo fp32)" 2>/dev/null | tail -1)
  echo "{\"round\":$r,\"system\":\"sentence-transformers\",\"stats\":$st}" | tee -a "$out.lines"
  vs=$("$VEC" --log-level warn embed --quiet --input "$corpus" --output /dev/null --threads "$THREADS" --precision "$PRECISION" --backend "$BACKEND" 2>&1 >/dev/null | tail -1)
  echo "{\"round\":$r,\"system\":\"vecstream\",\"stats\":$vs}" | tee -a "$out.lines"
done
python3 - "$out.lines" "$out" "$THREADS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {s: statistics.median(r["stats"]["tokens_per_s"] for r in rows if r["system"] == s)
       for s in ("sentence-transformers", "vecstream")}
vs = [r["stats"] for r in rows if r["system"] == "vecstream"][0]
gflops = med["vecstream"] * 22.9e6 / 1e9
result = {"runs": rows, "median_tokens_per_s": med, "ratio": med["vecstream"] / med["sentence-transformers"],
          "threads": int(sys.argv[3]), "precision": vs["precision"], "approx_gflops": gflops}
json.dump(result, open(sys.argv[2], "w"), indent=2)
print(f"sentence-transformers {med['sentence-transformers']:.0f} tokens/s, vecstream {med['vecstream']:.0f} tokens/s "
      f"({vs['precision']}), ratio {result['ratio']:.2f}x, ~{gflops:.0f} GFLOP/s at 22.9 MFLOP/token")
PY
rm -f "$out.lines"
echo "results: $out"
