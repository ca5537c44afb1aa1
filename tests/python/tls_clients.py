"""Real TLS clients for Conflux's listener security tests (tests/tests/security.rs).

Usage: tls_clients.py MODE JSON-ARGS
Prints one JSON object with what the client saw; the Rust test checks it and
reads back what reached the file sink. A client error is part of the answer
(`"error": "..."`), never an exit status, so that the test can tell a refused
handshake from a broken script.

Modes:
  v2       influxdb-client (v2 API) over HTTPS with `ssl_ca_cert`
  v1       influxdb (v1 client) over HTTPS with `verify_ssl=CA`
  post     requests.post over HTTPS (CA checked, optional client certificate)
  lines    plaintext lines over a TLS socket (ssl.create_default_context)
  connect  handshakes only: [{port, ca, cert?, key?}] -> the peer's issuer or the error
"""
import json
import socket
import ssl
import sys


def err(e):
    return "%s: %s" % (type(e).__name__, e)


def v2(a):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    out = {}
    with InfluxDBClient(
        url="https://localhost:%d" % a["port"],
        token=a["token"],
        org="my-org",
        ssl_ca_cert=a["ca"],
        verify_ssl=True,
        retries=0,
        timeout=20_000,
    ) as c:
        w = c.write_api(write_options=SYNCHRONOUS)
        try:
            w.write(
                bucket="metrics",
                record=[
                    Point(a["measurement"]).tag("host", "h1").field("value", 1.5)
                    .time(1700000000, WritePrecision.S),
                    Point(a["measurement"]).tag("host", "h2").field("value", 2)
                    .time(1700000001, WritePrecision.S),
                ],
            )
            out["write"] = "ok"
        except Exception as e:
            out["write"] = "error"
            out["error"] = err(e)
    print(json.dumps(out))


def v1(a):
    from influxdb import InfluxDBClient

    c = InfluxDBClient(
        host="localhost",
        port=a["port"],
        username=a["username"],
        password=a["password"],
        database="telegraf",
        ssl=True,
        verify_ssl=a["ca"],
        retries=1,
        timeout=20,
    )
    out = {}
    try:
        out["write"] = c.write_points(
            [{"measurement": a["measurement"], "tags": {"host": "h3"},
              "time": 1700000002, "fields": {"value": 3}}],
            time_precision="s",
        )
    except Exception as e:
        out["write"] = "error"
        out["error"] = err(e)
    print(json.dumps(out))


def post(a):
    import requests

    cert = (a["cert"], a["key"]) if a.get("cert") else None
    out = {}
    try:
        r = requests.post(
            "https://localhost:%d%s" % (a["port"], a["path"]),
            data=a["body"].encode(),
            headers=a.get("headers", {}),
            verify=a["ca"],
            cert=cert,
            timeout=20,
        )
        out["status"] = r.status_code
        out["body"] = r.text
    except Exception as e:
        out["error"] = err(e)
    print(json.dumps(out))


def context(ca, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def lines(a):
    out = {}
    try:
        ctx = context(a["ca"])
        with socket.create_connection(("127.0.0.1", a["port"]), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                out["version"] = s.version()
                s.sendall(a["data"].encode())
                reply = b""
                while a.get("expect") and a["expect"].encode() not in reply:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
                out["reply"] = reply.decode(errors="replace")
                # close_notify, so that the server sees a clean end of stream.
                s.unwrap()
        out["sent"] = True
    except Exception as e:
        out["error"] = err(e)
    print(json.dumps(out))


def one_handshake(h):
    try:
        ctx = context(h["ca"], h.get("cert"), h.get("key"))
        with socket.create_connection(("127.0.0.1", h["port"]), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                issuer = dict(x[0] for x in s.getpeercert()["issuer"])
                return {"ok": True, "issuer": issuer.get("commonName"), "version": s.version()}
    except Exception as e:
        return {"ok": False, "error": err(e)}


def connect(a):
    print(json.dumps({"results": [one_handshake(h) for h in a["handshakes"]]}))


if __name__ == "__main__":
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    {"v2": v2, "v1": v1, "post": post, "lines": lines, "connect": connect}[mode](args)
