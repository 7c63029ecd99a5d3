#!/usr/bin/env bash
# Real Engine.IO clients from npm and PyPI against our `eio-server`.
#
#   conformance/interop.sh eio tokio|smol          real clients against our server
#   conformance/interop.sh eio-client tokio|smol   our client against Node's server
#
# eio: installs the clients (npm `engine.io-client`, PyPI `python-engineio[client]`) on
# first use, starts `eio-server` on a free port, runs each client over polling,
# websocket and polling→upgrade, echoing text and binary.
# eio-client: starts Node's `engine.io` server (echo) and runs our `eio-client`.
# Ends with `N passed, M failed`.
# WIRESTATE_BIN_DIR: prebuilt binaries (default: cargo build --release).
set -euo pipefail

what="${1:-}"; runtime="${2:-}"
case "$what" in eio|eio-client) ;; *) echo "usage: $0 eio|eio-client tokio|smol" >&2; exit 2 ;; esac
case "$runtime" in tokio|smol) ;; *) echo "usage: $0 eio|eio-client tokio|smol" >&2; exit 2 ;; esac

[ -n "${WIRESTATE_BIN_DIR:-}" ] && WIRESTATE_BIN_DIR="$(cd "$WIRESTATE_BIN_DIR" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$here/interop"
if [ ! -d node_modules/engine.io-client ] || [ ! -d node_modules/engine.io ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
fi
if ! python3 -c 'import engineio, websocket, requests' 2>/dev/null; then
    python3 -m pip install -q --disable-pip-version-check -r requirements.txt >&2
fi
if [ -z "${WIRESTATE_BIN_DIR:-}" ]; then
    (cd "$root" && cargo build --release --quiet -p wirestate-conformance --bin eio-server --bin eio-client)
    bindir="$root/target/release"
else
    bindir="$WIRESTATE_BIN_DIR"
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
log="$(mktemp)"
if [ "$what" = eio ]; then
    "$bindir/eio-server" --runtime "$runtime" --addr "127.0.0.1:$port" > "$log" 2>&1 &
    clients=("node eio-client.mjs" "python3 eio_client.py")
    peers="engine.io-client (npm) and python-engineio (PyPI) against eio-server"
else
    node eio-server.mjs "$port" > "$log" 2>&1 &
    clients=("$bindir/eio-client --runtime $runtime --url")
    peers="wirestate's client against Node's engine.io server"
fi
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2).close()' "$port" 2>/dev/null && break
    sleep 0.1
done

passed=0; failed=0
for client in "${clients[@]}"; do
    out="$(timeout 120 $client "http://127.0.0.1:$port" 2>&1)" || true
    echo "$out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$' || true
    p=$(echo "$out" | grep -cE '^ok ' || true)
    f=$(echo "$out" | grep -cE '^FAIL' || true)
    if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $client produced no result"; f=1
    fi
    passed=$((passed + p)); failed=$((failed + f))
done
if ! kill -0 "$server" 2>/dev/null; then
    echo "FAIL the server exited during the run:"; cat "$log"; failed=$((failed + 1))
fi
echo "interop $what $runtime: $peers"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
