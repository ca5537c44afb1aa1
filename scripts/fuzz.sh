#!/usr/bin/env bash
# Runs the cargo-fuzz targets of the dialect crates for a bounded time each,
# seeded from the golden fixtures, and prints executions and crashes per
# target. Installs cargo-fuzz when it is missing.
#
#   scripts/fuzz.sh                                  # all targets, 60 s each
#   scripts/fuzz.sh --time 600 --jobs 1              # the issue 9 campaign
#   scripts/fuzz.sh --time 20 parse_influx parse_pickle
#
# Every target is built first, then its binary runs as one libFuzzer process
# (--jobs N of them at a time) until -max_total_time, with `timeout` as a
# safety net; nothing outlives the script. Corpora and crash artifacts stay in
# the fuzz projects' own `corpus/<target>/` and `artifacts/<target>/` (both
# git-ignored by `crates/*/fuzz/.gitignore`: never commit them), logs and the
# summary table go to `target/fuzz/`. Exits non-zero if any target crashed
# or did not run to the end.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

# Every target, in the order they run, with the crate whose fuzz/ holds it.
all=(parse_influx roundtrip_influx parse_opentsdb roundtrip_opentsdb
    parse_graphite parse_pickle roundtrip_graphite parse_kairosdb roundtrip_kairosdb)
declare -A dialect=(
    [parse_influx]=influx [roundtrip_influx]=influx
    [parse_opentsdb]=opentsdb [roundtrip_opentsdb]=opentsdb
    [parse_graphite]=graphite [parse_pickle]=graphite [roundtrip_graphite]=graphite
    [parse_kairosdb]=kairosdb [roundtrip_kairosdb]=kairosdb
)
# Golden inputs (globs under the crate's tests/fixtures/) that seed a target's
# corpus. parse_opentsdb reads its input as telnet lines and as an /api/put
# body; the graphite serializer's expected output is plaintext protocol too.
# The roundtrip targets decode their input with `arbitrary`, where protocol
# text means nothing: they start empty and grow their own corpus.
declare -A seeds=(
    [parse_influx]='influx/*.in'
    [parse_opentsdb]='opentsdb/*.in opentsdb-json/*.json'
    [parse_graphite]='graphite/*.in graphite-serializer/*.expected'
    [parse_pickle]='pickle/*.pickle'
    [parse_kairosdb]='kairosdb/*.json'
)

time_s=60
jobs=1
targets=()
while [ $# -gt 0 ]; do
    case $1 in
    --time) time_s=${2:?--time needs seconds}; shift 2 ;;
    --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
    -h | --help) usage ;;
    -*) echo "unknown option $1" >&2; usage 2 >&2 ;;
    *)
        if [ -z "${dialect[$1]:-}" ]; then
            echo "unknown target $1 (targets: ${all[*]})" >&2
            exit 2
        fi
        targets+=("$1"); shift ;;
    esac
done
[[ $time_s =~ ^[1-9][0-9]*$ ]] || { echo "--time wants whole seconds, got $time_s" >&2; exit 2; }
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "--jobs wants a positive number, got $jobs" >&2; exit 2; }
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

step() { printf '\n==> %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

# cargo-fuzz builds with -Zsanitizer=address and other -Z flags, so it needs
# a nightly compiler. Without one, stable accepts them under RUSTC_BOOTSTRAP=1
# (its sanitizer runtimes ship with it): verified by building parse_kairosdb
# with `RUSTC_BOOTSTRAP=1 cargo +stable fuzz build` on 1.95.0 and fuzzing with it.
if command -v rustup >/dev/null 2>&1 && rustup toolchain list | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
    toolchain="nightly ($(rustc +nightly --version))"
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
    toolchain="$(rustc --version) with RUSTC_BOOTSTRAP=1"
fi
host=$(rustc -vV | sed -n 's/^host: //p')

out="$root/target/fuzz"
mkdir -p "$out/logs"
# One run at a time: two would share corpora, artifacts and logs, and each
# would count the other's crashes (or miss its own).
exec 9>"$out/.lock"
if ! flock -n 9; then
    echo "another scripts/fuzz.sh is running (lock: ${out#"$root"/}/.lock)" >&2
    exit 1
fi

# Build everything before fuzzing anything: a broken build fails here, and the
# runs use these binaries (not `cargo fuzz run`, which would rebuild from
# whatever the tree holds at that moment).
for t in "${targets[@]}"; do
    step "build $t (${fuzz[*]}, $host)"
    blog="$out/logs/$t.build.log"
    if ! (cd "crates/conflux-${dialect[$t]}/fuzz" &&
        "${fuzz[@]}" build --target "$host" "$t") >"$blog" 2>&1; then
        tail -n 30 "$blog" >&2
        echo "build of $t failed; full log: $blog" >&2
        exit 1
    fi
done

# Running fuzzers: timeout's pid -> target. `timeout` puts each run in its own
# process group and passes a TERM on to all of it.
declare -A running=() started=() status=() wall=()
# shellcheck disable=SC2317 # run by the EXIT trap
stop_all() {
    local pid
    for pid in "${!running[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${!running[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() {
    local t=$1 fdir="$root/crates/conflux-${dialect[$1]}/fuzz"
    local corpus="$fdir/corpus/$t" artifacts="$fdir/artifacts/$t" glob f
    mkdir -p "$corpus" "$artifacts"
    for glob in ${seeds[$t]:-}; do
        for f in "$root/crates/conflux-${dialect[$t]}/tests/fixtures/"$glob; do
            if [ -f "$f" ]; then cp "$f" "$corpus/"; fi
        done
    done
    # Artifacts newer than this stamp are this run's.
    touch "$out/logs/$t.start"
    local cmd=("$fdir/target/$host/release/$t" -max_total_time="$time_s"
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$artifacts/" "$corpus")
    echo "+ ${cmd[*]}" >"$out/logs/$t.log"
    echo "fuzzing $t for ${time_s}s (log: target/fuzz/logs/$t.log)"
    ASAN_OPTIONS=detect_odr_violation=0 \
        timeout --kill-after=30 $((time_s + 120)) "${cmd[@]}" >>"$out/logs/$t.log" 2>&1 &
    running[$!]=$t
    started[$t]=$SECONDS
}

reap() {
    local pid rc=0
    wait -n -p pid "${!running[@]}" || rc=$?
    local t=${running[$pid]}
    unset 'running[$pid]'
    status[$t]=$rc
    wall[$t]=$((SECONDS - started[$t]))
}

step "fuzzing ${#targets[@]} target(s), ${time_s}s each, $jobs at a time"
for t in "${targets[@]}"; do
    while [ ${#running[@]} -ge "$jobs" ]; do reap; done
    start "$t"
done
while [ ${#running[@]} -gt 0 ]; do reap; done

# One row per target from libFuzzer's final stats (printed on a crash too).
final_stat() { sed -n "s/^stat::$1: *\([0-9]*\).*/\1/p" "$log" | tail -n 1; }
summary="$out/summary.md"
failed=0
found=()
{
    echo "# Fuzzing summary"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), ${time_s}s per target, --jobs $jobs," \
        "$toolchain, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
        "$(git diff --quiet HEAD 2>/dev/null || echo '(with uncommitted changes)')"
    echo
    row='| %-18s | %7s | %12s | %8s | %6s | %5s | %6s | %7s | %-9s |\n'
    # shellcheck disable=SC2059 # the format is the row above
    printf "$row" target seconds executions exec/s corpus cov "rss MB" crashes result
    echo '| :----------------- | ------: | -----------: | -------: | -----: | ----: | -----: | ------: | :-------- |'
    for t in "${targets[@]}"; do
        log="$out/logs/$t.log"
        fdir="$root/crates/conflux-${dialect[$t]}/fuzz"
        execs=$(final_stat number_of_executed_units)
        execs=${execs:-$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)}
        secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
        secs=${secs:-${wall[$t]}}
        rate=$(final_stat average_exec_per_sec)
        rate=${rate:-$(( ${execs:-0} / (secs > 0 ? secs : 1) ))}
        cov=$(grep -o ' cov: [0-9]*' "$log" | tail -n 1 | tr -dc 0-9)
        rss=$(final_stat peak_rss_mb)
        corpus=$(find "$fdir/corpus/$t" -type f | wc -l)
        mapfile -t new < <(find "$fdir/artifacts/$t" -type f -newer "$out/logs/$t.start" \
            \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \))
        crashes=${#new[@]}
        if [ "$crashes" -gt 0 ]; then
            result=CRASH
            found+=("${new[@]}")
        elif [ "${status[$t]}" -ne 0 ]; then
            result="exit ${status[$t]}"
        else
            result=ok
        fi
        [ "$result" = ok ] || failed=1
        # shellcheck disable=SC2059
        printf "$row" "$t" "$secs" "${execs:-?}" "$rate" "$corpus" "${cov:-?}" "${rss:-?}" "$crashes" "$result"
    done
    if [ ${#found[@]} -gt 0 ]; then
        echo
        echo "Crashes, each with the command that reproduces it:"
        echo
        for f in "${found[@]}"; do
            rel=${f#"$root"/}
            t=$(basename "$(dirname "$f")")
            echo "- \`$rel\`: \`cd ${rel%%/artifacts/*} && ${fuzz[*]} run $t ${rel#*/fuzz/}\`"
        done
    fi
} >"$summary"

echo
cat "$summary"
echo
echo "summary: ${summary#"$root"/}, logs: target/fuzz/logs/"
exit "$failed"
