#!/usr/bin/env bash
# Pipeline load test: stack up, release build, then loadtest.py with the given flags
# (see `loadtest/pipeline/run.sh --help`). Results in loadtest/results/pipeline-<time>/.
#
# --broken-sink also builds the deliberately broken sink (loadtest/broken-sink: the vecstream
# command whose sink commits offsets before upserting), copies it to
# $VECSTREAM_CACHE/bin/vecstream-broken-sink and runs the sink from it; with --chaos the
# verdict must then be FAIL.
#
# --brokers 3 starts the stack's three-broker Kafka (`compose/local/stack up --brokers 3`; a
# stack formatted for one broker must be purged first: `compose/local/stack down --purge
# kafka`); with --chaos one broker is then killed (SIGKILL) and restarted in turn.
#
# LOADTEST_PROFILE=dev builds the dev profile instead of release (the engine and numeric
# crates are at opt-level 3 there too; much faster to build on a small machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
CACHE="${VECSTREAM_CACHE:-$HOME/.cache/vecstream}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
PROFILE="${LOADTEST_PROFILE:-release}"
OUT_DIR="$CARGO_TARGET_DIR/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")"
args=()
broken=0
brokers=1
prev=""
for a in "$@"; do
  if [[ $a == --broken-sink ]]; then broken=1; fi
  if [[ $prev == --brokers ]]; then brokers="$a"; fi
  if [[ $a == --brokers=* ]]; then brokers="${a#*=}"; fi
  args+=("$a")
  prev="$a"
done
compose/local/stack up --brokers "$brokers" >/dev/null
eval "$(compose/local/stack env)"
export VECSTREAM_KAFKA_BROKERS
if ((broken)); then
  mkdir -p "$CACHE/bin"
  cargo build -q --profile "$PROFILE" -p vecstream-broken-sink
  cp "$OUT_DIR/vecstream-broken-sink" "$CACHE/bin/vecstream-broken-sink"
  args+=(--sink-vecstream "$CACHE/bin/vecstream-broken-sink")
fi
if [[ -z "${VECSTREAM_BIN:-}" ]]; then
  cargo build -q --profile "$PROFILE" -p vecstream
  VECSTREAM_BIN="$OUT_DIR/vecstream"
fi
"$VECSTREAM_BIN" --log-level warn topics create >/dev/null
exec "$CACHE/venv/bin/python" loadtest/pipeline/loadtest.py --vecstream "$VECSTREAM_BIN" "${args[@]}"
