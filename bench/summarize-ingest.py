#!/usr/bin/env python3
"""Turns the JSON lines of bench/run-ingest.sh reports into a Markdown table.

Usage: bench/summarize-ingest.py bench/logs/*-ingest-*.log
Each report holds the generator's {"bench":"ingest",...} line and the
script's {"bench":"ingest-disk",...} line; one table row per report.
"""
import json
import sys


def fmt(v, nd=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def main():
    print("| target | gzip | window s | samples/s | lines/s | p50 ms | p99 ms | rejected | "
          "gen thread CPU % | gen process CPU % | server CPU % | server ns/sample | "
          "server RSS peak MiB | samples stored | bytes/sample on disk | other processes CPU % | load avg before / after |")
    print("|---" * 17 + "|")
    for path in sys.argv[1:]:
        run, disk = None, None
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if r.get("bench") == "ingest":
                    run = r
                elif r.get("bench") == "ingest-disk":
                    disk = r
        if run is None:
            continue
        lat = run.get("latency_ms") or {}
        peak = run.get("server_rss_kib_peak")
        hwm = run.get("server_rss_kib_hwm")
        peak = max(p for p in (peak, hwm, 0) if p is not None)
        print("| " + " | ".join([
            run["target"],
            "yes" if run.get("gzip") else "no",
            fmt(run.get("window_s"), 1),
            fmt(run.get("samples_per_s")),
            fmt(run.get("lines_per_s")),
            fmt(lat.get("p50_ms"), 1),
            fmt(lat.get("p99_ms"), 1),
            fmt(run.get("total_requests_failed")),
            fmt(run.get("generator_thread_cpu_pct")),
            fmt(run.get("generator_cpu_pct")),
            fmt(run.get("server_cpu_pct")),
            fmt(run.get("server_cpu_ns_per_sample")),
            fmt(peak // 1024) if peak else "-",
            fmt(run.get("total_samples_accepted")),
            fmt(disk.get("bytes_per_sample"), 2) if disk else "-",
            fmt(run.get("others_cpu_pct")),
            f"{disk['loadavg_before']} / {disk['loadavg_after']}" if disk else "-",
        ]) + " |")


if __name__ == "__main__":
    main()
