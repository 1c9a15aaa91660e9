#!/usr/bin/env python3
"""Turns the JSON summary lines of bench/logs/*.log into Markdown tables.

Usage: bench/summarize.py bench/logs/*.log
Fan-out rows come from the generator's {"bench":"fanout",...} line, idle rows
from run-idle.sh's {"bench":"idle-total",...} line (in *.summary.log).
"""
import json
import sys


def rows(paths):
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith('{"bench'):
                    try:
                        yield path, json.loads(line)
                    except json.JSONDecodeError:
                        pass


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def main():
    fan, idle = [], []
    for path, r in rows(sys.argv[1:]):
        if r.get("bench") == "fanout":
            fan.append(r)
        elif r.get("bench") == "idle-total":
            idle.append(r)
    if fan:
        print("| target | subs | pub/s | established | dropped | published (skipped) | expected | delivered | missing | delivered/s | p50 ms | p99 ms | p99.9 ms | max ms | gen CPU % | server CPU % | server µs/delivery | server RSS MiB (connected/end) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in fan:
            lat = r["latency_ms"]
            rss = "/".join(str(round((r.get(k) or 0) / 1024)) for k in ("server_rss_kib_connected", "server_rss_kib_end"))
            print(f"| {r['target']} | {r['established'] + r['failed']} | {fmt(r['rate'], 0)} | {r['established']} | {r['dropped']} "
                  f"| {r['published']} ({r.get('publish_skipped', 0)} skipped, {r['publish_failed']} failed) | {r['expected']} | {r['delivered']} | {r['missing']} "
                  f"| {fmt(r['delivered_per_s'], 0)} | {fmt(lat['p50_ms'], 2)} | {fmt(lat['p99_ms'], 2)} | {fmt(lat['p999_ms'], 2)} | {fmt(lat['max_ms'], 2)} "
                  f"| {fmt(r['generator_cpu_pct'], 0)} | {fmt(r['server_cpu_pct'], 0)} | {fmt(r['server_cpu_us_per_delivery'], 2)} | {rss} |")
    if idle:
        print()
        print("| target | processes | established | failed | open after hold | server RSS before KiB | server RSS peak KiB | KiB/connection |")
        print("|---|---|---|---|---|---|---|---|")
        for r in idle:
            print(f"| {r['target']} | {r['processes']} | {r['established']} | {r['failed']} | {r['open_at_end']} "
                  f"| {r['server_rss_kib_base']} | {r['server_rss_kib_peak']} | {fmt(r['server_kib_per_conn'], 1)} |")


if __name__ == "__main__":
    main()
