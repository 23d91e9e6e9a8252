#!/usr/bin/env bash
# bench/serve/run.sh [MLC] [MODEL] [-- bench options]: starts `mlc serve` on a free loopback
# port, runs bench.mjs against it (default: concurrency 1, 8, 32), stops the server. Extra server
# flags: MLC_SERVE_ARGS="--mixed-prefill 0" (or "--device cuda"). BENCH_CLIENT=py runs bench.py (the
# same client in Python 3, for machines without node) instead. MLC_SERVE_WAIT: seconds to wait for
# the server to listen (default 60; loading a large model on a GPU can take longer). MLC_SERVE_LOG=FILE
# keeps the server's output there.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MLC=${1:-$HERE/../../build/mlc}
MODEL=${2:-$HERE/../../models/default}
shift 2 2>/dev/null || shift $#
[ "${1:-}" = "--" ] && shift
LOG=${MLC_SERVE_LOG:-$(mktemp)}
"$MLC" serve "$MODEL" --port 0 --max-batch 32 ${MLC_SERVE_ARGS:-} >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; [ -n "${MLC_SERVE_LOG:-}" ] || rm -f "$LOG"' EXIT
for _ in $(seq $(( ${MLC_SERVE_WAIT:-60} * 10 ))); do
  PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$LOG")
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "${PORT:-}" ] || { cat "$LOG"; exit 1; }
kill -0 $PID 2>/dev/null || { cat "$LOG"; exit 1; }
if [ "${BENCH_CLIENT:-node}" = py ]; then
  python3 "$HERE/bench.py" "http://127.0.0.1:$PORT" --model "$(basename "$MODEL")" "$@"
else
  node "$HERE/bench.mjs" "http://127.0.0.1:$PORT" --model "$(basename "$MODEL")" "$@"
fi
