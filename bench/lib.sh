# Shared helpers for bench/run-*.sh (sourced, not executed).
# Starts one of the benchmark servers on 127.0.0.1:$PORT, waits for it, and
# picks the load-generator binary.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
SERVER_PID=""

default_port() {
  case "$1" in
    pulsewire) echo 18080 ;;
    socketio) echo 13000 ;;
    centrifuge) echo 18000 ;;
    *) echo "unknown target '$1' (pulsewire|socketio|centrifuge)" >&2; return 1 ;;
  esac
}

# Stops the server with SIGTERM, then SIGKILL after $STOP_TIMEOUT seconds (5;
# the ingest script raises it so the databases can finish writing to disk).
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 $((${STOP_TIMEOUT:-5} * 10))); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server $SERVER_PID still running ${STOP_TIMEOUT:-5} s after SIGTERM: killed" >&2
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

# start_server TARGET PORT LOGFILE -> sets SERVER_PID
start_server() {
  local target="$1" port="$2" log="$3"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use; set PORT=..." >&2
    return 1
  fi
  case "$target" in
    pulsewire)
      local bin="$ROOT/target/release/pulsewire"
      [[ -x "$bin" ]] || { echo "missing $bin: run 'cargo build --release -p pulsewire' in $ROOT" >&2; return 1; }
      (cd "$ROOT" && exec "$bin" serve --listen "127.0.0.1:$port") >"$log" 2>&1 &
      ;;
    socketio)
      if [[ ! -d "$BENCH_DIR/socketio/node_modules" ]]; then
        (cd "$BENCH_DIR/socketio" && npm ci --no-audit --no-fund) >&2
      fi
      (cd "$BENCH_DIR/socketio" && PORT="$port" exec node server.js) >"$log" 2>&1 &
      ;;
    centrifuge)
      [[ -x "$BENCH_DIR/centrifuge/centrifuge-server" ]] || "$BENCH_DIR/centrifuge/build.sh" >&2
      (cd "$BENCH_DIR/centrifuge" && PORT="$port" exec ./centrifuge-server) >"$log" 2>&1 &
      ;;
    *) echo "unknown target '$target'" >&2; return 1 ;;
  esac
  SERVER_PID=$!
  # Wait (up to 30 s) for /health, falling back to a bare TCP connect.
  for _ in $(seq 1 300); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server exited during startup; log:" >&2
      cat "$log" >&2
      return 1
    fi
    if curl -fsS -m 1 "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    return 0
  fi
  echo "server did not come up on port $port; log:" >&2
  cat "$log" >&2
  return 1
}

# pick_bench [SCENARIO] -> sets BENCH (array): the load generator command.
#  1. $BENCH_BIN if set (e.g. "target/release/pulsewire bench");
#  2. target/release/pulsewire if it has the `bench` subcommand (and SCENARIO);
#  3. the pulsewire-bench example (built on demand into $CARGO_TARGET_DIR).
pick_bench() {
  if [[ -n "${BENCH_BIN:-}" ]]; then
    read -r -a BENCH <<<"$BENCH_BIN"
    return 0
  fi
  local pw="$ROOT/target/release/pulsewire"
  if [[ -x "$pw" ]] && "$pw" bench ${1:+"$1"} --help >/dev/null 2>&1; then
    BENCH=("$pw" bench)
    return 0
  fi
  local tdir="${CARGO_TARGET_DIR:-/work/target-bench}"
  local ex="$tdir/release/examples/pulsewire-bench"
  if [[ ! -x "$ex" ]] || { [[ -n "${1:-}" ]] && ! "$ex" "$1" --help >/dev/null 2>&1; }; then
    (cd "$ROOT" && CARGO_TARGET_DIR="$tdir" cargo build --release -p pulsewire-bench --example pulsewire-bench) >&2
  fi
  BENCH=("$ex")
}

rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# ---- time-series databases (bench/run-ingest.sh) ----------------------------

# free_port BASE -> prints the first port >= BASE that nothing listens on.
free_port() {
  local p="$1"
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do
    p=$((p + 1))
  done
  echo "$p"
}

# wait_http URL LOG -> waits (up to 60 s) until URL answers 2xx while $SERVER_PID lives.
wait_http() {
  local url="$1" log="$2"
  for _ in $(seq 1 600); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "server exited during startup; log:" >&2
      cat "$log" >&2
      return 1
    fi
    curl -fsS -m 1 -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "server did not answer $url; log:" >&2
  tail -50 "$log" >&2
  return 1
}

# start_tsdb TARGET PORT DATA_DIR LOGFILE -> sets SERVER_PID and WRITE_URL.
# Each database runs from its binary with every path inside DATA_DIR and only
# loopback listeners, never as a system service or on its default data dir.
# Retention is 7 days everywhere; the generator's data starts 2 days back.
start_tsdb() {
  local target="$1" port="$2" dir="$3" log="$4"
  mkdir -p "$dir"
  case "$target" in
    pulsewire)
      local bin="${SERVER_BIN:-$ROOT/target/release/pulsewire}"
      [[ -x "$bin" ]] || { echo "missing $bin: run 'cargo build --release -p pulsewire' in $ROOT" >&2; return 1; }
      (cd "$dir" && exec "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir") >"$log" 2>&1 &
      SERVER_PID=$!
      wait_http "http://127.0.0.1:$port/health" "$log" || return 1
      WRITE_URL="http://127.0.0.1:$port/write?db=bench&precision=s"
      ;;
    victoriametrics)
      command -v victoria-metrics >/dev/null || { echo "victoria-metrics missing: run bench/install-tsdbs.sh" >&2; return 1; }
      # -search.disableCache etc. are irrelevant to ingest; self-scraping is off
      # by default, so nothing but the benchmark's samples lands in the dir.
      victoria-metrics -storageDataPath "$dir" -httpListenAddr "127.0.0.1:$port" \
        -retentionPeriod 7d -loggerLevel WARN >"$log" 2>&1 &
      SERVER_PID=$!
      wait_http "http://127.0.0.1:$port/health" "$log" || return 1
      WRITE_URL="http://127.0.0.1:$port/write?db=bench&precision=s"
      ;;
    influxdb)
      command -v influxd >/dev/null || { echo "influxd missing: run bench/install-tsdbs.sh" >&2; return 1; }
      local rpc
      rpc="$(free_port $((port + 1)))"
      # Defaults of InfluxDB 1.6 except: paths, loopback listeners, no usage
      # reporting, no _internal monitor database (it would add its own data to
      # the dir), no access/query logs, and short "cold" delays so that, once
      # writes stop, the in-memory cache is snapshotted to TSM files (10 s) and
      # the shard fully compacted (30 s) before the directory is measured.
      # (Debian's build names the reporting switch reporting-enabled, upstream
      # reporting-disabled; unknown keys are ignored, so both are set.)
      cat >"$dir/influxdb.conf" <<CONF
reporting-enabled = false
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"

[meta]
  dir = "$dir/meta"
  logging-enabled = false

[data]
  dir = "$dir/data"
  wal-dir = "$dir/wal"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "10s"
  compact-full-write-cold-duration = "30s"

[monitor]
  store-enabled = false

[shard-precreation]
  enabled = false

[continuous_queries]
  enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$port"
  log-enabled = false
CONF
      influxd run -config "$dir/influxdb.conf" >"$log" 2>&1 &
      SERVER_PID=$!
      wait_http "http://127.0.0.1:$port/ping" "$log" || return 1
      # One database, 7-day retention (1-day shard groups) as its default policy.
      curl -fsS -XPOST "http://127.0.0.1:$port/query" \
        --data-urlencode 'q=CREATE DATABASE bench WITH DURATION 7d' >/dev/null
      WRITE_URL="http://127.0.0.1:$port/write?db=bench&precision=s"
      ;;
    *) echo "unknown target '$target' (pulsewire|victoriametrics|influxdb)" >&2; return 1 ;;
  esac
}

# du_bytes DIR -> "ALLOCATED APPARENT" bytes of DIR (allocated = blocks on disk).
du_bytes() {
  echo "$(du -s --block-size=1 "$1" | cut -f1) $(du -s --apparent-size --block-size=1 "$1" | cut -f1)"
}
