#!/usr/bin/env bash
# bench/serve/run.sh [MLC] [MODEL] [-- bench.mjs options]: starts `mlc serve` on a free loopback
# port, runs bench.mjs against it (default: concurrency 1, 8, 32), stops the server. Extra server
# flags: MLC_SERVE_ARGS="--mixed-prefill 0".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MLC=${1:-$HERE/../../build/mlc}
MODEL=${2:-$HERE/../../models/default}
shift 2 2>/dev/null || shift $#
[ "${1:-}" = "--" ] && shift
LOG=$(mktemp)
"$MLC" serve "$MODEL" --port 0 --max-batch 32 ${MLC_SERVE_ARGS:-} >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 600); do
  PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$LOG")
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "${PORT:-}" ] || { cat "$LOG"; exit 1; }
node "$HERE/bench.mjs" "http://127.0.0.1:$PORT" --model "$(basename "$MODEL")" "$@"
