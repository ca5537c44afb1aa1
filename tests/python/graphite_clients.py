"""Drive Conflux's graphite listener with real clients.

Usage: graphite_clients.py MODE HOST PORT [ARG]
  graphyte-tcp, graphyte-udp   the graphyte library (plain and tagged metrics)
  pickle                       a carbon-style pickle client: Python's own pickle
                               (protocol 2), each batch framed by a 4-byte
                               big-endian length (struct "!L"), as carbon's
                               example-pickle-client.py sends it
  pickle-hostile MARKER        a pickle whose loading would create MARKER
                               (os.system), then a good batch on the same
                               connection
Prints one JSON object with what was sent; the Rust test that runs this
script reads back what reached the file sink and compares value by value.
"""
import json
import pickle
import socket
import struct
import sys
import time

T0 = 1700000000


def graphyte_mode(host, port, protocol):
    import graphyte

    # No prefix, so the paths are ours; a long interval so that nothing is
    # batched in a background thread: every send goes out before we return.
    sender = graphyte.Sender(host, port=port, protocol=protocol, timeout=10, raise_send_errors=True)
    sent = []

    def send(metric, value, ts, tags=None):
        sender.send(metric, value, timestamp=ts, tags=tags or {})
        sent.append({"metric": metric, "value": value, "timestamp": ts, "tags": tags or {}})

    send("graphyte.%s.cpu.load" % protocol, 0.75, T0)
    send("graphyte.%s.mem.free" % protocol, 1024, T0 + 1)
    send("graphyte.%s.negative" % protocol, -12.5, T0 + 2)
    send("graphyte.%s.tagged" % protocol, 3.25, T0 + 3, tags={"dc": "eu-west", "host": "web01"})
    sender.stop()
    print(json.dumps({"sent": sent}))


def frame(data):
    payload = pickle.dumps(data, protocol=2)
    return struct.pack("!L", len(payload)) + payload


def pickle_mode(host, port):
    batches = [
        [("pickle.batch1.a", (T0, 1.5)), ("pickle.batch1.b", (T0 + 1, -2))],
        [("pickle.batch2.c;env=prod", (T0 + 2, 3)), ("pickle.batch2.d", (T0 + 3.5, 1e-3))],
    ]
    with socket.create_connection((host, port), timeout=10) as s:
        for b in batches:
            s.sendall(frame(b))
    print(json.dumps({"sent": batches}))


class Hostile:
    """Unpickling runs `touch MARKER` in a naive receiver."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, ("touch " + self.marker,))


def pickle_hostile_mode(host, port, marker):
    good = [("pickle.after.hostile", (T0, 42))]
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(frame([Hostile(marker)]))
        s.sendall(frame(good))
    print(json.dumps({"sent": good}))


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "graphyte-tcp":
        graphyte_mode(host, port, "tcp")
    elif mode == "graphyte-udp":
        graphyte_mode(host, port, "udp")
    elif mode == "pickle":
        pickle_mode(host, port)
    elif mode == "pickle-hostile":
        pickle_hostile_mode(host, port, sys.argv[4])
    else:
        sys.exit("unknown mode " + mode)
    # Give the last UDP datagram a moment to leave before the process ends.
    time.sleep(0.1)
