#!/usr/bin/env bash
# Runs every test suite of wirestate, on a fresh machine too: it installs what it needs
# (Autobahn|Testsuite into ~/.cache, cargo-fuzz with cargo) by itself.
#
#   scripts/test-all.sh            everything
#   FUZZ_SECONDS=30                seconds per fuzz target (0 skips fuzzing)
#   SKIP_AUTOBAHN=1                skip the Autobahn runs
#   AUTOBAHN_DEFLATE=0             skip Autobahn's permessage-deflate sections (12, 13)
#
# Interop: npm engine.io-client and PyPI python-engineio against eio-server, our
# Engine.IO client against Node's engine.io server, and npm socket.io-client and PyPI
# python-socketio against sio-server (recovery included), and our Socket.IO client
# against Node's socket.io and sio-server, on both runtimes (installed into
# conformance/interop/ and the user's Python on first use).
#
# Autobahn split (the suite itself is the slow part: ~10 min per role for sections 12
# and 13): all 517 cases for our server on tokio and for our client on smol, run in
# parallel (one Python process per core); the 301 other cases for the server on smol
# and the client on tokio.
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
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

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
        summary+=("FAIL  $name (${secs}s) ${detail} — see $log")
        echo "--- $name failed; last lines of $log:"
        tail -n 40 "$log"
    fi
    grep -E '^(test result: FAILED|[0-9]+ passed, [0-9]+ failed|autobahn |FAILED )' "$log" | tail -n 12
}

# run NAME COMMAND...: runs a suite in the foreground, its output in a log.
run() {
    local name="$1"; shift
    local start=$(date +%s) status
    echo "=== $name: $*"
    "$@" > "$logs/$name.log" 2>&1
    status=$?
    record "$name" "$status" $(( $(date +%s) - start ))
}

# start NAME COMMAND...: runs a suite in the background; `finish` waits for them all.
background=()
start() {
    local name="$1"; shift
    echo "=== $name (in parallel): $*"
    (
        s=$(date +%s)
        "$@" > "$logs/$name.log" 2>&1
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
run unit-and-integration cargo test --workspace --locked
run docs env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

# The engine is sans-IO: no async runtime, futures or async-* crate among its
# dependencies, and it builds for wasm32 (when the target can be had).
engine_pure() {
    local deps
    deps="$(cargo tree -p wirestate-engine --no-default-features -e normal --prefix none --locked)" || return 1
    if grep -E '^(futures|tokio|smol|async-)' <<< "$deps"; then
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
    summary+=("SKIP  engine-wasm32 (the wasm32-unknown-unknown target is not installable here)")
fi

if [ "${SKIP_AUTOBAHN:-0}" != 1 ]; then
    run autobahn-install bash conformance/autobahn/install.sh
    run conformance-build cargo build --release --locked -p wirestate-conformance --bin ws-echo --bin autobahn-client --bin eio-server --bin eio-client --bin sio-server --bin sio-client
    export WIRESTATE_BIN_DIR="$root/target/release"
    short='*,-12.*,-13.*'
    run autobahn-server-smol bash conformance/autobahn.sh server smol "$short"
    run autobahn-client-tokio bash conformance/autobahn.sh client tokio "$short"
    run interop-eio-tokio bash conformance/interop.sh eio tokio
    run interop-eio-smol bash conformance/interop.sh eio smol
    run interop-eio-client-tokio bash conformance/interop.sh eio-client tokio
    run interop-eio-client-smol bash conformance/interop.sh eio-client smol
    run interop-sio-tokio bash conformance/interop.sh sio tokio
    run interop-sio-smol bash conformance/interop.sh sio smol
    run interop-sio-client-tokio bash conformance/interop.sh sio-client tokio
    run interop-sio-client-smol bash conformance/interop.sh sio-client smol
    if [ "${AUTOBAHN_DEFLATE:-1}" = 1 ]; then
        start autobahn-server-tokio-all bash conformance/autobahn.sh server tokio '*'
        start autobahn-client-smol-all bash conformance/autobahn.sh client smol '*'
        finish
    fi
fi

if [ "$fuzz_seconds" != 0 ]; then
    if ! cargo fuzz --version > /dev/null 2>&1; then
        run cargo-fuzz-install cargo install cargo-fuzz --locked
    fi
    fuzz() (
        set -e
        cd "$root/fuzz"
        targets="$(cargo fuzz list)"
        RUSTC_BOOTSTRAP=1 cargo fuzz build
        for t in $targets; do
            mkdir -p "corpus/$t"
            log="$logs/fuzz-$t.log"
            if ! RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- \
                -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 > "$log" 2>&1; then
                tail -n 60 "$log"
                echo "fuzz target $t failed (artifacts in fuzz/artifacts/$t)"
                exit 1
            fi
            echo "$t: $(grep -E '^#[0-9]+ +DONE' "$log" | tail -1)"
        done
        echo "$(echo "$targets" | wc -w) passed, 0 failed"
    )
    run fuzz fuzz
fi

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
echo "suites: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
