#!/usr/bin/env bash
# Plain WebSocket broadcast, ours against Node's `ws`, on this machine, in one run:
# `ws-rooms` (the router: the `/ws/chat` handler as an application writes it, typed
# messages through `on_json`, the reply serialized with serde) on tokio and on smol,
# and the same fan-out written with Node's `ws` 8 (conformance/interop/
# ws-rooms-server.mjs) and with uWebSockets.js's pub/sub (benches/uws/: its npm
# repack `uws-pack`, the same native binaries), all single-threaded. The client is
# `load --ws-broadcast`: RECIPIENTS connections (1,000 and 10,000 by default) on
# /ws/chat, one publisher, one broadcast in flight, 20 B and 1 KiB texts.
#
#   benches/ws-broadcast.sh        ROUNDS=3 SECS=3 by default (about 5 minutes)
#
# Reported per case (medians of the rounds): deliveries/s, p50/p99 publish-to-delivery,
# and the server's CPU per delivery, user and system apart, with the ratios of the
# peers' CPU per delivery to ours (above 1: ours costs less). Raw lines:
# target/bench-ws-broadcast/raw.txt.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds="${ROUNDS:-3}"
secs="${SECS:-3}"
sizes="${RECIPIENTS:-1000 10000}"
out="$root/target/bench-ws-broadcast"
mkdir -p "$out"
raw="$out/raw.txt"
: > "$raw"
cargo build --release --quiet -p wirestate-benches --bin load
cargo build --release --quiet -p wirestate-conformance --bin ws-rooms
bin="$root/target/release"
(cd conformance/interop && { [ -d node_modules/ws ] || npm ci --no-audit --no-fund --loglevel=error >&2; })
(cd benches/uws && { [ -d node_modules/uws-pack ] || npm ci --no-audit --no-fund --loglevel=error >&2; })
# shellcheck source=conformance/ports.sh
source "$root/conformance/ports.sh"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

server=""
start_server() { # IMPL
    port="$(free_port)"
    case "$1" in
        ws-rooms-tokio) "$bin/ws-rooms" --runtime tokio --addr "127.0.0.1:$port" 2> /dev/null & ;;
        ws-rooms-smol) "$bin/ws-rooms" --runtime smol --addr "127.0.0.1:$port" 2> /dev/null & ;;
        ws-node) node conformance/interop/ws-rooms-server.mjs "$port" 2> /dev/null & ;;
        uws-node) node benches/uws/uws-rooms-server.mjs "$port" 2> /dev/null & ;;
    esac
    server=$!
    wait_port "$port"
}
stop_server() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
trap stop_server EXIT

for round in $(seq 1 "$rounds"); do
    for n in $sizes; do
        for size in 20 1024; do
            for impl in ws-rooms-tokio ws-rooms-smol ws-node uws-node; do
                start_server "$impl"
                line="$(timeout $((secs + 120)) "$bin/load" --addr "127.0.0.1:$port" --ws-broadcast \
                    --conns "$n" --size "$size" --secs "$secs" --server-pid "$server" || echo failed=1)"
                stop_server
                echo "impl=$impl round=$round case=ws-bcast-${n}x${size}B $line" | tee -a "$raw"
            done
        done
    done
done

python3 - "$raw" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    kv = dict(p.split("=", 1) for p in line.split() if "=" in p)
    rows.setdefault(kv["case"], {}).setdefault(kv["impl"], []).append(kv)
def med(runs, key):
    vals = [float(r[key].rstrip("%")) for r in runs if key in r]
    vals = [v for v in vals if v > 0]
    return statistics.median(vals) if vals else float("nan")
print()
print("| case | server | deliveries/s | p50 µs | p99 µs | CPU µs/delivery (user + sys) | client CPU | ws's CPU over this | uWS's CPU over this |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for case, impls in rows.items():
    def ratio(peer, cpu):
        p = med(impls.get(peer, []), "server_cpu_us_per_delivery")
        return f"{p / cpu:.2f}×" if p == p and cpu == cpu and cpu > 0 else "–"
    for impl, runs in impls.items():
        cpu = med(runs, "server_cpu_us_per_delivery")
        name = impl if impl.endswith("-node") else f"**{impl}**"
        print(f"| {case} | {name} | {med(runs, 'deliveries_per_s'):,.0f} | {med(runs, 'p50_us'):,.0f} | {med(runs, 'p99_us'):,.0f} | "
              f"{cpu:.3f} ({med(runs, 'server_user_us_per_delivery'):.3f} + {med(runs, 'server_sys_us_per_delivery'):.3f}) | "
              f"{med(runs, 'client_cpu'):.0f}% | {ratio('ws-node', cpu)} | {ratio('uws-node', cpu)} |")
PY
