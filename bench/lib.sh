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

stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
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

# Sets BENCH (array): the load generator command.
#  1. $BENCH_BIN if set (e.g. "target/release/pulsewire bench");
#  2. target/release/pulsewire if it has the `bench` subcommand;
#  3. the pulsewire-bench example (built on demand into $CARGO_TARGET_DIR).
pick_bench() {
  if [[ -n "${BENCH_BIN:-}" ]]; then
    read -r -a BENCH <<<"$BENCH_BIN"
    return 0
  fi
  local pw="$ROOT/target/release/pulsewire"
  if [[ -x "$pw" ]] && "$pw" bench --help >/dev/null 2>&1; then
    BENCH=("$pw" bench)
    return 0
  fi
  local tdir="${CARGO_TARGET_DIR:-/work/target-bench}"
  local ex="$tdir/release/examples/pulsewire-bench"
  if [[ ! -x "$ex" ]]; then
    (cd "$ROOT" && CARGO_TARGET_DIR="$tdir" cargo build --release -p pulsewire-bench --example pulsewire-bench) >&2
  fi
  BENCH=("$ex")
}

rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}
