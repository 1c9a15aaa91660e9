#!/usr/bin/env bash
# Usage: bench/run-fanout.sh TARGET CONNECTIONS RATE [extra generator args...]
#   TARGET: pulsewire | socketio | centrifuge
# Starts the server on 127.0.0.1:$PORT, runs the fan-out load generator
# against it with --server-pid, prints the report and stops the server.
# Environment: PORT, DURATION (30), WARMUP (5), THREADS (1), PAYLOAD (100),
#   CONNECT_RATE (2000), BENCH_BIN (generator command), LOG_DIR (bench/logs).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [[ $# -lt 3 ]]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
TARGET="$1" CONNECTIONS="$2" RATE="$3"
shift 3
PORT="${PORT:-$(default_port "$TARGET")}"
LOG_DIR="${LOG_DIR:-$BENCH_DIR/logs}"
mkdir -p "$LOG_DIR"
STAMP="$(date +%Y%m%d-%H%M%S)"
SERVER_LOG="$LOG_DIR/$STAMP-fanout-$TARGET-$CONNECTIONS-$RATE.server.log"
REPORT="$LOG_DIR/$STAMP-fanout-$TARGET-$CONNECTIONS-$RATE.log"

trap stop_server EXIT
trap 'exit 130' INT TERM

pick_bench
start_server "$TARGET" "$PORT" "$SERVER_LOG"
echo "server $TARGET pid $SERVER_PID on 127.0.0.1:$PORT (log $SERVER_LOG)" >&2

"${BENCH[@]}" fanout --target "$TARGET" --addr "127.0.0.1:$PORT" \
  --connections "$CONNECTIONS" --rate "$RATE" \
  --duration "${DURATION:-30}" --warmup "${WARMUP:-5}" \
  --threads "${THREADS:-1}" --payload-bytes "${PAYLOAD:-100}" \
  --connect-rate "${CONNECT_RATE:-2000}" \
  --server-pid "$SERVER_PID" "$@" | tee "$REPORT"
echo "report saved to $REPORT" >&2
