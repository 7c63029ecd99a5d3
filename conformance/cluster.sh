#!/usr/bin/env bash
# Socket.IO servers in a cluster on one Redis (Debian's redis-server, started here on a
# free loopback port), driven by npm socket.io-client through the cluster handlers of
# `sio-server --redis` (interop/cluster-client.mjs):
#
#   conformance/cluster.sh tokio|smol
#
# 1. two wirestate servers (the runtime given) on one Redis: broadcasts, rooms,
#    fetch-room, server-side-emit, sockets-join, count-acks, disconnect-room across
#    them, and npm @socket.io/redis-emitter and our `redis-emitter` reaching both;
# 2. a mixed cluster, wirestate and Node's socket.io 4.8 with @socket.io/redis-adapter
#    8.3 (interop/sio-server.mjs), the same cases asked of each side;
# 3. the same in the sharded adapter's protocol (createShardedAdapter, SSUBSCRIBE and
#    SPUBLISH), subscription modes dynamic and static, wirestate pairs and mixed (the
#    emitters left out: they speak the classic channels only);
# 4. faults: a server started while Redis is down serves alone and says so; it joins
#    once Redis is up; a Redis restart mid-run (local delivery goes on; the cluster
#    works again after it); a server killed (the other's requests do not wait for it);
# 5. a Redis Cluster of three primaries (sharded protocol, channels spread over the
#    primaries by hash slot): wirestate pairs, mixed with Node (whose node-redis
#    cluster client the adapter drives), and a slot moved to another primary mid-run
#    (wirestate servers follow it: Node's client does not resubscribe, so that case
#    runs wirestate pairs);
# and in 1, 3 and 5 a client behind a proxy that sends each request to either server
# (no sticky sessions); 1 again with servers of two shards each (`--shards 2`, each
# shard a node of the cluster).
#
# Ends with `N passed, M failed`. WIRESTATE_BIN_DIR: prebuilt binaries.
set -euo pipefail

runtime="${1:-}"
case "$runtime" in tokio|smol) ;; *) echo "usage: $0 tokio|smol" >&2; exit 2 ;; esac
[ -n "${WIRESTATE_BIN_DIR:-}" ] && WIRESTATE_BIN_DIR="$(cd "$WIRESTATE_BIN_DIR" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$here/interop"
if ! command -v redis-server > /dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server > /dev/null ||
            { apt-get update -q > /dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server > /dev/null; }
    else
        echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1
    fi
fi
if [ ! -d node_modules/@socket.io/redis-adapter ] || [ ! -d node_modules/@socket.io/redis-emitter ] ||
   [ ! -d node_modules/redis ] || [ ! -d node_modules/socket.io-client ]; then
    npm ci --no-audit --no-fund --loglevel=error >&2
fi
if [ -z "${WIRESTATE_BIN_DIR:-}" ]; then
    (cd "$root" && cargo build --release --quiet -p wirestate-conformance --bin sio-server --bin redis-emitter)
    bindir="$root/target/release"
else
    bindir="$WIRESTATE_BIN_DIR"
fi

# shellcheck source=conformance/ports.sh
source "$here/ports.sh"

export RUST_EMITTER="$bindir/redis-emitter --runtime $runtime"
work="$(mktemp -d)"
pids=()
rport="$(free_port)"
redis_url="redis://127.0.0.1:$rport"
redis_up() {
    redis-server --port "$rport" --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
        --dir "$work" --pidfile "$work/redis.pid" > /dev/null
    wait_port "$rport"
}
redis_down() { redis-cli -p "$rport" shutdown nosave > /dev/null 2>&1 || true; sleep 0.2; }
cports=()
cluster_down() {
    for p in "${cports[@]}"; do redis-cli -p "$p" shutdown nosave > /dev/null 2>&1 || true; done
}
cleanup() { kill "${pids[@]}" 2>/dev/null || true; redis_down; cluster_down; rm -rf "$work"; }
trap cleanup EXIT

# Servers: `wirestate NAME PORT` or `node_server NAME PORT`; logs in $work/NAME.log.
# With SHARDED=static|dynamic|dynamic-private set, they speak the sharded protocol.
wirestate() {
    local sharded=()
    [ -n "${SHARDED:-}" ] && sharded=(--sharded --subscription-mode "$SHARDED")
    [ -n "${REDIS_CLUSTER:-}" ] && sharded+=(--redis-cluster)
    [ -n "${SHARDS:-}" ] && sharded+=(--shards "$SHARDS")
    RUST_LOG=wirestate_async::redis=info "$bindir/sio-server" --runtime "$runtime" \
        --addr "127.0.0.1:$2" --redis "$redis_url" "${sharded[@]}" > "$work/$1.log" 2>&1 &
    pids+=($!); eval "pid_$1=$!"
}
node_server() {
    REDIS_URL="$redis_url" node sio-server.mjs "$2" > "$work/$1.log" 2>&1 &
    pids+=($!); eval "pid_$1=$!"
}
# The number of servers in the cluster of `/`: subscribers of its request channel
# (classic) or of its channel (sharded).
servers() {
    if [ -n "${REDIS_CLUSTER:-}" ]; then
        # Each primary counts its own subscribers; the channel lives on one.
        local n=0 p
        for p in "${cports[@]}"; do
            n=$((n + $(redis-cli -p "$p" pubsub shardnumsub 'socket.io#/#' 2>/dev/null | tail -1)))
        done
        echo "$n"
    elif [ -n "${SHARDED:-}" ]; then
        redis-cli -p "$rport" pubsub shardnumsub 'socket.io#/#' 2>/dev/null | tail -1
    else
        redis-cli -p "$rport" pubsub numsub 'socket.io-request#/#' 2>/dev/null | tail -1
    fi
}
# Waits for N servers subscribed, and each server's two connections (it publishes on
# one, subscribes on the other: both must be back after a restart).
wait_servers() {
    local want=$(($1 * 2 + 1)) clients
    for _ in $(seq 1 150); do
        if [ -n "${REDIS_CLUSTER:-}" ]; then
            clients="$want" # spread over the primaries
        else
            clients="$(redis-cli -p "$rport" info clients 2>/dev/null | tr -d '\r' | sed -n 's/^connected_clients://p')"
        fi
        [ "$(servers)" = "$1" ] && [ "$clients" = "$want" ] && return 0
        sleep 0.1
    done
    echo "FAIL waited for $1 servers in the cluster, saw $(servers)"; failed=$((failed + 1)); return 1
}

passed=0; failed=0
# run LABEL EXPECTED ARGS...: one cluster-client run, its lines labelled.
run() {
    local label="$1" expected="$2" out status=0 p f; shift 2
    out="$(timeout 120 node cluster-client.mjs "$@" 2>&1)" || status=$?
    grep -vE '^[0-9]+ passed, [0-9]+ failed$' <<< "$out" | sed "s/\$/ [$label]/" || true
    p=$(grep -cE '^ok ' <<< "$out" || true); f=$(grep -cE '^FAIL' <<< "$out" || true)
    if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then echo "FAIL $label exited with $status"; f=1; fi
    if [ $((p + f)) -ne "$expected" ]; then echo "FAIL $label ran $((p + f)) cases, $expected expected"; f=$((f + 1)); fi
    passed=$((passed + p)); failed=$((failed + f))
}
expect() { # LABEL COMMAND...: a check of this script
    local label="$1"; shift
    if "$@"; then echo "ok $label"; passed=$((passed + 1)); else echo "FAIL $label"; failed=$((failed + 1)); fi
}

# cases PREFIX N: wirestate servers A and B (N cases, then no sticky sessions), then A
# and Node's N, each side asked; A is left running on $pa.
cases() {
    local prefix="$1" n="$2"
    pa="$(free_port)"; pb="$(free_port)"; pn="$(free_port)"
    wirestate A "$pa"; wirestate B "$pb"
    wait_port "$pa"; wait_port "$pb"; wait_servers 2
    run "${prefix}wirestate+wirestate" "$n" "http://127.0.0.1:$pa" "http://127.0.0.1:$pb" "$redis_url"
    SERVER_PIDS="$pid_A $pid_B" run "${prefix}no sticky sessions" 4 nosticky "http://127.0.0.1:$pa" "http://127.0.0.1:$pb"
    kill "$pid_B"; wait "$pid_B" 2>/dev/null || true
    node_server N "$pn"
    wait_port "$pn"; wait_servers 2
    run "${prefix}wirestate+node" "$n" "http://127.0.0.1:$pa" "http://127.0.0.1:$pn" "$redis_url"
    run "${prefix}node+wirestate" "$n" "http://127.0.0.1:$pn" "http://127.0.0.1:$pa" "$redis_url"
    kill "$pid_N"; wait "$pid_N" 2>/dev/null || true
}

# 1, 2. Two wirestate servers, then mixed with Node.
redis_up
cases "" 16
kill "$pid_A"; wait "$pid_A" 2>/dev/null || true

# 1b. Two wirestate servers of two shards each: every shard a node of the cluster.
export SHARDS=2
pa="$(free_port)"; pb="$(free_port)"
wirestate A "$pa"; wirestate B "$pb"
wait_port "$pa"; wait_port "$pb"; wait_servers 4
NODES=4 run "2 shards each: wirestate+wirestate" 16 "http://127.0.0.1:$pa" "http://127.0.0.1:$pb" "$redis_url"
SERVER_PIDS="$pid_A $pid_B" run "2 shards each: no sticky sessions" 4 nosticky "http://127.0.0.1:$pa" "http://127.0.0.1:$pb"
kill "$pid_A" "$pid_B"; wait "$pid_A" "$pid_B" 2>/dev/null || true
unset SHARDS

# 3. The sharded protocol.
export SHARDED=dynamic
cases "sharded dynamic: " 11
kill "$pid_A"; wait "$pid_A" 2>/dev/null || true
export SHARDED=static
pa="$(free_port)"; pn="$(free_port)"
wirestate A "$pa"; node_server N "$pn"
wait_port "$pa"; wait_port "$pn"; wait_servers 2
run "sharded static: node+wirestate" 11 "http://127.0.0.1:$pn" "http://127.0.0.1:$pa" "$redis_url"
kill "$pid_N" "$pid_A"; wait "$pid_N" "$pid_A" 2>/dev/null || true
unset SHARDED

# 4. Faults.
redis_down
pa="$(free_port)"; pb="$(free_port)"
wirestate A "$pa"
wait_port "$pa"
run "redis down at start" 3 probe "http://127.0.0.1:$pa"
expect "a server without redis says so in its log" grep -q "cannot reach redis; serving locally" "$work/A.log"
redis_up
wirestate B "$pb"
wait_port "$pb"; wait_servers 2
run "redis up later" 16 "http://127.0.0.1:$pa" "http://127.0.0.1:$pb" "$redis_url"
redis_down
run "redis gone mid-run" 3 probe "http://127.0.0.1:$pa"
expect "the lost connection is logged" grep -q "lost the redis connection; reconnecting" "$work/A.log"
redis_up
wait_servers 2
run "after a redis restart" 16 "http://127.0.0.1:$pb" "http://127.0.0.1:$pa" "$redis_url"
kill -9 "$pid_B"; wait "$pid_B" 2>/dev/null || true
wait_servers 1
run "a server killed" 3 probe "http://127.0.0.1:$pa"

kill "$pid_A"; wait "$pid_A" 2>/dev/null || true
redis_down

# 5. A Redis Cluster: three primaries.
for _ in 1 2 3; do cports+=("$(cluster_port)"); done
for p in "${cports[@]}"; do
    mkdir -p "$work/c$p"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
        --daemonize yes --save '' --appendonly no --dir "$work/c$p" > /dev/null
done
for p in "${cports[@]}"; do wait_port "$p"; done
redis-cli --cluster create "${cports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes \
    > "$work/cluster-create.log" 2>&1 || cat "$work/cluster-create.log"
for _ in $(seq 1 100); do
    ok=0
    for p in "${cports[@]}"; do
        redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
    done
    [ "$ok" = 3 ] && break
    sleep 0.1
done
expect "a redis cluster of three primaries is up" [ "$ok" = 3 ]
# Moves the slot of the channel of `/` to another primary (no keys live there: pub/sub
# only), as a resharding does.
move_slot() {
    local slot from_port from_id to_port to_id p
    slot="$(redis-cli -p "${cports[0]}" cluster keyslot 'socket.io#/#')"
    read -r from_port from_id < <(redis-cli -p "${cports[0]}" cluster nodes | awk -v s="$slot" '{
        for (i = 9; i <= NF; i++) { n = split($i, r, "-"); hi = n > 1 ? r[2] : r[1]
            if (s >= r[1] + 0 && s <= hi + 0) { split($2, a, "[:@]"); print a[2], $1 } } }')
    for p in "${cports[@]}"; do [ "$p" != "$from_port" ] && { to_port="$p"; break; }; done
    to_id="$(redis-cli -p "$to_port" cluster myid)"
    redis-cli -p "$to_port" cluster setslot "$slot" importing "$from_id" > /dev/null
    redis-cli -p "$from_port" cluster setslot "$slot" migrating "$to_id" > /dev/null
    for p in "${cports[@]}"; do redis-cli -p "$p" cluster setslot "$slot" node "$to_id" > /dev/null; done
    echo "$from_port -> $to_port"
}
export SHARDED=dynamic REDIS_CLUSTER=1
redis_url="redis://127.0.0.1:${cports[0]}"
cases "redis cluster: " 11
wirestate B "$pb"
wait_port "$pb"; wait_servers 2
moved="$(move_slot)"
# Both servers resubscribe on the new primary.
for _ in $(seq 1 100); do
    [ "$(redis-cli -p "${moved##* }" pubsub shardnumsub 'socket.io#/#' | tail -1)" = 2 ] && break
    sleep 0.1
done
expect "the slot of / moved ($moved), and both servers followed it" \
    [ "$(redis-cli -p "${moved##* }" pubsub shardnumsub 'socket.io#/#' | tail -1)" = 2 ]
run "redis cluster: after a slot moved" 11 "http://127.0.0.1:$pa" "http://127.0.0.1:$pb" "$redis_url"
unset SHARDED REDIS_CLUSTER

echo "cluster $runtime: wirestate servers (and Node's) on one redis-server and on a redis cluster, faults included"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
