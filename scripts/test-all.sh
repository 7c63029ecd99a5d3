#!/usr/bin/env bash
# Runs every test suite of wirestate, on a fresh machine too: it installs what it needs
# (Autobahn|Testsuite into ~/.cache, cargo-fuzz with cargo) by itself.
#
#   scripts/test-all.sh            everything
#   FUZZ_SECONDS=30                seconds per fuzz target (0 skips fuzzing; the kept
#                                  corpus is replayed either way)
#   SKIP_AUTOBAHN=1                skip the Autobahn runs
#   SKIP_INTEROP=1                 skip the npm / PyPI interop suites
#   AUTOBAHN_DEFLATE=0             skip Autobahn's permessage-deflate sections (12, 13)
#   SUITE_TIMEOUT=1800             seconds any one suite may take before it fails
#   ALLOW_SKIP=a,b                 under CI=true, suites that may be skipped (a skip of
#                                  any other fails the run)
#
# Every skipped suite prints a SKIP line. Under CI=true a skip counts as a failure
# unless ALLOW_SKIP names it: CI cannot pass by testing less than it says.
#
# Interop: npm engine.io-client and PyPI python-engineio against eio-server, our
# Engine.IO client against Node's engine.io server, and npm socket.io-client and PyPI
# python-socketio against sio-server (recovery included), and our Socket.IO client
# against Node's socket.io and sio-server, on both runtimes, and the Socket.IO clients
# against axum-app (the same server mounted in axum by the tower layer), and npm/PyPI
# clients over https:// and wss:// against the servers given a test CA's certificate
# (installed into
# conformance/interop/ and the user's Python on first use).
#
# Autobahn split (the suite itself is the slow part: ~10 min per role for sections 12
# and 13): all 517 cases for our server on tokio and for our client on smol, run in
# parallel (one Python process per core); the 301 other cases for the server on smol
# and the client on tokio.
#
# Cluster: two sio-servers on one redis-server (Debian's, installed if missing, started
# on a free loopback port), then one beside Node's socket.io with
# @socket.io/redis-adapter, then Redis down at start, restarted mid-run, and a server
# killed: conformance/cluster.sh.
#
# Browser: the demo's chat page (two pages, a server restart) and @socket.io/admin-ui
# served by the demo, in Debian's chromium driven headless by npm's puppeteer-core,
# on both runtimes: conformance/browser.sh (screenshots in target/browser/).
#
# Soak: open/close churn of 20,000 Socket.IO sessions against sio-server on each
# runtime (RSS per session, descriptors), with the other black-box hardening tests.
#
# Prints one line per suite, then `suites: N passed, M failed`; exits non-zero if any
# suite failed.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
logs="$root/target/test-logs"
rm -rf "$logs"
mkdir -p "$logs"
fuzz_seconds="${FUZZ_SECONDS:-30}"
suite_timeout="${SUITE_TIMEOUT:-1800}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export root logs fuzz_seconds
# A clean build writes about 10 GB here; incremental caches only help a rebuild, so
# CI goes without them. A full disk fails every later suite, so say up front how much
# there is.
[ "${CI:-}" = true ] && export CARGO_INCREMENTAL=0
# free_gb: whole GB free on the disk that holds the checkout.
free_gb() { echo $(( $(df -Pk "$root" | awk 'NR == 2 {print $4}') / 1048576 )); }
free_at_start=$(free_gb)
echo "=== disk: ${free_at_start} GB free under $root"
[ "$free_at_start" -lt 12 ] && echo "=== warning: a full run writes about 10 GB; suites may fail with 'No space left on device'"

summary=()
passed=0
failed=0

# record NAME STATUS SECONDS: adds the suite's summary line (and shows its log's tail
# if it failed).
record() {
    local name="$1" status="$2" secs="$3" log="$logs/$1.log" detail
    detail="$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)"
    if [ -z "$detail" ]; then
        detail="$(grep -E '^test result:' "$log" | awk '{p+=$4; f+=$6} END {if (NR) print p " passed, " f " failed"}')"
    fi
    if [ "$status" -eq 0 ]; then
        passed=$((passed + 1))
        summary+=("PASS  $name (${secs}s) ${detail}")
    else
        failed=$((failed + 1))
        grep -q 'No space left on device' "$log" && detail="${detail:+$detail; }the disk is full"
        summary+=("FAIL  $name (${secs}s) ${detail} — see $log")
        echo "--- $name failed; last lines of $log:"
        tail -n 40 "$log"
    fi
    grep -E '^(test result: FAILED|[0-9]+ passed, [0-9]+ failed|autobahn |FAILED |mask implementations|(tokio|smol): )' "$log" | tail -n 12
}

# skip NAME REASON: a suite not run. Under CI=true that fails the run unless
# ALLOW_SKIP lists NAME.
skip() {
    local name="$1" reason="$2"
    if [ "${CI:-}" = true ] && [[ ",${ALLOW_SKIP:-}," != *",$name,"* ]]; then
        failed=$((failed + 1))
        summary+=("FAIL  $name skipped under CI ($reason; ALLOW_SKIP=$name to allow)")
    else
        summary+=("SKIP  $name ($reason)")
    fi
    echo "=== SKIP $name: $reason"
}

# bounded COMMAND...: runs a command, or a function of this script, killed after
# SUITE_TIMEOUT seconds (a hang fails its suite instead of the whole run).
bounded() {
    if declare -F "$1" > /dev/null; then
        timeout --kill-after=30 "$suite_timeout" bash -c "$(declare -f "$1"); $(printf '%q ' "$@")"
    else
        timeout --kill-after=30 "$suite_timeout" "$@"
    fi
}

# run NAME COMMAND...: runs a suite in the foreground, its output in a log.
run() {
    local name="$1"; shift
    local start=$(date +%s) status
    echo "=== $name: $*"
    bounded "$@" > "$logs/$name.log" 2>&1
    status=$?
    [ "$status" -eq 124 ] && echo "timed out after ${suite_timeout}s" >> "$logs/$name.log"
    record "$name" "$status" $(( $(date +%s) - start ))
}

# start NAME COMMAND...: runs a suite in the background; `finish` waits for them all.
background=()
start() {
    local name="$1"; shift
    echo "=== $name (in parallel): $*"
    (
        s=$(date +%s)
        bounded "$@" > "$logs/$name.log" 2>&1
        echo "$? $(( $(date +%s) - s ))" > "$logs/$name.status"
    ) &
    background+=("$name")
}
finish() {
    wait
    local name status secs
    for name in "${background[@]}"; do
        read -r status secs < "$logs/$name.status"
        record "$name" "$status" "$secs"
    done
    background=()
}

run fmt cargo fmt --all --check
run clippy cargo clippy --workspace --all-targets --locked -- -D warnings
# --show-output: what the tests report beside pass/fail (which masking paths this CPU
# checked, the hardening tests' figures) lands in the log. SIM_SEEDS: 300 seeds of the
# whole-server simulation (async/tests/sim.rs).
run unit-and-integration env SIM_SEEDS=300 cargo test --workspace --locked -- --show-output
run docs env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

# The engine is sans-IO: no async runtime, futures or async-* crate among its
# dependencies, and it builds for wasm32 (when the target can be had).
engine_pure() {
    local deps
    deps="$(cargo tree -p wirestate-engine --no-default-features -e normal --prefix none --locked)" || return 1
    # (A name that only begins so, smol_str, is not one.)
    if grep -E '^(futures|tokio|smol|async-[a-z0-9-]+)[ -]' <<< "$deps"; then
        echo "the sans-IO engine depends on an async crate (above)"
        return 1
    fi
    echo "$(wc -l <<< "$deps") crates, none async"
}
run engine-pure engine_pure

# The engine does no I/O: prove it by building it for wasm32 (when the target can be had).
if rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' \
    || timeout 120 rustup target add wasm32-unknown-unknown > "$logs/wasm-target.log" 2>&1; then
    run engine-wasm32 cargo build -p wirestate-engine --no-default-features --target wasm32-unknown-unknown --locked
else
    skip engine-wasm32 "the wasm32-unknown-unknown target is not installable here"
fi

run conformance-build cargo build --release --locked -p wirestate-conformance --bin ws-echo --bin autobahn-client --bin eio-server --bin eio-client --bin sio-server --bin sio-client --bin axum-app --bin redis-emitter --bin ws-rooms --bin demo
export WIRESTATE_BIN_DIR="$root/target/release"
run hardening-soak env CHURN_SESSIONS=20000 cargo test --release --locked -p wirestate-conformance --test hardening -- --show-output --test-threads 1

if [ "${SKIP_INTEROP:-0}" != 1 ]; then
    for suite in eio eio-client sio sio-client ws-rooms demo; do
        for rt in tokio smol; do
            run "interop-$suite-$rt" bash conformance/interop.sh "$suite" "$rt"
        done
    done
    # The Socket.IO clients against the same server mounted in axum (tokio only), and
    # the clients over TLS.
    run interop-axum-tokio bash conformance/interop.sh axum tokio
    for rt in tokio smol; do
        run "interop-tls-$rt" bash conformance/interop.sh tls "$rt"
        run "interop-tls-client-$rt" bash conformance/interop.sh tls-client "$rt"
    done
    # The chat page and the admin UI in headless Chromium.
    for rt in tokio smol; do
        run "browser-$rt" bash conformance/browser.sh "$rt"
    done
    # Clusters on one redis-server: wirestate pairs, mixed with Node's redis-adapter,
    # and Redis faults.
    for rt in tokio smol; do
        run "cluster-$rt" bash conformance/cluster.sh "$rt"
    done
else
    skip interop "SKIP_INTEROP=1"
fi

if [ "${SKIP_AUTOBAHN:-0}" != 1 ]; then
    run autobahn-install bash conformance/autobahn/install.sh
    short='*,-12.*,-13.*'
    run autobahn-server-smol bash conformance/autobahn.sh server smol "$short"
    run autobahn-client-tokio bash conformance/autobahn.sh client tokio "$short"
    # ws-echo over wss:// (the suite's client over TLS), without compression; on smol
    # each message lent in place (`recv_with`), as in both full runs below.
    run autobahn-server-tokio-tls env TLS=1 NO_DEFLATE=1 AUTOBAHN_OUT="$root/target/autobahn/server-tokio-tls" \
        bash conformance/autobahn.sh server tokio "$short"
    run autobahn-server-smol-tls-lend env TLS=1 NO_DEFLATE=1 LEND=1 AUTOBAHN_OUT="$root/target/autobahn/server-smol-tls" \
        bash conformance/autobahn.sh server smol "$short"
    if [ "${AUTOBAHN_DEFLATE:-1}" = 1 ]; then
        start autobahn-server-tokio-all-lend env LEND=1 bash conformance/autobahn.sh server tokio '*'
        start autobahn-client-smol-all-lend env LEND=1 bash conformance/autobahn.sh client smol '*'
        finish
    else
        skip autobahn-deflate "AUTOBAHN_DEFLATE=0"
    fi
else
    skip autobahn "SKIP_AUTOBAHN=1"
fi

# The fuzz targets are a workspace of their own: linted like the rest.
run fuzz-clippy cargo clippy --manifest-path fuzz/Cargo.toml --locked -- -D warnings

if ! cargo fuzz --version > /dev/null 2>&1; then
    run cargo-fuzz-install cargo install cargo-fuzz --locked
fi
# Every target replays the kept corpus (fuzz/corpus/TARGET, from
# scripts/fuzz-campaign.sh), then fuzzes for FUZZ_SECONDS from it; new inputs go to
# target/fuzz-corpus, not into the repository.
fuzz() (
    set -e
    cd "$root/fuzz"
    targets="$(cargo fuzz list)"
    RUSTC_BOOTSTRAP=1 cargo fuzz build
    for t in $targets; do
        mkdir -p "corpus/$t" "$root/target/fuzz-corpus/$t"
        log="$logs/fuzz-$t.log"
        if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "$root/target/fuzz-corpus/$t" "corpus/$t" -- \
            -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 > "$log" 2>&1; then
            tail -n 60 "$log"
            echo "fuzz target $t failed (artifacts in fuzz/artifacts/$t)"
            exit 1
        fi
        echo "$t: $(ls "corpus/$t" | wc -l) kept inputs replayed; $(grep -E '^#[0-9]+ +DONE' "$log" | tail -1)"
    done
    echo "$(echo "$targets" | wc -w) passed, 0 failed"
)
if [ "$fuzz_seconds" = 0 ]; then
    skip fuzz-explore "FUZZ_SECONDS=0 (the kept corpus is still replayed)"
    fuzz_seconds=1
fi
export fuzz_seconds
run fuzz fuzz

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
# Again at the end, where a truncated CI log still shows it.
echo "disk: $(free_gb) GB free under $root at the end"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
