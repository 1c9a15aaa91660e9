#!/usr/bin/env python3
"""Aggregated-query latency, Pulsewire beside VictoriaMetrics, with one client.

Usage: bench/query-side-by-side.py TARGET PORT POINTS STEP_S QUERIES
  TARGET   `vm` (the `victoria-metrics` binary, bench/install-tsdbs.sh) or the path of a
           pulsewire binary
  POINTS   points of one gauge series, 1 s apart, ending now (as `pulsewire bench query`)
  STEP_S   step of the aggregation in seconds (60: one day at 1m steps; 3600: a week at 1h)
  QUERIES  timed queries (after 20 untimed ones)

Starts the server on 127.0.0.1:PORT with a fresh data directory, writes the series over
InfluxDB line protocol (`/write?precision=s`), then times one `avg` aggregation over the whole
series with a keep-alive HTTP client: Pulsewire's `/api/v1/query?step=...&agg=avg` after
`POST /api/v1/admin/compact` (sealed, no rollup tiers: what a default server reads for recent
days), VictoriaMetrics' `query_range` of `avg_over_time(...[step])` with `nocache=1` after
`/internal/force_flush`. Prints p50 and p99 of the round trip, response parsing excluded.
"""
import http.client
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

target, port, points, step_s, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
data = tempfile.mkdtemp()
if target == "vm":
    cmd = ["victoria-metrics", f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}", "-loggerLevel=ERROR"]
else:
    cmd = [target, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data]
server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port)
            c.request("GET", "/health")
            c.getresponse().read()
            break
        except OSError:
            time.sleep(0.1)
    now = int(time.time())
    first = now - points
    state = 0x2545F4914F6CDD1D  # the same xorshift noise as `pulsewire bench query`
    mask = (1 << 64) - 1

    def noise():
        global state
        state ^= (state << 13) & mask
        state ^= state >> 7
        state ^= (state << 17) & mask
        return (state % 1000) / 100.0

    c = http.client.HTTPConnection("127.0.0.1", port)
    for start in range(0, points, 10_000):
        body = "".join(
            f"qbench,host=q1 v={40 + 10 * math.sin(i / 3600) + noise():.2f} {first + i}\n"
            for i in range(start, min(points, start + 10_000))
        )
        c.request("POST", "/write?db=qbench&precision=s", body=body)
        r = c.getresponse()
        r.read()
        if r.status != 204:
            sys.exit(f"write failed: {r.status}")
    if target == "vm":
        c.request("GET", "/internal/force_flush")
        c.getresponse().read()
        time.sleep(2)
        q = urllib.parse.quote(f'avg_over_time(qbench_v{{host="q1"}}[{step_s}s])')
        url = f"/api/v1/query_range?query={q}&start={first}&end={now}&step={step_s}&nocache=1"
    else:
        c.request("POST", "/api/v1/admin/compact")
        c.getresponse().read()
        url = f"/api/v1/query?q=qbench.v%7Bhost%3D%22q1%22%7D&from={first * 1000}&to={now * 1000}&step={step_s}s&agg=avg"
    lat = []
    buckets = 0
    for i in range(n + 20):
        t = time.perf_counter()
        c.request("GET", url)
        r = c.getresponse()
        body = r.read()
        took = time.perf_counter() - t
        if r.status != 200:
            sys.exit(f"query failed: {r.status} {body[:200]!r}")
        if i >= 20:
            lat.append(took * 1000)
        if i == 0:
            j = json.loads(body)
            buckets = len(j["data"]["result"][0]["values"]) if target == "vm" else len(j["series"][0]["points"])
    lat.sort()
    name = "victoriametrics" if target == "vm" else os.path.basename(target)
    print(f"{name} points={points} step={step_s}s buckets={buckets} "
          f"p50={lat[len(lat) // 2]:.3f} ms p99={lat[int(len(lat) * 0.99)]:.3f} ms n={n}")
finally:
    server.terminate()
    server.wait()
    shutil.rmtree(data)
