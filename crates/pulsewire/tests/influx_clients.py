#!/usr/bin/env python3
"""Writes to a running Pulsewire through the official InfluxDB Python client libraries.

`influxdb-client` (the 2.x API: `write_api(SYNCHRONOUS)` posts to `/api/v2/write`) and `influxdb`
(the 1.x API: `InfluxDBClient.write_points` posts to `/write`) write points with tags, float,
integer, boolean and string fields, timestamps at ns/us/ms/s precision, escaped names, gzip
bodies, and a batch holding a field type conflict whose error must reach the caller with
Pulsewire's message. Whatever a library refuses to do or reports wrongly fails this script.

What was written (and what must not be there) goes to `--out` as JSON, for the Rust test
(crates/pulsewire/tests/influx_clients.rs) to read back through /api/v1/query.

    python3 crates/pulsewire/tests/influx_clients.py --url http://127.0.0.1:PORT --out written.json

The packages come from crates/pulsewire/tests/requirements-influx.txt (see that test's doc).
"""

import argparse
import json
import sys
import time

# Timestamps sit an hour back: inside the raw retention, and each point gets its own second.
BASE_MS = (int(time.time()) - 3600) * 1000
# Sub-millisecond digits that ns and us timestamps carry; the store keeps milliseconds.
SUB_MS_NS = 123_456
SUB_MS_US = 789

V2_BUCKET = "influx_v2"
V1_DB = "influx_v1"
MEASUREMENT = "clients"


class Fail(Exception):
    """A library did not behave as a client of InfluxDB expects."""


class Written:
    """What the Rust side must find: every accepted point, and the points that must be absent."""

    def __init__(self):
        self.points = []
        self.absent = []
        self.next_second = 0

    def ts_ms(self):
        """A fresh timestamp (ms), one second after the previous one."""
        self.next_second += 1
        return BASE_MS + self.next_second * 1000

    def expect(self, db, measurement, tags, fields, ts_ms):
        for field, value in fields.items():
            self.points.append(
                {
                    "db": db,
                    "measurement": measurement,
                    "tags": tags,
                    "field": field,
                    "type": kind(value),
                    "ts": ts_ms,
                    "value": value,
                }
            )

    def expect_absent(self, db, measurement, tags, field, ts_ms):
        self.absent.append({"db": db, "measurement": measurement, "tags": tags, "field": field, "ts": ts_ms})


def kind(value):
    # bool first: it is an int in Python.
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    raise TypeError(value)


def fields(i):
    """One of each field type, with values that differ per point."""
    return {
        "usage": 10.5 + i,
        "cores": 4 + i,
        "online": i % 2 == 0,
        "note": f'point {i}: "quoted", back\\slash, comma, equals=, ünïcödé ✓',
    }


def v2(url, out):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS
    from influxdb_client.rest import ApiException

    db = V2_BUCKET
    with InfluxDBClient(url=url, token="pulsewire-test", org="pulsewire") as client:
        write = client.write_api(write_options=SYNCHRONOUS)

        # Point objects at each precision; the timestamp is given in that precision.
        for n, (precision, unit) in enumerate(
            [(WritePrecision.NS, "ns"), (WritePrecision.US, "us"), (WritePrecision.MS, "ms"), (WritePrecision.S, "s")]
        ):
            ms = out.ts_ms()
            raw = {"ns": ms * 1_000_000 + SUB_MS_NS, "us": ms * 1_000 + SUB_MS_US, "ms": ms, "s": ms // 1000}[unit]
            tags = {"lib": "v2", "precision": unit, "host": "server a,b=c"}
            p = Point(MEASUREMENT)
            for k, v in tags.items():
                p = p.tag(k, v)
            for k, v in fields(n).items():
                p = p.field(k, v)
            write.write(bucket=db, org="pulsewire", record=p.time(raw, precision), write_precision=precision)
            out.expect(db, MEASUREMENT, tags, fields(n), ms)

        # Points of several precisions in one call: the library splits them by precision.
        mixed = []
        for n, precision in enumerate([WritePrecision.S, WritePrecision.NS], start=10):
            ms = out.ts_ms()
            raw = ms // 1000 if precision == WritePrecision.S else ms * 1_000_000
            tags = {"lib": "v2", "precision": "mixed"}
            mixed.append(Point(MEASUREMENT).tag("lib", "v2").tag("precision", "mixed").field("usage", n + 0.25).time(raw, precision))
            out.expect(db, MEASUREMENT, tags, {"usage": n + 0.25}, ms)
        write.write(bucket=db, org="pulsewire", record=mixed)

        # A line protocol string, a dictionary, and names that need escaping.
        ms = out.ts_ms()
        write.write(
            bucket=db,
            record=f"{MEASUREMENT},lib=v2,shape=line cores=42i,usage=-0.5,online=t {ms}",
            write_precision=WritePrecision.MS,
        )
        out.expect(db, MEASUREMENT, {"lib": "v2", "shape": "line"}, {"cores": 42, "usage": -0.5, "online": True}, ms)
        ms = out.ts_ms()
        record = {
            "measurement": "my measurement,1",
            "tags": {"tag key": "tag value=1", "lib": "v2"},
            "fields": {"field key": 1.5, "big": 2**62, "neg": -(2**40)},
            "time": ms * 1000,
        }
        write.write(bucket=db, record=record, write_precision=WritePrecision.US)
        out.expect(db, "my measurement,1", record["tags"], record["fields"], ms)

    # gzip bodies.
    with InfluxDBClient(url=url, token="pulsewire-test", org="pulsewire", enable_gzip=True) as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        batch = []
        for n in range(20, 70):
            ms = out.ts_ms()
            tags = {"lib": "v2", "gzip": "yes"}
            batch.append(Point(MEASUREMENT).tag("lib", "v2").tag("gzip", "yes").field("usage", n * 1.5).field("cores", n).time(ms, WritePrecision.MS))
            out.expect(db, MEASUREMENT, tags, {"usage": n * 1.5, "cores": n}, ms)
        write.write(bucket=db, record=batch, write_precision=WritePrecision.MS)

        # A batch with a type conflict: `usage` is a float, one line writes a string. The good
        # lines are written (a partial write) and the error names the refused one.
        tags = {"lib": "v2", "conflict": "yes"}
        good1, bad, good2 = out.ts_ms(), out.ts_ms(), out.ts_ms()
        lines = [
            Point(MEASUREMENT).tag("lib", "v2").tag("conflict", "yes").field("usage", 1.0).time(good1, WritePrecision.MS),
            Point(MEASUREMENT).tag("lib", "v2").tag("conflict", "yes").field("usage", "high").time(bad, WritePrecision.MS),
            Point(MEASUREMENT).tag("lib", "v2").tag("conflict", "yes").field("usage", 3.0).time(good2, WritePrecision.MS),
        ]
        try:
            write.write(bucket=db, record=lines, write_precision=WritePrecision.MS)
        except ApiException as e:
            if e.status not in (400, 422):
                raise Fail(f"2.x type conflict: status {e.status}, expected 400 or 422: {e}") from e
            if "field type conflict" not in (e.message or "") or "usage" not in e.message:
                raise Fail(f"2.x type conflict: the message does not explain it: {e.message!r} (body {e.body!r})") from e
            if "line 2" not in e.message:
                raise Fail(f"2.x type conflict: the message does not name line 2: {e.message!r}") from e
            print(f"2.x type conflict raised ApiException({e.status}): {e.message}", file=sys.stderr)
        else:
            raise Fail("2.x: a batch with a type conflict was accepted without an error")
        out.expect(db, MEASUREMENT, tags, {"usage": 1.0}, good1)
        out.expect(db, MEASUREMENT, tags, {"usage": 3.0}, good2)
        out.expect_absent(db, MEASUREMENT, tags, "usage", bad)


def v1(url, out):
    from urllib.parse import urlsplit

    from influxdb import InfluxDBClient
    from influxdb.exceptions import InfluxDBClientError

    parts = urlsplit(url)
    db = V1_DB

    def client(gzip):
        return InfluxDBClient(host=parts.hostname, port=parts.port, database=db, gzip=gzip, retries=1, timeout=30)

    plain = client(False)
    # What 1.x programs (and Telegraf) do first: create the database, through /query.
    plain.create_database(db)
    # Dictionaries at each precision the 1.x API takes.
    for n, unit in enumerate(["n", "u", "ms", "s", None], start=100):
        ms = out.ts_ms()
        raw = {"n": ms * 1_000_000 + SUB_MS_NS, "u": ms * 1_000 + SUB_MS_US, "ms": ms, "s": ms // 1000, None: ms * 1_000_000}[unit]
        tags = {"lib": "v1", "precision": unit or "default", "host": "server a,b=c"}
        point = {"measurement": MEASUREMENT, "tags": tags, "fields": fields(n), "time": raw}
        if not plain.write_points([point], time_precision=unit):
            raise Fail(f"1.x write_points at precision {unit} returned False")
        out.expect(db, MEASUREMENT, tags, fields(n), ms)

    # An RFC 3339 time, converted by the library to the precision asked for.
    ms = out.ts_ms()
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))
    tags = {"lib": "v1", "precision": "rfc3339"}
    plain.write_points([{"measurement": MEASUREMENT, "tags": tags, "fields": {"usage": 0.75}, "time": iso}], time_precision="s")
    out.expect(db, MEASUREMENT, tags, {"usage": 0.75}, ms)

    # Line protocol strings, and default tags added by the library.
    ms = out.ts_ms()
    plain.write_points([f"{MEASUREMENT},lib=v1,shape=line cores=7i,online=FALSE {ms}"], protocol="line", time_precision="ms")
    out.expect(db, MEASUREMENT, {"lib": "v1", "shape": "line"}, {"cores": 7, "online": False}, ms)
    ms = out.ts_ms()
    plain.write_points(
        [{"measurement": "my measurement,1", "fields": {"field key": 2.5}, "time": ms}],
        time_precision="ms",
        tags={"tag key": "tag value=1", "lib": "v1"},
    )
    out.expect(db, "my measurement,1", {"tag key": "tag value=1", "lib": "v1"}, {"field key": 2.5}, ms)

    gz = client(True)
    batch = []
    tags = {"lib": "v1", "gzip": "yes"}
    for n in range(200, 260):
        ms = out.ts_ms()
        batch.append({"measurement": MEASUREMENT, "tags": tags, "fields": {"usage": n / 4, "cores": n}, "time": ms})
        out.expect(db, MEASUREMENT, tags, {"usage": n / 4, "cores": n}, ms)
    gz.write_points(batch, time_precision="ms", batch_size=25)

    # The type conflict through the 1.x API: `cores` is an integer, one line writes a float.
    tags = {"lib": "v1", "conflict": "yes"}
    good1, bad, good2 = out.ts_ms(), out.ts_ms(), out.ts_ms()
    batch = [
        {"measurement": MEASUREMENT, "tags": tags, "fields": {"cores": 1}, "time": good1},
        {"measurement": MEASUREMENT, "tags": tags, "fields": {"cores": 2.5}, "time": bad},
        {"measurement": MEASUREMENT, "tags": tags, "fields": {"cores": 3}, "time": good2},
    ]
    try:
        gz.write_points(batch, time_precision="ms")
    except InfluxDBClientError as e:
        if e.code != 400:
            raise Fail(f"1.x type conflict: status {e.code}, expected 400: {e}") from e
        try:
            error = json.loads(e.content)["error"]
        except (ValueError, KeyError, TypeError) as parse:
            raise Fail(f'1.x type conflict: the body is not {{"error": ...}}: {e.content!r}') from parse
        if not error.startswith("partial write:") or "field type conflict" not in error or "cores" not in error:
            raise Fail(f"1.x type conflict: the message does not explain it: {error!r}")
        if not error.endswith("dropped=1"):
            raise Fail(f"1.x type conflict: the message does not end with dropped=1: {error!r}")
        print(f"1.x type conflict raised InfluxDBClientError({e.code}): {error}", file=sys.stderr)
    else:
        raise Fail("1.x: a batch with a type conflict was accepted without an error")
    out.expect(db, MEASUREMENT, tags, {"cores": 1}, good1)
    out.expect(db, MEASUREMENT, tags, {"cores": 3}, good2)
    out.expect_absent(db, MEASUREMENT, tags, "cores", bad)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="Pulsewire's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--out", help="where to write the JSON of what was written (default: stdout)")
    args = parser.parse_args()
    try:
        import influxdb
        import influxdb_client
    except ImportError as e:
        print(
            f"influx_clients.py: {e}. Install the client libraries into a virtualenv:\n"
            "  python3 -m venv .venv-test && .venv-test/bin/pip install -r crates/pulsewire/tests/requirements-influx.txt",
            file=sys.stderr,
        )
        return 3
    out = Written()
    try:
        v2(args.url.rstrip("/"), out)
        v1(args.url.rstrip("/"), out)
    except Fail as e:
        print(f"influx_clients.py: {e}", file=sys.stderr)
        return 1
    result = {
        "libraries": {"influxdb-client": influxdb_client.__version__, "influxdb": influxdb.__version__},
        "points": out.points,
        "absent": out.absent,
    }
    text = json.dumps(result, ensure_ascii=False, indent=1)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
