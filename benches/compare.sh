#!/usr/bin/env bash
# Loopback comparison of WebSocket echo servers, ours and peers, on this machine, in
# one run: every case against every server in turn (ROUNDS rounds, interleaved), then
# a Markdown table of medians with ratios against the best peer.
#
#   benches/compare.sh            ROUNDS=3 SECS=3 by default (about 10 minutes)
#
# Servers (single-threaded runtimes, TCP_NODELAY): wirestate on tokio (`recv`, and
# `-lent`: `recv_with`, each message lent in place; `-router`: a `Router` route whose
# `on_message` sends the message back) and on smol, fastwebsockets, tokio-websockets, tokio-tungstenite (crates.io, `--features peers`).
# Client: `load` (pre-masked frames, one core). Reported per case: messages/s, p99
# round trip, and server CPU µs per message (from /proc), which is the figure that
# matters when the client is the bottleneck (it usually is on 2 cores: see the
# client_cpu column of the raw lines, kept in target/bench-compare/raw.txt), split into
# user and system CPU: the kernel's TCP work is most of the total on loopback, so the
# user column (and its ratio) is what the code controls.
# Compressed echo (permessage-deflate, 1 KiB and 16 KiB JSON-like text, the client
# offering client_no_context_takeover): ours against Node's `ws` 8 (none of the Rust
# peers above implements permessage-deflate).
# Idle memory: server RSS growth per connection with 10,000 open connections.
# Socket.IO (ours on tokio with the raw-payload handlers and with typed handlers
# (`sio-wirestate-tokio-typed`: `msg.data::<Value>()`, as applications write them), and
# mounted in axum 0.8 through the tower layer; socketioxide 0.18 on axum with tokio current-thread and TCP_NODELAY, Node's socket.io 4.8 from conformance/interop, npm ci on first use):
# echo with ack (100 × 20 B), over WebSocket and over HTTP long-polling; broadcast to a room of BCAST_SIZES recipients (1,000 and
# 10,000 by default) with 20 B and 1 KiB strings, one broadcast in flight, and to 1,000
# recipients on long-polling; and server RSS per idle Socket.IO session.
#
#   BASELINE=REV benches/compare.sh
# also builds bench-server at git revision REV (in a worktree under target/) and runs
# it as `baseline-<impl>` beside each of our servers, interleaved in the same rounds:
# before/after figures of a change from one run.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds="${ROUNDS:-3}"
secs="${SECS:-3}"
idle="${IDLE_CONNS:-10000}"
bcast_sizes="${BCAST_SIZES:-1000 10000}"
out="$root/target/bench-compare"
mkdir -p "$out"
raw="$out/raw.txt"
: > "$raw"
cargo build --release --quiet -p wirestate-benches --features peers --bin bench-server --bin load
bin="$root/target/release"
impls=(wirestate-tokio wirestate-tokio-lent wirestate-tokio-router wirestate-smol fastwebsockets tokio-websockets tokio-tungstenite)
deflate_impls=(wirestate-tokio-deflate ws-node-deflate)
sio_impls=(sio-wirestate-tokio sio-wirestate-tokio-typed sio-wirestate-axum sio-socketioxide sio-node)
baseline_bin=""
if [ -n "${BASELINE:-}" ]; then
    tree="$root/target/bench-baseline"
    want="$(git rev-parse "$BASELINE^{commit}")"
    if [ "$(git -C "$tree" rev-parse HEAD 2>/dev/null)" != "$want" ]; then
        git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
        git worktree prune
        git worktree add --detach "$tree" "$want" >&2
    fi
    (cd "$tree" && cargo build --release --quiet -p wirestate-benches --features peers --bin bench-server)
    baseline_bin="$tree/target/release"
    impls+=(baseline-wirestate-tokio baseline-wirestate-smol)
    deflate_impls+=(baseline-wirestate-tokio-deflate)
    sio_impls+=(baseline-sio-wirestate-tokio)
fi
# conns size pipeline
cases=("100 20 1" "10 1024 1" "10 16384 1" "500 16384 1" "10 20 16")
port=9190

# start_server IMPL: starts IMPL on $port (Node's servers for the ws-node-* and
# sio-node peers, bench-server for the rest) and waits until it accepts connections.
start_server() {
    case "$1" in
        ws-node-deflate) node conformance/interop/ws-echo-server.mjs "$port" & server=$! ;;
        sio-node) node conformance/interop/sio-echo-server.mjs "$port" & server=$! ;;
        baseline-*) "$baseline_bin/bench-server" --impl "${1#baseline-}" --addr "127.0.0.1:$port" 2>/dev/null & server=$! ;;
        *) "$bin/bench-server" --impl "$1" --addr "127.0.0.1:$port" 2>/dev/null & server=$! ;;
    esac
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "server $1 did not start" >&2
    return 1
}
stop_server() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }

for round in $(seq 1 "$rounds"); do
    for c in "${cases[@]}"; do
        read -r conns size pipeline <<< "$c"
        for impl in "${impls[@]}"; do
            start_server "$impl"
            line="$(timeout $((secs + 30)) "$bin/load" --addr "127.0.0.1:$port" --conns "$conns" \
                --size "$size" --pipeline "$pipeline" --secs "$secs" --server-pid "$server" || echo failed=1)"
            stop_server
            echo "impl=$impl round=$round case=${conns}x${size}B/p${pipeline} $line" | tee -a "$raw"
        done
    done
done
# Compressed echo. Node's servers (ws, socket.io) come from conformance/interop.
if [ ! -d conformance/interop/node_modules/ws ] || [ ! -d conformance/interop/node_modules/socket.io ]; then
    (cd conformance/interop && npm ci --no-audit --no-fund --loglevel=error) >&2
fi
for round in $(seq 1 "$rounds"); do
    for size in 1024 16384; do
        for impl in "${deflate_impls[@]}"; do
            start_server "$impl"
            line="$(timeout $((secs + 30)) "$bin/load" --addr "127.0.0.1:$port" --deflate --conns 10 \
                --size "$size" --secs "$secs" --server-pid "$server" || echo failed=1)"
            stop_server
            echo "impl=$impl round=$round case=deflate-10x${size}B/p1 $line" | tee -a "$raw"
        done
    done
done

for impl in "${impls[@]}"; do
    start_server "$impl"
    line="$(timeout 120 "$bin/load" --addr "127.0.0.1:$port" --idle "$idle" --server-pid "$server" || echo failed=1)"
    stop_server
    echo "impl=$impl round=1 case=idle $line" | tee -a "$raw"
done

# Socket.IO echo with ack (Node's socket.io installed with ws above).
for round in $(seq 1 "$rounds"); do
    for impl in "${sio_impls[@]}"; do
        start_server "$impl"
        line="$(timeout $((secs + 30)) "$bin/load" --addr "127.0.0.1:$port" --sio --conns 100 \
            --size 20 --secs "$secs" --server-pid "$server" || echo failed=1)"
        stop_server
        echo "impl=$impl round=$round case=sio-echo-ack-100x20B $line" | tee -a "$raw"
        start_server "$impl"
        line="$(timeout $((secs + 30)) "$bin/load" --addr "127.0.0.1:$port" --polling --conns 100 \
            --size 20 --secs "$secs" --server-pid "$server" || echo failed=1)"
        stop_server
        echo "impl=$impl round=$round case=sio-polling-echo-ack-100x20B $line" | tee -a "$raw"
    done
    for n in $bcast_sizes; do
        for size in 20 1024; do
            for impl in "${sio_impls[@]}"; do
                start_server "$impl"
                line="$(timeout $((secs + 90)) "$bin/load" --addr "127.0.0.1:$port" --sio-broadcast \
                    --conns "$n" --size "$size" --secs "$secs" --server-pid "$server" || echo failed=1)"
                stop_server
                echo "impl=$impl round=$round case=sio-bcast-${n}x${size}B $line" | tee -a "$raw"
            done
        done
    done
    # Broadcast to recipients on HTTP long-polling (1,000 of them, 20 B).
    for impl in "${sio_impls[@]}"; do
        start_server "$impl"
        line="$(timeout $((secs + 90)) "$bin/load" --addr "127.0.0.1:$port" --sio-broadcast --polling \
            --conns 1000 --size 20 --secs "$secs" --server-pid "$server" || echo failed=1)"
        stop_server
        echo "impl=$impl round=$round case=sio-bcast-polling-1000x20B $line" | tee -a "$raw"
    done
done
for impl in "${sio_impls[@]}"; do
    start_server "$impl"
    line="$(timeout 180 "$bin/load" --addr "127.0.0.1:$port" --sio --idle "$idle" --server-pid "$server" || echo failed=1)"
    stop_server
    echo "impl=$impl round=1 case=sio-idle $line" | tee -a "$raw"
done

python3 - "$raw" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    rows.setdefault(kv["case"], {}).setdefault(kv["impl"], []).append(kv)
ours = ["wirestate-tokio", "wirestate-tokio-lent", "wirestate-tokio-router", "wirestate-smol", "sio-wirestate-tokio", "sio-wirestate-tokio-typed", "sio-wirestate-axum", "wirestate-tokio-deflate"]
ours += ["baseline-" + o for o in ours]
def med(runs, key):
    vals = [float(r[key].rstrip("%")) for r in runs if key in r]
    vals = [v for v in vals if v > 0]
    return statistics.median(vals) if vals else float("nan")
def ok(v):
    return v == v and v > 0
def bold(impl):
    return f"**{impl}**" if impl in ours else impl
def num(v, fmt="{:.2f}"):
    return fmt.format(v) if ok(v) else "–"
def cheaper(peer_runs, runs, key):
    # The peer's figure over ours: above 1, ours costs less.
    p, o = med(peer_runs, key), med(runs, key)
    return f"{p / o:.2f}×" if ok(p) and ok(o) else "–"
echo_cases = [c for c in rows if not c.startswith("sio-bcast") and not c.endswith("idle")]
if echo_cases:
    print("| case | server | msgs/s | p99 µs | server CPU µs/msg | user µs/msg | system µs/msg | client CPU | vs best peer (msgs/s) | vs best peer (CPU/msg) | vs best peer (user CPU/msg) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for case in echo_cases:
    impls = rows[case]
    peers = {i: r for i, r in impls.items() if i not in ours}
    rated = [i for i in peers if ok(med(peers[i], "msgs_per_s"))]
    costed = [i for i in peers if ok(med(peers[i], "server_cpu_us_per_msg"))]
    if not rated or not costed:
        continue
    best_rate = max(rated, key=lambda i: med(peers[i], "msgs_per_s"))
    best_cpu = min(costed, key=lambda i: med(peers[i], "server_cpu_us_per_msg"))
    users = [i for i in peers if ok(med(peers[i], "server_user_us_per_msg"))]
    best_user = min(users, key=lambda i: med(peers[i], "server_user_us_per_msg")) if users else None
    for impl, runs in impls.items():
        rate, cpu = med(runs, "msgs_per_s"), med(runs, "server_cpu_us_per_msg")
        vs_rate = rate / med(peers[best_rate], "msgs_per_s")
        vs_cpu = med(peers[best_cpu], "server_cpu_us_per_msg") / cpu if cpu else float("nan")
        vs_user = f"{cheaper(peers[best_user], runs, 'server_user_us_per_msg')} ({best_user})" if best_user else "–"
        print(f"| {case} | {bold(impl)} | {rate:,.0f} | {med(runs, 'p99_us'):,.0f} | {cpu:.2f} | "
              f"{num(med(runs, 'server_user_us_per_msg'))} | {num(med(runs, 'server_sys_us_per_msg'))} | {med(runs, 'client_cpu'):.0f}% | "
              f"{vs_rate:.2f}× ({best_rate}) | {vs_cpu:.2f}× ({best_cpu}) | {vs_user} |")
bcast = [c for c in rows if c.startswith("sio-bcast")]
if bcast:
    print()
    print("Broadcast: ratios are the peer's figure over ours (above 1: ours uses less CPU per delivery / has the lower p99).")
    print()
    print("| case | server | deliveries/s | p50 µs | p99 µs | last delivery µs | server CPU µs/delivery | user µs/delivery | system µs/delivery | client CPU | CPU vs socketioxide | user CPU vs socketioxide | CPU vs node | p99 vs socketioxide | p99 vs node |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case in bcast:
        impls = rows[case]
        def ratio(peer, key, impl):
            return cheaper(impls.get(peer, []), impls[impl], key)
        for impl, runs in impls.items():
            print(f"| {case} | {bold(impl)} | {med(runs, 'deliveries_per_s'):,.0f} | {med(runs, 'p50_us'):,.0f} | {med(runs, 'p99_us'):,.0f} | "
                  f"{med(runs, 'last_delivery_mean_us'):,.0f} | {med(runs, 'server_cpu_us_per_delivery'):.2f} | "
                  f"{num(med(runs, 'server_user_us_per_delivery'), '{:.3f}')} | {num(med(runs, 'server_sys_us_per_delivery'), '{:.3f}')} | {med(runs, 'client_cpu'):.0f}% | "
                  f"{ratio('sio-socketioxide', 'server_cpu_us_per_delivery', impl)} | {ratio('sio-socketioxide', 'server_user_us_per_delivery', impl)} | "
                  f"{ratio('sio-node', 'server_cpu_us_per_delivery', impl)} | "
                  f"{ratio('sio-socketioxide', 'p99_us', impl)} | {ratio('sio-node', 'p99_us', impl)} |")
for case, label in (("idle", "WebSocket connection"), ("sio-idle", "Socket.IO session")):
    if case not in rows:
        continue
    print()
    print(f"Ratios: the best peer's bytes over this server's (above 1: less memory than it).")
    print()
    print(f"| idle | server | bytes per idle {label} | vs best peer |")
    print("| --- | --- | ---: | ---: |")
    impls = rows[case]
    peer_bytes = {i: med(r, "bytes_per_conn") for i, r in impls.items() if i not in ours}
    peer_bytes = {i: b for i, b in peer_bytes.items() if ok(b)}
    best = min(peer_bytes, key=peer_bytes.get) if peer_bytes else None
    for impl, runs in impls.items():
        b = med(runs, "bytes_per_conn")
        vs = f"{peer_bytes[best] / b:.2f}× ({best})" if best and ok(b) else "–"
        print(f"| {runs[0].get('idle_conns','?')} | {bold(impl)} | {b:,.0f} | {vs} |")
PY
