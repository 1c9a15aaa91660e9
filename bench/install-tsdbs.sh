#!/usr/bin/env bash
# Usage: bench/install-tsdbs.sh
# Installs the comparison time-series databases of the ingest benchmark from
# Debian's packages when their binaries are missing: `victoria-metrics`
# (VictoriaMetrics 1.79 in bookworm) and `influxdb` (InfluxDB 1.6, `influxd`).
# The benchmark runs the binaries directly on temporary data directories
# (bench/run-ingest.sh), so the packages' system services are never started
# here: when no policy-rc.d forbids it already, one is put in place for the
# duration of the install so the postinst scripts do not launch daemons on
# the default data dirs and ports.
set -euo pipefail

need=()
command -v victoria-metrics >/dev/null 2>&1 || need+=(victoria-metrics)
command -v influxd >/dev/null 2>&1 || need+=(influxdb)
if [[ ${#need[@]} -eq 0 ]]; then
  echo "victoria-metrics and influxd already installed" >&2
else
  SUDO=""
  [[ $(id -u) -eq 0 ]] || SUDO=sudo
  POLICY=/usr/sbin/policy-rc.d
  added_policy=""
  if [[ ! -e "$POLICY" ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod +x "$POLICY"
    added_policy=1
  fi
  cleanup() { [[ -z "$added_policy" ]] || $SUDO rm -f "$POLICY"; }
  trap cleanup EXIT
  $SUDO apt-get update
  apt-cache policy "${need[@]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi
# The Debian package may ship a service that a non-container host started anyway.
for svc in victoria-metrics influxdb; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    echo "note: system service $svc is running (the benchmark uses its own instance on other ports)" >&2
  fi
done
victoria-metrics -version 2>/dev/null || true
influxd version 2>/dev/null || true
