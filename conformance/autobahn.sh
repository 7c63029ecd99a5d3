#!/usr/bin/env bash
# Runs the Autobahn|Testsuite against wirestate and checks the results itself.
#
#   conformance/autobahn.sh server|client tokio|smol [CASES]
#
# server: our `ws-echo` is tested by `wstest -m fuzzingclient`.
# client: our `autobahn-client` is tested by `wstest -m fuzzingserver`.
# CASES: comma-separated case patterns; a pattern with a leading `-` excludes (default
# `*`, all 517 cases; `*,-12.*,-13.*` leaves out the 216 permessage-deflate cases).
# Our binaries negotiate permessage-deflate unless NO_DEFLATE=1. With TLS=1 (server
# role): `ws-echo` serves wss:// with a certificate made by openssl for the run, and
# the suite connects over TLS. With LEND=1 our side echoes with `recv_with` (each
# message lent in place) instead of `recv` and `send`.
#
# wstest exits 0 even when a run aborts, so this script reads `index.json` itself: the
# number of cases must be complete, every `behavior` OK (INFORMATIONAL only for the cases
# the suite defines as informational), every `behaviorClose` OK or INFORMATIONAL.
# Ends with one line `N passed, M failed`; exits non-zero if anything failed.
#
# Environment: AUTOBAHN_HOME (install cache, default ~/.cache/wirestate/autobahn),
# WIRESTATE_BIN_DIR (prebuilt binaries; default: cargo build --release),
# AUTOBAHN_OUT (report folder, default target/autobahn/ROLE-RUNTIME).
set -euo pipefail

role="${1:-}"; runtime="${2:-}"; cases="${3:-}"
case "$role" in server|client) ;; *) echo "usage: $0 server|client tokio|smol [CASES]" >&2; exit 2 ;; esac
case "$runtime" in tokio|smol) ;; *) echo "usage: $0 server|client tokio|smol [CASES]" >&2; exit 2 ;; esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
wstest="$(bash "$here/autobahn/install.sh")"

if [ -z "${WIRESTATE_BIN_DIR:-}" ]; then
    (cd "$root" && cargo build --release --quiet -p wirestate-conformance --bin ws-echo --bin autobahn-client)
    bindir="$root/target/release"
else
    bindir="$WIRESTATE_BIN_DIR"
fi

out="${AUTOBAHN_OUT:-$root/target/autobahn/$role-$runtime}"
rm -rf "$out"; mkdir -p "$out"
agent="wirestate-$runtime"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

cases="${cases:-*}"
split() { python3 -c 'import json,sys; print(json.dumps([c.strip().lstrip("-") for c in sys.argv[1].split(",") if c.strip() and c.strip().startswith("-") == (sys.argv[2] == "-")]))' "$cases" "$1"; }
cases_json="$(split +)"; exclude_json="$(split -)"
case "$cases" in
    "*") expected=517 ;;
    "*,-12.*,-13.*") expected=301 ;;
    *) expected="" ;;
esac
our_flags=()
[ "${NO_DEFLATE:-0}" = 1 ] && our_flags=(--no-deflate)
[ "${LEND:-0}" = 1 ] && our_flags+=(--lend)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# shellcheck source=conformance/ports.sh
source "$root/conformance/ports.sh"

start=$(date +%s)
scheme=ws; tls_flags=()
if [ "${TLS:-0}" = 1 ]; then
    [ "$role" = server ] || { echo "TLS=1 is for the server role" >&2; exit 2; }
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$out/key.pem" -out "$out/cert.pem" 2> /dev/null
    scheme=wss; tls_flags=(--tls-cert "$out/cert.pem" --tls-key "$out/key.pem")
fi
if [ "$role" = server ]; then
    "$bindir/ws-echo" --runtime "$runtime" --addr "127.0.0.1:$port" "${our_flags[@]}" "${tls_flags[@]}" > "$out/server.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
    cat > "$out/spec.json" <<JSON
{"outdir": "$out/reports", "servers": [{"agent": "$agent", "url": "$scheme://127.0.0.1:$port"}],
 "cases": $cases_json, "exclude-cases": $exclude_json, "exclude-agent-cases": {}}
JSON
    (cd "$out" && "$wstest" -m fuzzingclient -s "$out/spec.json") > "$out/wstest.log" 2>&1 || true
else
    cat > "$out/spec.json" <<JSON
{"url": "ws://127.0.0.1:$port", "outdir": "$out/reports", "webport": 0,
 "cases": $cases_json, "exclude-cases": $exclude_json, "exclude-agent-cases": {}}
JSON
    (cd "$out" && exec "$wstest" -m fuzzingserver -s "$out/spec.json") > "$out/wstest.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
    "$bindir/autobahn-client" --runtime "$runtime" --url "ws://127.0.0.1:$port" --agent "$agent" "${our_flags[@]}" \
        > "$out/client.log" 2>&1 || echo "autobahn-client exited with $?" >&2
fi
elapsed=$(( $(date +%s) - start ))

python3 - "$out/reports/index.json" "$agent" "$role" "$runtime" "${expected}" "$elapsed" <<'PY'
import json, sys
path, agent, role, runtime, expected, elapsed = sys.argv[1:]
# Cases whose outcome the suite itself defines as informational (the spec leaves the
# behaviour open): they can only ever be INFORMATIONAL.
informational = {"7.1.6", "7.13.1", "7.13.2"}
try:
    results = json.load(open(path))[agent]
except (OSError, ValueError, KeyError) as e:
    print(f"autobahn {role} {runtime}: no report ({e})")
    print("0 passed, 1 failed")
    sys.exit(1)
passed, failed, counts = 0, [], {}
for case, r in sorted(results.items(), key=lambda kv: [int(x) for x in kv[0].split(".")]):
    b, bc = r.get("behavior"), r.get("behaviorClose")
    counts[b] = counts.get(b, 0) + 1
    ok = (b == "OK" or (b == "INFORMATIONAL" and case in informational)) and bc in ("OK", "INFORMATIONAL")
    if ok:
        passed += 1
    else:
        failed.append(f"{case}: behavior={b} behaviorClose={bc}")
if expected and len(results) != int(expected):
    failed.append(f"expected {expected} cases, the report has {len(results)}")
for f in failed:
    print("FAILED", f)
summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
env = __import__("os").environ
tls = " over TLS" if env.get("TLS") == "1" else ""
lent = ", messages lent" if env.get("LEND") == "1" else ""
print(f"autobahn {role} {runtime}{tls}{lent}: {len(results)} cases in {elapsed}s ({summary})")
print(f"{passed} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
PY
