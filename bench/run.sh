#!/bin/sh
# Conflux beside vmagent in one run of the shared benchmark (../shared/bench):
# builds the release binary, puts it first on PATH, and passes bench/conflux.ini
# as a second --gateways. Extra arguments go to ../shared/bench/run.sh, e.g.
#   bench/run.sh --protocols influx_http,influx_http_gz --reps 5
#   RATE=0 bench/run.sh --reps 3 --duration 10
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${CONFLUX_SHARED:-$root/../shared}
cargo build --release --locked -p conflux --manifest-path "$root/Cargo.toml"
export PATH="$root/target/release:$PATH"
exec "$shared/bench/run.sh" --gateways conf/gateways.ini --gateways "$root/bench/conflux.ini" \
    --only vmagent,conflux --protocols influx_http,influx_http_gz "$@"
