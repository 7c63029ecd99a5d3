#!/usr/bin/env bash
# Real Engine.IO clients from npm and PyPI against our `eio-server`.
#
#   conformance/interop.sh eio tokio|smol          real clients against our server
#   conformance/interop.sh eio-client tokio|smol   our client against Node's server
#   conformance/interop.sh sio tokio|smol          real Socket.IO clients against sio-server
#   conformance/interop.sh sio-client tokio|smol   our Socket.IO client against Node's
#                                                  socket.io server and against sio-server
#   conformance/interop.sh axum tokio              the sio clients against axum-app
#   conformance/interop.sh tls tokio|smol          clients over https:// and wss://
#   conformance/interop.sh tls-client tokio|smol   our clients over https:// and wss://
#   conformance/interop.sh ws-rooms tokio|smol     plain WebSocket clients against ws-rooms
#   conformance/interop.sh demo tokio|smol         Socket.IO clients against the demo
#
# eio: installs the clients (npm `engine.io-client`, PyPI `python-engineio[client]`) on
# first use, starts `eio-server` on a free port, runs each client over polling,
# websocket and polling→upgrade, echoing text and binary.
# eio-client: starts Node's `engine.io` server (echo) and runs our `eio-client`.
# sio: npm `socket.io-client` and PyPI `python-socketio` against `sio-server` (events,
# acks both ways, binary, namespaces, middleware, rooms, on every transport), and
# socket.io-client's connection-state recovery against `sio-server --recovery`, and
# socket.io-client with socket.io-msgpack-parser against `sio-server --parser msgpack`,
# and both clients again against `sio-server --shards 2` (two shards, one per thread).
# axum: the same clients and cases against `axum-app` (the same Socket.IO server
# mounted in an axum app through the tower layer), with `GET /health` asked every
# 100 ms on the same port while they run: each answer must be `200 ok`.
# sio-client: our `sio-client` against Node's `socket.io` (interop/sio-server.mjs) and
# against our `sio-server`: auth, events, binary, acks both ways, multiplexing,
# middleware, a server restart (killed and started again when the client prints
# RESTART-ME), and state recovery against a second server with recovery on.
# tls: a CA and a server certificate for 127.0.0.1 made with openssl for the run;
# the eio and sio clients (npm and PyPI, trusting that CA) against `eio-server` and
# `sio-server` given `--tls-cert/--tls-key`, over https:// and wss:// (the PyPI ones
# over https:// polling only: see below), and npm `ws` against `ws-echo` over wss://.
# tls-client: the sio-client run over https:// and wss:// (Node's socket.io and our
# sio-server given the test CA's certificate, `--ca` to our client), and our
# eio-client against Node's engine.io over TLS, and refused by a CA it does not trust.
# ws-rooms: npm `ws` and PyPI `websockets` against `ws-rooms` (the router: chat rooms,
# broadcast with and without the sender, compression, close codes from the auth hook,
# `POST /connections/ID`).
# demo: npm `socket.io-client` and PyPI `python-socketio` against `demo` (namespace
# /chat: the auth challenge and its 10 s timeout, the room policy, validated chat,
# dm, queued jobs, a panicking handler; over websocket and polling).
# Ends with `N passed, M failed`. A client run counts as passed only if it exits with
# status 0 and reports exactly the number of cases it is known to have (a client
# killed by its timeout, or one that ran fewer cases, fails).
# WIRESTATE_BIN_DIR: prebuilt binaries (default: cargo build --release).
set -euo pipefail

what="${1:-}"; runtime="${2:-}"
usage="usage: $0 eio|eio-client|sio|sio-client|tls|tls-client|ws-rooms|demo tokio|smol, or $0 axum tokio"
case "$what" in eio|eio-client|sio|sio-client|axum|tls|tls-client|ws-rooms|demo) ;; *) echo "$usage" >&2; exit 2 ;; esac
case "$runtime" in tokio|smol) ;; *) echo "$usage" >&2; exit 2 ;; esac
if [ "$what" = axum ] && [ "$runtime" != tokio ]; then echo "$usage" >&2; exit 2; fi

[ -n "${WIRESTATE_BIN_DIR:-}" ] && WIRESTATE_BIN_DIR="$(cd "$WIRESTATE_BIN_DIR" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$here/interop"
if [ ! -d node_modules/engine.io-client ] || [ ! -d node_modules/engine.io ] ||
   [ ! -d node_modules/socket.io-client ] || [ ! -d node_modules/socket.io ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
fi
if ! python3 - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import engineio, socketio, websocket, websockets, requests
pins = [l.strip().split("==") for l in open("requirements.txt") if "==" in l]
sys.exit(any(version(name.split("[")[0]) != v for name, v in pins))
PY
then
    python3 -m pip install -q --disable-pip-version-check -r requirements.txt >&2
fi
if [ -z "${WIRESTATE_BIN_DIR:-}" ]; then
    (cd "$root" && cargo build --release --quiet -p wirestate-conformance --bin eio-server --bin eio-client --bin sio-server --bin sio-client --bin axum-app --bin ws-echo --bin ws-rooms --bin demo)
    bindir="$root/target/release"
else
    bindir="$WIRESTATE_BIN_DIR"
fi

# check LABEL STATUS OUT EXPECTED: prints the run's lines; adds its cases to `passed`
# and `failed`, and one failure more if it exited non-zero or ran another number of
# cases than EXPECTED.
check() {
    local label="$1" status="$2" out="$3" expected="$4" p f
    grep -v '^RESTART-ME' <<< "$out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$' || true
    p=$(grep -cE '^ok ' <<< "$out" || true)
    f=$(grep -cE '^FAIL' <<< "$out" || true)
    if [ "$status" -ne 0 ]; then
        echo "FAIL $label exited with status $status"; f=$((f + 1))
    fi
    if [ $((p + f)) -lt "$expected" ] || [ "$p" -gt "$expected" ]; then
        echo "FAIL $label ran $((p + f)) cases ($p ok), $expected expected"; f=$((f + 1))
    fi
    passed=$((passed + p)); failed=$((failed + f))
}

# make_certs DIR: a test CA (ca.pem) and a certificate for 127.0.0.1 and localhost
# signed by it (cert.pem, key.pem), made with openssl, valid two days.
make_certs() (
    cd "$1"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=wirestate test CA" \
        -keyout ca.key -out ca.pem 2> /dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout key.pem -out server.csr 2> /dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out cert.pem 2> /dev/null
)

# shellcheck source=conformance/ports.sh
source "$here/ports.sh"

if [ "$what" = sio-client ] || [ "$what" = tls-client ]; then
    passed=0; failed=0; pids=()
    scheme=http; tls_args=(); ca_args=()
    if [ "$what" = tls-client ]; then
        certs="$(mktemp -d)"
        make_certs "$certs"
        scheme=https
        tls_args=(--tls-cert "$certs/cert.pem" --tls-key "$certs/key.pem")
        ca_args=(--ca "$certs/ca.pem")
        export TLS_CERT="$certs/cert.pem" TLS_KEY="$certs/key.pem"
    fi
    trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "${certs:-}"' EXIT
    for target in node wirestate; do
        port="$(free_port)"; rport="$(free_port)"
        start_server() { # PORT [recovery]
            if [ "$target" = node ]; then
                node sio-server.mjs "$1" ${2:-} > /dev/null 2>&1 &
            else
                "$bindir/sio-server" --runtime "$runtime" --addr "127.0.0.1:$1" ${2:+--recovery} "${tls_args[@]}" > /dev/null 2>&1 &
            fi
            last=$!
            pids+=("$last")
        }
        start_server "$port"; main=$last
        start_server "$rport" recovery; recovery=$last
        wait_port "$port"; wait_port "$rport"
        out="$(mktemp)"
        timeout 120 "$bindir/sio-client" --runtime "$runtime" --url "$scheme://127.0.0.1:$port" \
            --recovery-url "$scheme://127.0.0.1:$rport" "${ca_args[@]}" > "$out" 2>&1 &
        client=$!
        restarted=0
        while kill -0 "$client" 2>/dev/null; do
            if [ "$restarted" = 0 ] && grep -q '^RESTART-ME' "$out"; then
                kill -9 "$main" 2>/dev/null || true; wait "$main" 2>/dev/null || true
                sleep 0.5
                start_server "$port"; main=$last
                restarted=1
            fi
            sleep 0.1
        done
        status=0; wait "$client" || status=$?
        check "sio-client against $target" "$status" "$(sed "s/\$/ [server: $target $scheme]/" "$out")" 5
        kill "$main" "$recovery" 2>/dev/null || true; wait "$main" "$recovery" 2>/dev/null || true
        rm -f "$out"
    done
    if [ "$what" = tls-client ]; then
        # Our Engine.IO client against Node's engine.io over https:// and wss://.
        port="$(free_port)"
        node eio-server.mjs "$port" > /dev/null 2>&1 & pids+=($!)
        wait_port "$port"
        status=0
        out="$(timeout 120 "$bindir/eio-client" --runtime "$runtime" --url "https://127.0.0.1:$port" "${ca_args[@]}" 2>&1)" || status=$?
        check "eio-client against node https" "$status" "$out" 3
        # A client that does not trust the server's CA is refused.
        status=0
        out="$(timeout 60 "$bindir/eio-client" --runtime "$runtime" --url "https://127.0.0.1:$port" --ca "$certs/cert.pem" 2>&1)" || status=$?
        if [ "$status" -ne 0 ] && ! grep -q '^ok ' <<< "$out"; then
            echo "ok   eio-client refuses a server its CA does not vouch for"; passed=$((passed + 1))
        else
            echo "FAIL eio-client connected to a server it should not trust"; failed=$((failed + 1))
        fi
        echo "interop tls-client $runtime: wirestate's clients over TLS against Node's servers and sio-server"
        echo "$passed passed, $failed failed"
        [ "$failed" -eq 0 ]
        exit
    fi
    echo "interop sio-client $runtime: wirestate's Socket.IO client against Node's socket.io and sio-server"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

if [ "$what" = ws-rooms ] || [ "$what" = demo ]; then
    passed=0; failed=0
    port="$(free_port)"
    log="$(mktemp)"
    "$bindir/$what" --runtime "$runtime" --addr "127.0.0.1:$port" > "$log" 2>&1 &
    server=$!
    trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
    wait_port "$port"
    if [ "$what" = demo ]; then
        runs=("node demo-client.mjs|15" "python3 demo_client.py|10")
    else
        runs=("node ws-rooms-client.mjs|14" "python3 ws_rooms_client.py|5")
    fi
    # The demo's clients run at once (their users and rooms are their own, and the
    # 10 s timeout case then costs no more time); ws-rooms' share its rooms, so one
    # after the other.
    outs=(); pids=(); statuses=()
    for i in "${!runs[@]}"; do
        out="$(mktemp)"; outs+=("$out")
        timeout 120 ${runs[$i]%|*} "http://127.0.0.1:$port" > "$out" 2>&1 &
        pids+=($!); statuses+=(0)
        if [ "$what" != demo ]; then wait "$!" || statuses[i]=$?; fi
    done
    for i in "${!runs[@]}"; do
        run="${runs[$i]}"
        if [ "$what" = demo ]; then wait "${pids[$i]}" || statuses[i]=$?; fi
        check "${run%% *}" "${statuses[$i]}" "$(cat "${outs[$i]}")" "${run#*|}"
        rm -f "${outs[$i]}"
    done
    if ! kill -0 "$server" 2>/dev/null; then
        echo "FAIL $what exited during the run:"; cat "$log"; failed=$((failed + 1))
    fi
    if [ "$what" = demo ]; then
        echo "interop demo $runtime: npm socket.io-client and PyPI python-socketio against demo"
    else
        echo "interop ws-rooms $runtime: npm ws and PyPI websockets against ws-rooms"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

if [ "$what" = tls ]; then
    passed=0; failed=0; pids=()
    certs="$(mktemp -d)"
    trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$certs"' EXIT
    make_certs "$certs"
    # Every client trusts the test CA: Node, requests (polling) and Python's ssl
    # (websocket-client).
    export NODE_EXTRA_CA_CERTS="$certs/ca.pem" REQUESTS_CA_BUNDLE="$certs/ca.pem" SSL_CERT_FILE="$certs/ca.pem"
    tls_args=(--runtime "$runtime" --tls-cert "$certs/cert.pem" --tls-key "$certs/key.pem")
    eport="$(free_port)"; sport="$(free_port)"; rport="$(free_port)"; wport="$(free_port)"; hport="$(free_port)"
    "$bindir/eio-server" "${tls_args[@]}" --addr "127.0.0.1:$eport" > /dev/null 2>&1 & pids+=($!)
    "$bindir/sio-server" "${tls_args[@]}" --addr "127.0.0.1:$hport" --shards 2 > /dev/null 2>&1 & pids+=($!)
    "$bindir/sio-server" "${tls_args[@]}" --addr "127.0.0.1:$sport" > /dev/null 2>&1 & pids+=($!)
    "$bindir/sio-server" "${tls_args[@]}" --addr "127.0.0.1:$rport" --recovery > /dev/null 2>&1 & pids+=($!)
    "$bindir/ws-echo" "${tls_args[@]}" --no-deflate --addr "127.0.0.1:$wport" > /dev/null 2>&1 & pids+=($!)
    for p in "$eport" "$sport" "$rport" "$wport" "$hport"; do wait_port "$p"; done
    # The PyPI clients over polling only: their WebSocket transport (websocket-client
    # reading on one thread while another writes, on one ssl socket) loses messages
    # over TLS against any server, Node's socket.io included; the npm clients cover
    # wss:// here.
    runs=("node eio-client.mjs https://127.0.0.1:$eport|3" "env TRANSPORTS=polling python3 eio_client.py https://127.0.0.1:$eport|1"
          "node sio-client.mjs https://127.0.0.1:$sport|18" "env TRANSPORTS=polling python3 sio_client.py https://127.0.0.1:$sport|6"
          "node sio-client.mjs https://127.0.0.1:$rport recovery|1" "node wss-echo-client.mjs wss://127.0.0.1:$wport|1"
          "env SHARDS=2 node sio-client.mjs https://127.0.0.1:$hport|18")
    for run in "${runs[@]}"; do
        status=0
        out="$(timeout 240 ${run%|*} 2>&1)" || status=$?
        label="${run#env TRANSPORTS=polling }"
        label="${label#env SHARDS=2 }"
        label="${label%% *} over TLS"
        if [[ "$run" == *SHARDS=2* ]]; then
            label="$label [2 shards]"
            out="$(sed '/^[0-9]* passed, [0-9]* failed$/!s/$/ [2 shards]/' <<< "$out")"
        fi
        check "$label" "$status" "$out" "${run##*|}"
    done
    for pid in "${pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "FAIL a TLS server exited during the run"; failed=$((failed + 1))
        fi
    done
    echo "interop tls $runtime: npm and PyPI clients against eio-server, sio-server and ws-echo over TLS"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

port="$(free_port)"
log="$(mktemp)"
extra=""
if [ "$what" = eio ]; then
    "$bindir/eio-server" --runtime "$runtime" --addr "127.0.0.1:$port" > "$log" 2>&1 &
    clients=("node eio-client.mjs" "python3 eio_client.py")
    peers="engine.io-client (npm) and python-engineio (PyPI) against eio-server"
elif [ "$what" = sio ] || [ "$what" = axum ]; then
    bin=sio-server; [ "$what" = axum ] && bin=axum-app
    rport="$(free_port)"
    "$bindir/$bin" --runtime "$runtime" --addr "127.0.0.1:$rport" --recovery > "$log.recovery" 2>&1 &
    extra=$!
    if [ "$what" = sio ]; then
        # The same server with socket.io-msgpack-parser, for the npm client using it.
        mport="$(free_port)"
        "$bindir/$bin" --runtime "$runtime" --addr "127.0.0.1:$mport" --parser msgpack > "$log.msgpack" 2>&1 &
        extra="$extra $!"
        # The same server in two shards, one per thread: each request may be
        # accepted by either, and is carried to the shard that owns its session.
        sport="$(free_port)"
        "$bindir/$bin" --runtime "$runtime" --addr "127.0.0.1:$sport" --shards 2 > "$log.shards" 2>&1 &
        extra="$extra $!"
    fi
    "$bindir/$bin" --runtime "$runtime" --addr "127.0.0.1:$port" > "$log" 2>&1 &
    clients=("node sio-client.mjs" "python3 sio_client.py")
    peers="socket.io-client (npm) and python-socketio (PyPI) against $bin"
else
    node eio-server.mjs "$port" > "$log" 2>&1 &
    clients=("$bindir/eio-client --runtime $runtime --url")
    peers="wirestate's client against Node's engine.io server"
fi
server=$!
trap 'kill $server $extra 2>/dev/null || true; wait $server $extra 2>/dev/null || true; rm -f "$log" "$log.recovery" "$log.msgpack" "$log.shards"' EXIT
for p in $port ${rport:-} ${mport:-} ${sport:-}; do
    for _ in $(seq 1 100); do
        python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),0.2).close()' "$p" 2>/dev/null && break
        sleep 0.1
    done
done

passed=0; failed=0
runs=()
for client in "${clients[@]}"; do runs+=("$client http://127.0.0.1:$port"); done
[ "$what" != eio ] && [ "$what" != eio-client ] && runs+=("node sio-client.mjs http://127.0.0.1:$rport recovery")
[ -n "${mport:-}" ] && runs+=("env PARSER=msgpack node sio-client.mjs http://127.0.0.1:$mport")
if [ -n "${sport:-}" ]; then
    for client in "${clients[@]}"; do runs+=("env SHARDS=2 $client http://127.0.0.1:$sport"); done
fi
health=""
if [ "$what" = axum ]; then
    # The application's own route, on the same port, while the clients run.
    python3 - "$port" > "$log.health" 2>&1 <<'PY' &
import sys, time, urllib.request
ok = bad = 0
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=5) as r:
            good = r.status == 200 and r.read() == b"ok"
    except Exception:
        good = False
    ok, bad = ok + good, bad + (not good)
    print(ok, bad, flush=True)
    time.sleep(0.1)
PY
    health=$!
fi
# The number of cases each client run has.
expected() {
    case "$1" in
        *recovery) echo 1 ;;
        "node eio-client.mjs"*|"python3 eio_client.py"*|*/eio-client*) echo 3 ;;
        "node sio-client.mjs"*|"env PARSER=msgpack node sio-client.mjs"*) echo 18 ;;
        "env SHARDS=2 node sio-client.mjs"*|"env SHARDS=2 python3 sio_client.py"*) echo 18 ;;
        "python3 sio_client.py"*) echo 18 ;;
        *) echo "no expected count for: $1" >&2; echo 999 ;;
    esac
}
for run in "${runs[@]}"; do
    client="${run%% http*}"
    status=0
    out="$(timeout 240 $run 2>&1)" || status=$?
    [[ "$run" == *PARSER=msgpack* ]] && out="$(sed '/^[0-9]* passed, [0-9]* failed$/!s/$/ [msgpack parser]/' <<< "$out")"
    [[ "$run" == *SHARDS=2* ]] && out="$(sed '/^[0-9]* passed, [0-9]* failed$/!s/$/ [2 shards]/' <<< "$out")"
    check "$client" "$status" "$out" "$(expected "$run")"
done
if [ -n "$health" ]; then
    kill "$health" 2>/dev/null || true; wait "$health" 2>/dev/null || true
    read -r ok bad < <(tail -n 1 "$log.health")
    if [ "${ok:-0}" -gt 0 ] && [ "${bad:-1}" -eq 0 ]; then
        echo "ok GET /health answered $ok times during the run"; passed=$((passed + 1))
    else
        echo "FAIL GET /health: ${ok:-0} good answers, ${bad:-?} bad"; failed=$((failed + 1))
    fi
    rm -f "$log.health"
fi
if ! kill -0 "$server" 2>/dev/null; then
    echo "FAIL the server exited during the run:"; cat "$log"; failed=$((failed + 1))
fi
for pid in $extra; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "FAIL another server exited during the run:"; cat "$log.recovery" "$log.msgpack" "$log.shards" 2>/dev/null; failed=$((failed + 1))
    fi
done
echo "interop $what $runtime: $peers"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
