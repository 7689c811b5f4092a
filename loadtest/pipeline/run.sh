#!/usr/bin/env bash
# Pipeline load test: stack up, release build, then loadtest.py with the given flags
# (see `loadtest/pipeline/run.sh --help`). Results in loadtest/results/pipeline-<time>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CACHE="${VECSTREAM_CACHE:-$HOME/.cache/vecstream}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
compose/local/stack up >/dev/null
if [[ -z "${VECSTREAM_BIN:-}" ]]; then
  cargo build -q --release -p vecstream
  VECSTREAM_BIN="$CARGO_TARGET_DIR/release/vecstream"
fi
"$VECSTREAM_BIN" --log-level warn topics create >/dev/null
exec "$CACHE/venv/bin/python" loadtest/pipeline/loadtest.py --vecstream "$VECSTREAM_BIN" "$@"
