#!/bin/sh
# Conflux beside vmagent in one run of the shared benchmark (../shared/bench):
# builds the release binary, puts it first on PATH, and passes bench/conflux.ini
# as a second --gateways. PROTOCOLS and ONLY choose protocols and gateways (by
# default every protocol Conflux speaks, vmagent and Conflux); extra arguments
# go to ../shared/bench/run.sh, e.g.
#   PROTOCOLS=influx_http,influx_http_gz bench/run.sh --reps 5
#   ONLY=vmagent,carbon-c-relay,conflux PROTOCOLS=graphite_plain,graphite_tagged bench/run.sh --reps 5
#   RATE=0 bench/run.sh --reps 3 --duration 10
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${CONFLUX_SHARED:-$root/../shared}
cargo build --release --locked -p conflux --manifest-path "$root/Cargo.toml"
export PATH="$root/target/release:$PATH"
exec "$shared/bench/run.sh" --gateways conf/gateways.ini --gateways "$root/bench/conflux.ini" \
    --only "${ONLY:-vmagent,conflux}" --protocols "${PROTOCOLS:-influx_http,influx_http_gz,opentsdb,graphite_plain,graphite_tagged,kairosdb_http}" "$@"
