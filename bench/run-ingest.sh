#!/usr/bin/env bash
# Usage: bench/run-ingest.sh TARGET [extra generator args...]
#   TARGET: pulsewire | victoriametrics | influxdb
# Starts the server on a free loopback port with a fresh data directory in a
# temporary directory, runs `bench ingest` (InfluxDB line protocol over HTTP)
# against it with --server-pid, then has the server put everything on disk
# and measures the data directory: bytes per sample = size / samples accepted.
#   VictoriaMetrics: GET /internal/force_flush, wait until its storage holds
#     every accepted sample, then GET /internal/force_merge until each
#     partition is a single part;
#   InfluxDB 1.x: cache snapshot and full compaction once writes stop (the
#     "cold" delays are shortened in its config, see lib.sh);
#   Pulsewire: POST /api/v1/admin/compact (seal the head, merge each
#     partition's parts into one, as its background compaction does once a
#     partition is an hour cold); with ROLLUP=1, POST /api/v1/admin/rollup
#     first (build the rollup tiers now instead of `tsdb.retention.rollup_after`
#     after the day, 7 days less an hour by default), so the size includes them;
# then the size is sampled until stable (SETTLE_MAX s at most), the server is
# stopped with SIGTERM (each seals/flushes what it holds on shutdown) and the
# directory is measured again; that last figure is the one reported.
# Environment: PORT (first port tried: 18080 pulsewire, 18428 victoriametrics,
#   18086 influxdb), DURATION (30), WARMUP (5), WRITERS (4), BATCH (5000),
#   SERIES (10000), FIELDS (10), SETTLE_MAX (180), KEEP_DATA (1 keeps the
#   data dir), BENCH_BIN, SERVER_BIN (the pulsewire binary; not PULSEWIRE_*,
#   which Pulsewire reads as configuration), LOG_DIR (bench/logs), ROLLUP (1: Pulsewire builds its rollup tiers
#   before the size is measured).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [[ $# -lt 1 ]]; then
  awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0" >&2
  exit 2
fi
TARGET="$1"
shift
case "$TARGET" in
  pulsewire) BASE_PORT=18080 ;;
  victoriametrics) BASE_PORT=18428 ;;
  influxdb) BASE_PORT=18086 ;;
  *) echo "unknown target '$TARGET' (pulsewire|victoriametrics|influxdb)" >&2; exit 2 ;;
esac
PORT="$(free_port "${PORT:-$BASE_PORT}")"
LOG_DIR="${LOG_DIR:-$BENCH_DIR/logs}"
mkdir -p "$LOG_DIR"
STAMP="$(date +%Y%m%d-%H%M%S)"
PREFIX="$LOG_DIR/$STAMP-ingest-$TARGET"
REPORT="$PREFIX.log"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/pulsewire-ingest-$TARGET.XXXXXX")"
DATA="$WORK/data"
# Graceful shutdowns of databases that flush on exit can take a while.
STOP_TIMEOUT="${STOP_TIMEOUT:-120}"

cleanup() {
  stop_server
  if [[ "${KEEP_DATA:-0}" == 1 ]]; then
    echo "data kept in $DATA" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pick_bench ingest
start_tsdb "$TARGET" "$PORT" "$DATA" "$PREFIX.server.log"
echo "server $TARGET pid $SERVER_PID on 127.0.0.1:$PORT, data $DATA (log $PREFIX.server.log)" >&2
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "load average before the run: $LOAD_BEFORE" >&2
read -r EMPTY_ALLOC _ < <(du_bytes "$DATA")

"${BENCH[@]}" ingest --target "$TARGET" --url "$WRITE_URL" \
  --writers "${WRITERS:-4}" --batch "${BATCH:-5000}" --series "${SERIES:-10000}" \
  --fields "${FIELDS:-10}" --duration "${DURATION:-30}" --warmup "${WARMUP:-5}" \
  --server-pid "$SERVER_PID" "$@" | tee "$REPORT"
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
SUMMARY="$(grep '^{.*"bench":"ingest"' "$REPORT" | tail -1)"
SAMPLES="$(jq -r '.total_samples_accepted' <<<"$SUMMARY")"

# Server-side count of what it took in, as a cross-check of the generator's.
case "$TARGET" in
  pulsewire)
    if [[ "${ROLLUP:-0}" == 1 ]]; then
      curl -fsS -m 600 -X POST "http://127.0.0.1:$PORT/api/v1/admin/rollup" >/dev/null
      echo "server storage      rollup tiers built (POST /api/v1/admin/rollup)" | tee -a "$REPORT"
    fi
    curl -fsS -m 600 -X POST "http://127.0.0.1:$PORT/api/v1/admin/compact" >/dev/null
    echo "server storage      every partition merged into one part (POST /api/v1/admin/compact)" | tee -a "$REPORT"
    ;;
  victoriametrics)
    SERVER_ROWS="$(curl -fsS "http://127.0.0.1:$PORT/metrics" |
      awk '/^vm_rows_inserted_total\{type="influx"\}/ {print $2}')"
    echo "server count        vm_rows_inserted_total{type=\"influx\"} = ${SERVER_ROWS:-?} samples (generator: $SAMPLES)" | tee -a "$REPORT"
    # force_flush returns before every buffered row is in a part on disk, so
    # wait (60 s at most) until the storage holds all accepted samples; only
    # then does force_merge (merge each partition's parts into one, as
    # background merging would in time) cover all the data.
    curl -fsS -m 60 "http://127.0.0.1:$PORT/internal/force_flush" >/dev/null || true
    rows=0
    for _ in $(seq 1 120); do
      rows="$(curl -fsS "http://127.0.0.1:$PORT/metrics" |
        awk '/^vm_rows\{type="storage\/(small|big)"\}/ {n += $2} END {printf "%d", n}')"
      (( rows >= SAMPLES )) && break
      sleep 0.5
    done
    echo "server storage      vm_rows{type=\"storage/*\"} = $rows samples in parts before force_merge" | tee -a "$REPORT"
    # force_merge leaves out the parts a background merge holds at that
    # moment, so repeat it (after waiting for running merges) until each
    # monthly partition is one part, or 5 tries.
    vm_metric() {
      curl -fsS "http://127.0.0.1:$PORT/metrics" |
        awk -v m="$1" 'index($0, m "{type=\"storage/small\"} ") == 1 || index($0, m "{type=\"storage/big\"} ") == 1 {
          n += $2
        } END { printf "%d", n }'
    }
    partitions="$(find "$DATA/data/small" -mindepth 1 -maxdepth 1 -type d ! -name snapshots | wc -l)"
    for try in 1 2 3 4 5; do
      for _ in $(seq 1 120); do
        (( $(vm_metric vm_active_merges) == 0 )) && break
        sleep 1
      done
      parts="$(vm_metric vm_parts)"
      (( parts <= partitions )) && break
      curl -fsS -m 60 "http://127.0.0.1:$PORT/internal/force_merge" >/dev/null || true
      sleep 2
    done
    echo "server storage      $parts part(s) in $partitions partition(s) after $((try - 1)) force_merge call(s)" | tee -a "$REPORT"
    ;;
  influxdb)
    SERVER_ROWS="$(curl -fsS "http://127.0.0.1:$PORT/debug/vars" | jq -r '.write.values.pointReq // empty' 2>/dev/null || true)"
    echo "server count        /debug/vars write.pointReq = ${SERVER_ROWS:-?} lines (generator: $(jq -r .total_lines_accepted <<<"$SUMMARY"))" | tee -a "$REPORT"
    ;;
esac

# Wait for background flushes/compactions: until the size holds still for
# three samples 5 s apart (after at least 45 s, so InfluxDB's 10 s snapshot and
# 30 s full-compaction delays have passed), or SETTLE_MAX seconds.
read -r SIZE_AFTER_RUN _ < <(du_bytes "$DATA")
settle_start=$SECONDS
last="" stable=0
while (( SECONDS - settle_start < ${SETTLE_MAX:-180} )); do
  sleep 5
  read -r cur _ < <(du_bytes "$DATA")
  if [[ "$cur" == "$last" ]]; then stable=$((stable + 1)); else stable=0; fi
  last="$cur"
  (( stable >= 3 && SECONDS - settle_start >= 45 )) && break
done
read -r SIZE_SETTLED _ < <(du_bytes "$DATA")
SETTLE_S=$((SECONDS - settle_start))
RSS_END="$(rss_kib "$SERVER_PID")"

stop_start=$SECONDS
stop_server
STOP_S=$((SECONDS - stop_start))
read -r SIZE_FINAL SIZE_APPARENT < <(du_bytes "$DATA")
FILES="$(find "$DATA" -type f | wc -l)"
# Where the bytes are (allocated, per top-level entry of the data dir).
BREAKDOWN="$(cd "$DATA" && du -s --block-size=1 -- * 2>/dev/null | awk '$1 > 0 {printf "%s%s %d", sep, $2, $1; sep = ", "}')"

bps() { awk -v b="$1" -v s="$SAMPLES" 'BEGIN { if (s > 0) printf "%.3f", b / s; else print "null" }'; }
{
  echo "disk                $DATA (empty $EMPTY_ALLOC B): right after the run $SIZE_AFTER_RUN B, after ${SETTLE_S} s settling $SIZE_SETTLED B, after shutdown (${STOP_S} s) $SIZE_FINAL B allocated / $SIZE_APPARENT B apparent in $FILES files"
  echo "disk breakdown      $BREAKDOWN (bytes)"
  echo "bytes/sample        $(bps "$SIZE_FINAL") on disk ($(bps "$SIZE_APPARENT") apparent; $(bps "$SIZE_AFTER_RUN") right after the run) for $SAMPLES samples accepted"
  echo "machine load        1/5/15-min load average $LOAD_BEFORE before the run, $LOAD_AFTER after it"
  jq -c --arg target "$TARGET" --argjson samples "$SAMPLES" \
    --argjson after_run "$SIZE_AFTER_RUN" --argjson settled "$SIZE_SETTLED" \
    --argjson final "$SIZE_FINAL" --argjson apparent "$SIZE_APPARENT" --argjson files "$FILES" \
    --argjson settle_s "$SETTLE_S" --argjson stop_s "$STOP_S" --arg load_before "$LOAD_BEFORE" --arg load_after "$LOAD_AFTER" \
    --argjson rss_end "${RSS_END:-0}" --arg breakdown "$BREAKDOWN" \
    -n '{bench: "ingest-disk", target: $target, samples: $samples,
         bytes_after_run: $after_run, bytes_settled: $settled, bytes_final: $final,
         bytes_apparent: $apparent, files: $files, breakdown: $breakdown, settle_s: $settle_s, stop_s: $stop_s,
         bytes_per_sample: (if $samples > 0 then ($final / $samples * 1000 | round) / 1000 else null end),
         bytes_per_sample_after_run: (if $samples > 0 then ($after_run / $samples * 1000 | round) / 1000 else null end),
         server_rss_kib_settled: $rss_end, loadavg_before: $load_before, loadavg_after: $load_after}'
} | tee -a "$REPORT"
echo "report saved to $REPORT" >&2
