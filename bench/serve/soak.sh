#!/usr/bin/env bash
# bench/serve/soak.sh [MLC] [MODEL] [-- soak.mjs options]: starts `mlc serve` on a free loopback
# port with one compute thread (the machine is shared), runs soak.mjs against it (default: 600 s at
# concurrency 16, mixed streamed / non-streamed / cancelled requests, /metrics every 30 s), stops
# the server. Extra server flags: MLC_SERVE_ARGS="...". Exit status: soak.mjs's (1 on any error or
# leaked KV page).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MLC=${1:-$HERE/../../build/mlc}
MODEL=${2:-$HERE/../../models/default}
shift 2 2>/dev/null || shift $#
[ "${1:-}" = "--" ] && shift
LOG=$(mktemp)
"$MLC" serve "$MODEL" --port 0 --max-batch 32 --threads 1 ${MLC_SERVE_ARGS:-} >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 600); do
  PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$LOG")
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "${PORT:-}" ] || { cat "$LOG"; exit 1; }
echo "soak: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), server pid $PID port $PORT"
node "$HERE/soak.mjs" "http://127.0.0.1:$PORT" --model "$(basename "$MODEL")" "$@"
rc=$?
echo "soak: ended $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load $(cut -d' ' -f1-3 /proc/loadavg); server alive: $(kill -0 $PID 2>/dev/null && echo yes || echo no)"
exit $rc
