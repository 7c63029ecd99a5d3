#!/usr/bin/env bash
# Broadcast through Redis, two nodes: wirestate (bench-server sio-wirestate-tokio
# --redis) against Node's socket.io 4.8 with @socket.io/redis-adapter 8.3
# (conformance/interop/sio-echo-server.mjs with REDIS_URL), in the same run on one
# redis-server (Debian's, on a free loopback port).
#
#   benches/cluster.sh          ROUNDS=3 SECS=3 SIZES="100 1000" by default
#
# Node A has the publisher, node B the N recipients (room `r`): every delivery crosses
# Redis. Reported per case (medians of the rounds, interleaved): deliveries/s, p99
# publish-to-delivery latency, and CPU µs per delivery of the two nodes (user and
# system apart) and of redis-server. Raw lines: target/bench-cluster/raw.txt.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds="${ROUNDS:-3}"; secs="${SECS:-3}"; sizes="${SIZES:-100 1000}"
out="$root/target/bench-cluster"; mkdir -p "$out"; raw="$out/raw.txt"; : > "$raw"
cargo build --release --quiet -p wirestate-benches --bin bench-server --bin load
bin="$root/target/release"
(cd conformance/interop && { [ -d node_modules/@socket.io/redis-adapter ] || npm ci --no-audit --no-fund --loglevel=error >&2; })

# shellcheck source=conformance/ports.sh
source "$root/conformance/ports.sh"
work="$(mktemp -d)"
rport="$(free_port)"
redis-server --port "$rport" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
    --dir "$work" --pidfile "$work/redis.pid" > /dev/null
wait_port "$rport"
redis_pid="$(cat "$work/redis.pid")"
nodes=()
cleanup() { kill "${nodes[@]}" 2>/dev/null || true; redis-cli -p "$rport" shutdown nosave > /dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

start_node() { # IMPL PORT
    case "$1" in
        wirestate) "$bin/bench-server" --impl sio-wirestate-tokio --addr "127.0.0.1:$2" --redis "redis://127.0.0.1:$rport" 2>/dev/null & ;;
        node) REDIS_URL="redis://127.0.0.1:$rport" node conformance/interop/sio-echo-server.mjs "$2" & ;;
    esac
    nodes+=($!); last=$!
}

for round in $(seq 1 "$rounds"); do
    for impl in wirestate node; do
        pa="$(free_port)"; pb="$(free_port)"
        start_node "$impl" "$pa"; a=$last
        start_node "$impl" "$pb"; b=$last
        wait_port "$pa"; wait_port "$pb"; sleep 0.5
        for n in $sizes; do
            line="$(timeout $((secs + 120)) "$bin/load" --addr "127.0.0.1:$pb" --publish-addr "127.0.0.1:$pa" \
                --sio-broadcast --conns "$n" --size 20 --secs "$secs" --server-pid "$b" \
                --cluster-pids "$a,$b" --redis-pid "$redis_pid" | tr '\n' ' ')"
            echo "impl=$impl round=$round case=cluster-bcast-${n}x20B $line" | tee -a "$raw"
        done
        kill "$a" "$b"; wait "$a" "$b" 2>/dev/null || true
    done
done

python3 - "$raw" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(re.findall(r"(\w+)=(\S+)", line))
    rows.setdefault(kv["case"], {}).setdefault(kv["impl"], []).append(kv)
def med(xs, k):
    return statistics.median(float(x[k]) for x in xs)
print("| case | impl | deliveries/s | p99 µs | nodes user µs/delivery | nodes sys µs/delivery | redis µs/delivery |")
print("|---|---|---:|---:|---:|---:|---:|")
for case in sorted(rows, key=lambda c: int(re.search(r"(\d+)x", c).group(1))):
    by = rows[case]
    for impl in ("wirestate", "node"):
        if impl not in by: continue
        xs = by[impl]
        print(f"| {case} | {impl} | {med(xs,'deliveries_per_s'):.0f} | {med(xs,'p99_us'):.0f} | "
              f"{med(xs,'cluster_user_us_per_delivery'):.3f} | {med(xs,'cluster_sys_us_per_delivery'):.3f} | "
              f"{med(xs,'redis_us_per_delivery'):.3f} |")
    if "wirestate" in by and "node" in by:
        w, n = by["wirestate"], by["node"]
        ratio = med(w, "deliveries_per_s") / max(med(n, "deliveries_per_s"), 1)
        cpu = lambda xs: med(xs, "cluster_user_us_per_delivery") + med(xs, "cluster_sys_us_per_delivery")
        print(f"| {case} | wirestate/node | ×{ratio:.2f} | | CPU ×{cpu(w)/max(cpu(n),1e-9):.2f} (user+sys) | | |")
PY
