#!/usr/bin/env python3
"""Conflux alone at saturation, for looking inside a change.

The shared harness (bench/run.sh, bench/ab.sh) measures Conflux beside
vmagent; this runs only Conflux, with the same configuration
(bench/conflux.toml), the same data and load driver (../shared/bench) and
the same downstream (the nginx blackhole), and reports one of:

  bench/profile.py cpu [BINARY ...]      CPU µs per point; several binaries
                                         alternate A B A B (--reps, --seconds)
  bench/profile.py perf [BINARY]         perf record; top symbols and the
                                         share of kernel, libc and Conflux
  bench/profile.py callgrind [BINARY]    instructions per point over the
                                         first --lines lines (repeatable
                                         whatever else the machine does)

BINARY defaults to target/release/conflux. --protocol picks the data and
port (graphite_plain, graphite_tagged, opentsdb). The daemon runs on core 1
and the load driver and nginx on core 0 when the machine has two cores.
Needs nginx (nginx-light), gcc and make; perf mode needs linux-perf,
callgrind mode valgrind. Everything binds 127.0.0.1, every load is bounded
in time, and what this starts it stops by PID.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("CONFLUX_SHARED", os.path.join(ROOT, "..", "shared"))
BENCH = os.path.join(SHARED, "bench")
ADMIN = "http://127.0.0.1:18501/metrics"
SINK_PORT = 18999
# Data file and listener port of bench/conflux.toml per protocol.
PROTOCOLS = {
    "graphite_plain": ("graphite-plain.txt", 12500),
    "graphite_tagged": ("graphite-tagged.txt", 12500),
    "opentsdb": ("opentsdb.txt", 14500),
}


def pinned(core, argv):
    """`argv` on `core` when the machine has two cores or more."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(core)] + argv
    return argv


def wait_port(port, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port}")


def counter(name):
    """A counter of the daemon's metrics, summed over its labels."""
    with urllib.request.urlopen(ADMIN, timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def sent():
    return counter("conflux_sink_sent_points_total")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime: fields 14 and 15 of the whole line.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Setup:
    """The blackhole, the rendered configuration and the data of one run."""

    def __init__(self, protocol):
        subprocess.run(["make", "-s", "-C", os.path.join(BENCH, "tools")], check=True)
        data = os.path.join(BENCH, "data")
        if not os.path.exists(os.path.join(data, "manifest.json")):
            subprocess.run([sys.executable, os.path.join(BENCH, "gen", "gen.py"), "--out", data], check=True)
        name, self.port = PROTOCOLS[protocol]
        self.data = os.path.join(data, name)
        self.dir = tempfile.mkdtemp(prefix="conflux-profile.")
        ng = os.path.join(self.dir, "nginx")
        os.makedirs(ng)
        with open(os.path.join(BENCH, "conf", "nginx-blackhole.conf")) as f:
            conf = f.read().replace("{port}", str(SINK_PORT)).replace("{tmp}", ng)
        with open(os.path.join(ng, "nginx.conf"), "w") as f:
            f.write(conf)
        self.nginx = subprocess.Popen(
            pinned(0, ["nginx", "-c", os.path.join(ng, "nginx.conf"), "-p", ng]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(SINK_PORT, 10)
        work = os.path.join(self.dir, "tmp")
        os.makedirs(work)
        with open(os.path.join(ROOT, "bench", "conflux.toml")) as f:
            conf = f.read().replace("{sink_port}", str(SINK_PORT)).replace("{tmp}", work)
        self.conf = os.path.join(self.dir, "conflux.toml")
        with open(self.conf, "w") as f:
            f.write(conf)

    def daemon(self, binary, wrapper=(), seconds=10):
        """The daemon under `wrapper`, started and answering."""
        log = open(os.path.join(self.dir, "daemon.log"), "ab")
        proc = subprocess.Popen(pinned(1, list(wrapper) + [binary, "--config", self.conf]),
                                stdout=log, stderr=log)
        end = time.monotonic() + seconds
        while True:
            try:
                sent()
                return proc
            except OSError:
                if proc.poll() is not None or time.monotonic() > end:
                    stop(proc)
                    raise SystemExit(f"{binary} did not start: see {log.name}")
                time.sleep(0.2)

    def blast(self, seconds):
        return subprocess.Popen(
            pinned(0, [os.path.join(BENCH, "tools", "tcpblast"), "-a", "127.0.0.1", "-p", str(self.port),
                       "-c", "4", "-d", str(seconds), self.data]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def close(self):
        stop(self.nginx)
        shutil.rmtree(self.dir, ignore_errors=True)


def saturated(setup, binary, seconds):
    """CPU µs per point, and points per second, of one run at saturation."""
    proc = setup.daemon(binary)
    blast = setup.blast(seconds + 4)
    try:
        time.sleep(2)
        s0, c0 = sent(), cpu_seconds(proc.pid)
        time.sleep(seconds)
        s1, c1 = sent(), cpu_seconds(proc.pid)
    finally:
        blast.wait()
        stop(proc)
    points = s1 - s0
    return (c1 - c0) * 1e6 / points, points / seconds


def cpu(args, setup):
    runs = {b: [] for b in args.binaries}
    for rep in range(args.reps):
        for b in args.binaries:
            us, rate = saturated(setup, b, args.seconds)
            runs[b].append(us)
            print(f"rep {rep + 1} {b}: {us:.4f} µs/point, {rate:,.0f} points/s", flush=True)
    first = statistics.median(runs[args.binaries[0]])
    for b, r in runs.items():
        med = statistics.median(r)
        print(f"{b}: median {med:.4f} µs/point (min {min(r):.4f}, max {max(r):.4f}), "
              f"{med / first:.3f} of the first")


def perf(args, setup):
    out = os.path.join(setup.dir, "perf.data")
    proc = setup.daemon(args.binaries[0])
    blast = setup.blast(args.seconds + 4)
    try:
        time.sleep(2)
        subprocess.run(["perf", "record", "-F", "2000", "-g", "-p", str(proc.pid), "-o", out,
                        "--", "sleep", str(args.seconds)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    finally:
        blast.wait()
        stop(proc)
    for sort in ("dso", "symbol"):
        report = subprocess.run(["perf", "report", "-i", out, "--no-children", "--sort", sort, "-g", "none",
                                 "--stdio"], capture_output=True, text=True).stdout
        # perf pads each row with empty columns on the right.
        lines = [re.sub(r"[\s-]+$", "", l) for l in report.splitlines() if l.strip() and not l.startswith("#")]
        print("\n".join(lines[:8 if sort == "dso" else args.top]))
        print()


def callgrind(args, setup):
    out = os.path.join(setup.dir, "callgrind.out")
    # Counting starts once the daemon answers: its start-up (certificates,
    # configuration) is not part of a point's cost.
    proc = setup.daemon(args.binaries[0], ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                           f"--callgrind-out-file={out}"], seconds=120)
    try:
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                       stdout=subprocess.DEVNULL)
        with open(setup.data, "rb") as f:
            lines = b"".join(line for _, line in zip(range(args.lines), f))
        n = lines.count(b"\n")
        with socket.create_connection(("127.0.0.1", setup.port)) as s:
            s.sendall(lines)
        end = time.monotonic() + 600
        while sent() < n and time.monotonic() < end:
            time.sleep(0.5)
        points = sent()
    finally:
        stop(proc)
    report = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True).stdout
    total = next(int(l.split()[0].replace(",", "")) for l in report.splitlines() if "PROGRAM TOTALS" in l)
    print(f"{total:,} instructions, {points:,.0f} points: {total / points:,.0f} a point")
    rows = [l for l in report.splitlines() if "(" in l and "%)" in l and "PROGRAM TOTALS" not in l]
    print("\n".join(rows[:args.top]))
    if args.keep:
        shutil.copy(out, args.keep)
        print(f"kept {args.keep}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["cpu", "perf", "callgrind"])
    p.add_argument("binaries", nargs="*", default=[os.path.join(ROOT, "target", "release", "conflux")])
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="graphite_plain")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--lines", type=int, default=300_000)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--keep", help="callgrind: copy the profile here (for callgrind_annotate)")
    args = p.parse_args()
    args.seconds = max(1, min(args.seconds, 600))
    args.binaries = [os.path.abspath(b) for b in args.binaries]
    setup = Setup(args.protocol)
    try:
        {"cpu": cpu, "perf": perf, "callgrind": callgrind}[args.mode](args, setup)
    finally:
        setup.close()


if __name__ == "__main__":
    main()
