#!/bin/sh
# Two Conflux binaries side by side in the shared benchmark, alternating
# A B A B, B's CPU and memory paired with the nearest-in-time run of A: the
# way to see a change of a few percent on a machine whose speed drifts more
# than that between runs (the ratio to vmagent moves with the machine).
#   bench/ab.sh OLD_BINARY NEW_BINARY                # graphite_plain, 5 reps
#   PROTOCOLS=influx_http,opentsdb REPS=3 bench/ab.sh target/old target/release/conflux
# Both run with bench/conflux.toml. Results go to $OUT (default a new
# directory under /tmp); the paired table is printed at the end.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 A_BINARY B_BINARY" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${CONFLUX_SHARED:-$root/../shared}
work=$(mktemp -d /tmp/conflux-ab.XXXXXX)
cp "$1" "$work/a"
cp "$2" "$work/b"
cp "$root/bench/conflux.toml" "$work/conflux.toml"
# Each section is bench/conflux.ini's [conflux], with its own binary.
for g in a b; do
    sed -n '/^\[conflux\]$/,/^$/p' "$root/bench/conflux.ini" |
        sed -e "s/^\[conflux\]$/[conflux-$g]/" -e "s#^cmd = conflux #cmd = $work/$g #"
done > "$work/ab.ini"
out=${OUT:-$work/results}
cd "$shared/bench"
make -s -C tools
[ -f data/manifest.json ] || python3 gen/gen.py --out data
python3 bench.py run --out "$out" --gateways conf/gateways.ini --gateways "$work/ab.ini" \
    --only conflux-a,conflux-b --protocols "${PROTOCOLS:-graphite_plain}" \
    --reps "${REPS:-5}" --duration "${DURATION:-10}"
python3 bench.py report --baseline conflux-a "$out"
