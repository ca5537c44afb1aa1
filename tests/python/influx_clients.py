"""Drive Conflux's influx listener with the real InfluxDB client libraries.

Usage: influx_clients.py v1|v2|v2-bad-token HOST PORT
Prints one JSON object with what the client saw; the Rust test that runs this
script checks it and reads back what reached the file sink.
"""
import json
import sys


def v1(host, port):
    from influxdb import InfluxDBClient

    c = InfluxDBClient(host=host, port=port, username="telegraf", password="s3cret", database="telegraf")
    out = {"version": c.ping()}
    c.create_database("telegraf")
    out["databases"] = sorted(d["name"] for d in c.get_list_database())
    points = [
        {
            "measurement": "cpu",
            "tags": {"host": "server01", "region": "us-west"},
            "time": 1700000000123,
            "fields": {"usage": 0.64, "count": 3, "ok": True, "note": 'say "hi"'},
        },
        {
            "measurement": "disk space",
            "tags": {"path": "/var/lib,x"},
            "time": 1700000000124,
            "fields": {"free": -12, "ratio": 1e-7},
        },
    ]
    out["write_points"] = c.write_points(points, time_precision="ms")
    out["write_lines"] = c.write_points(
        ["mem,host=server01 used=42i,avail=1.5 1700000000"], time_precision="s", protocol="line"
    )
    try:
        c.query("SELECT * FROM cpu")
        out["select"] = "no error"
    except Exception as e:  # the client raises on a 400
        out["select"] = type(e).__name__ + ": " + str(e)
    print(json.dumps(out))


def v2(host, port, token="my-token"):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    url = "http://%s:%d" % (host, port)
    with InfluxDBClient(url=url, token=token, org="my-org", enable_gzip=True) as c:
        out = {"ping": c.ping(), "version": c.version()}
        w = c.write_api(write_options=SYNCHRONOUS)
        try:
            w.write(
                bucket="metrics",
                record=[
                    Point("weather").tag("location", "Prague").field("temperature", 25.3)
                    .field("humidity", 61).field("raining", False).field("station", "P1")
                    .time(1700000000000000001, WritePrecision.NS),
                    Point("weather").tag("location", "Brno").field("temperature", -4.5)
                    .time(1700000001, WritePrecision.S),
                ],
            )
            w.write(bucket="metrics", record="net,if=eth0 bytes=123456789u 1700000002000", write_precision=WritePrecision.MS)
            out["write"] = "ok"
        except Exception as e:
            out["write"] = "%s %s" % (getattr(e, "status", ""), type(e).__name__)
        out["health"] = c.health().status
    print(json.dumps(out))


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "v1":
        v1(host, port)
    elif mode == "v2":
        v2(host, port)
    elif mode == "v2-bad-token":
        v2(host, port, token="wrong")
    else:
        sys.exit("unknown mode " + mode)
