#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need when
# it is missing (a Python virtualenv with the real client libraries), checks
# formatting and lints, builds the daemon, runs every test.
#
#   scripts/test.sh            # everything
#   scripts/test.sh -E 'test(filters)'   # extra args go to cargo nextest
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> %s\n' "$*"; }

# Debian packages whose programs the end-to-end tests run as real clients,
# and the real servers the sink tests write to (conflux-testkit starts each on
# free loopback ports; the packages' own services are not used).
debs=()
[ -x /usr/sbin/collectd ] || debs+=(collectd-core)
command -v carbon-c-relay >/dev/null 2>&1 || debs+=(carbon-c-relay)
command -v influxd >/dev/null 2>&1 || debs+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || debs+=(victoria-metrics)
command -v prometheus >/dev/null 2>&1 || debs+=(prometheus)
command -v carbon-cache >/dev/null 2>&1 || debs+=(graphite-carbon)
command -v whisper-fetch >/dev/null 2>&1 || debs+=(python3-whisper)
# systemd-analyze, for `verify` of deploy/systemd/conflux.service.
command -v systemd-analyze >/dev/null 2>&1 || debs+=(systemd)
if [ ${#debs[@]} -gt 0 ]; then
    step "installing ${debs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}"
fi

# Real clients the end-to-end tests drive (Python's influxdb and influxdb-client),
# and PyYAML for the Kubernetes manifests.
venv="$root/.venv"
if ! "$venv/bin/python" -c 'import influxdb, influxdb_client, requests, graphyte, yaml' 2>/dev/null; then
    step "creating $venv with the Python client libraries"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        # Debian ships venv (ensurepip) separately from python3.
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
export CONFLUX_PYTHON="$venv/bin/python"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the daemon"
cargo build --locked -p conflux
export CONFLUX_BIN="$root/target/debug/conflux"

# Doc tests first (nextest does not run them), so that the run closes on the
# summary of the whole suite.
step "doc tests"
cargo test --workspace --locked --doc --quiet

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    cargo test --workspace --locked --no-fail-fast "$@"
fi
