#!/usr/bin/env bash
# Benchmarks cross-node tunnels against one-node tunnels in the same run (see the README,
# "Cluster mode", and BENCHMARKS.md).
#
#   scripts/bench-cluster.sh [--quick] [remoteproxy-bench flags...]
#
# Builds release, starts a redis-server on a free loopback port (saving nothing) and two broker
# nodes of one cluster on it (TLS on, self-signed, the mock authenticator, every listener on a
# free port), then runs `remoteproxy-bench cluster` with the first node as the broker and the
# second as its peer: tunnel setup, throughput both ways and round trips over TLS-TCP and wss,
# each on one-node tunnels and on cross-node tunnels, with the targets of issue 17 (cross-node
# setup ≥ 0.5×, throughput ≥ 0.6× one-node; the added round trip at most one relay hop's worth).
# Writes $BENCH_OUT (default bench-results/)/cluster.json and run-cluster.txt, and the nodes' logs.
# Needs redis-server (Debian: apt-get install redis-server).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${BENCH_OUT:-bench-results}
command -v redis-server >/dev/null || { echo "bench-cluster.sh: redis-server is needed (apt-get install redis-server)" >&2; exit 1; }

cargo build --release --workspace --locked
broker_bin=$root/target/release/remoteproxy
bench_bin=$root/target/release/remoteproxy-bench
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$out/redis.log" 2>&1 &
pids+=($!)

# start_node NAME: sets tcp_addr, ws_addr and node_pid.
start_node() {
    local name=$1 conf=$work/$1.conf log=$out/broker-$1.log
    cat >"$conf" <<EOF
[ProxyServer]
name=remoteproxy-bench
monitorSocket=
logEngineEnabled=false
maxConnections=20000
shutdownGracePeriod=1000
[SSL]
enabled=true
[WebSocketServer]
host=127.0.0.1
port=0
[TcpServer]
host=127.0.0.1
port=0
[UnixSocketServer]
unixSocketFileName=
[WebSocketServerTunnelProxy]
host=
[TcpServerTunnelProxy]
host=
[UnixSocketServerTunnelProxy]
unixSocketFileName=
[Cluster]
enabled=true
redisUrl=redis://127.0.0.1:$redis_port
nodeId=$name
relayHost=127.0.0.1
relayPort=0
secret=bench-cluster-secret-$$
EOF
    RUST_LOG=${RUST_LOG:-info} "$broker_bin" -c "$conf" -m 2>"$log" &
    node_pid=$!
    pids+=("$node_pid")
    for _ in $(seq 1 200); do
        tcp_addr=$(sed -n 's/.*v1 TCP listener address=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        ws_addr=$(sed -n 's/.*v1 WebSocket listener address=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        if [ -n "$tcp_addr" ] && [ -n "$ws_addr" ] && grep -q "connected to Redis" "$log"; then
            return 0
        fi
        if ! kill -0 "$node_pid" 2>/dev/null; then
            echo "bench-cluster.sh: node $name exited at start:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "bench-cluster.sh: node $name did not start within 10 s:" >&2
    cat "$log" >&2
    exit 1
}

start_node node-a
a_tcp=$tcp_addr a_ws=$ws_addr a_pid=$node_pid
start_node node-b
b_tcp=$tcp_addr b_ws=$ws_addr

"$bench_bin" cluster --url "ssl://$a_tcp" --ws-url "wss://$a_ws/" \
    --peer-url "ssl://$b_tcp" --peer-ws-url "wss://$b_ws/" --insecure --pid "$a_pid" --json "$@" \
    >"$out/cluster.json" 2> >(tee "$out/run-cluster.txt" >&2)
