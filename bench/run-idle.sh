#!/usr/bin/env bash
# Usage: bench/run-idle.sh TARGET CONNECTIONS_PER_PROCESS PROCESSES [extra generator args...]
#   TARGET: pulsewire | socketio | centrifuge
# Starts the server, runs PROCESSES idle generators at once (each opening
# CONNECTIONS_PER_PROCESS connections with its own channels via --id-offset),
# samples the server's RSS every second, prints each report plus a combined
# summary (server RSS per connection over all processes), stops the server.
# Environment: PORT, HOLD (30), CONNECT_RATE (2000), BENCH_BIN, LOG_DIR.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [[ $# -lt 3 ]]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
TARGET="$1" PER_PROC="$2" PROCS="$3"
shift 3
PORT="${PORT:-$(default_port "$TARGET")}"
HOLD="${HOLD:-30}"
LOG_DIR="${LOG_DIR:-$BENCH_DIR/logs}"
mkdir -p "$LOG_DIR"
STAMP="$(date +%Y%m%d-%H%M%S)"
PREFIX="$LOG_DIR/$STAMP-idle-$TARGET-${PER_PROC}x$PROCS"
GEN_PIDS=()

cleanup() {
  for p in "${GEN_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pick_bench
start_server "$TARGET" "$PORT" "$PREFIX.server.log"
echo "server $TARGET pid $SERVER_PID on 127.0.0.1:$PORT" >&2
sleep 1
BASE_RSS="$(rss_kib "$SERVER_PID")"

for i in $(seq 0 $((PROCS - 1))); do
  "${BENCH[@]}" idle --target "$TARGET" --addr "127.0.0.1:$PORT" \
    --connections "$PER_PROC" --id-offset $((i * PER_PROC)) --hold "$HOLD" \
    --connect-rate "${CONNECT_RATE:-2000}" --server-pid "$SERVER_PID" "$@" \
    >"$PREFIX.gen$i.log" 2>"$PREFIX.gen$i.err" &
  GEN_PIDS+=("$!")
done

PEAK_RSS="$BASE_RSS"
while :; do
  running=0
  for p in "${GEN_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && running=1; done
  r="$(rss_kib "$SERVER_PID")"
  [[ -n "$r" && "$r" -gt "$PEAK_RSS" ]] && PEAK_RSS="$r"
  [[ $running -eq 0 ]] && break
  sleep 1
done
status=0
for p in "${GEN_PIDS[@]}"; do wait "$p" || status=1; done
GEN_PIDS=()

for i in $(seq 0 $((PROCS - 1))); do
  echo "--- generator $i ---"
  cat "$PREFIX.gen$i.log"
done
python3 - "$BASE_RSS" "$PEAK_RSS" "$TARGET" "$PREFIX".gen*.log <<'PY' | tee "$PREFIX.summary.log"
import json, sys
base, peak, target = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
runs = []
for path in sys.argv[4:]:
    lines = [l for l in open(path) if l.startswith('{"bench":"idle"')]
    if lines:
        runs.append(json.loads(lines[-1]))
est = sum(r["established"] for r in runs)
open_end = sum(r["open_at_end"] for r in runs)
failed = sum(r["failed"] for r in runs)
per = (peak - base) / est if est else float("nan")
print(f"=== idle {target}: {len(runs)} processes, {est} established, {failed} failed, "
      f"{open_end} still open after hold; server RSS {base} KiB -> peak {peak} KiB "
      f"= {per:.1f} KiB/connection")
print(json.dumps({"bench": "idle-total", "target": target, "processes": len(runs),
                  "established": est, "failed": failed, "open_at_end": open_end,
                  "server_rss_kib_base": base, "server_rss_kib_peak": peak,
                  "server_kib_per_conn": round(per, 2)}))
PY
exit $status
