#!/usr/bin/env bash
# Benchmarks the remoteproxy broker against baselines run at the same time (see bench/README.md).
#
#   scripts/bench.sh [--quick] [remoteproxy-bench flags...]
#
# Builds release, starts target/release/remoteproxy with the mock authenticator on free ports
# (TLS on, self-signed), runs `remoteproxy-bench all` against it, then starts a second broker with
# TLS off and runs `throughput` and `latency` there (the plain-TCP and plain-WebSocket targets),
# and writes into $BENCH_OUT (default bench-results/):
#   results.json   every result (the merged --json documents)
#   tables.md      BENCHMARKS.md-ready markdown tables
#   chart.svg      throughput bars broker vs baseline, setup-latency CDF
#   run-*.txt      the human lines of each run; broker-*.log the brokers' logs
#
# Flags go to every bench invocation: --quick (smoke run, well under a minute), --rounds N,
# --hold-tunnels 9000, --tunnels N, --concurrency C, --bytes 1GiB, ...
# Environment: BENCH_OUT=DIR; BENCH_PLAIN=0 skips the TLS-off broker; BENCH_BIG_HOLD=N is the
# second hold run on a fresh broker (default 9000 tunnels, 0 skips it; skipped with --quick; it
# needs an open-files hard limit above 2N for the bench and the broker); RUST_LOG reaches the
# broker (default: its own `info`, one line per tunnel and refusal, as in production).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${BENCH_OUT:-bench-results}
plain=${BENCH_PLAIN:-1}
big_hold=${BENCH_BIG_HOLD:-9000}
for arg in "$@"; do
    if [ "$arg" = --quick ]; then big_hold=${BENCH_BIG_HOLD:-0}; fi
done

# The whole workspace, as the README builds it: building single packages unifies features
# differently and would compile the dependencies a second time.
cargo build --release --workspace --locked
broker_bin=$root/target/release/remoteproxy
bench_bin=$root/target/release/remoteproxy-bench

mkdir -p "$out"
work=$(mktemp -d)
broker_pid=""
cleanup() {
    if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid"
        wait "$broker_pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# start_broker NAME TLS: starts a broker with [SSL] enabled=TLS; sets broker_pid, tcp_addr, ws_addr.
start_broker() {
    local name=$1 tls=$2
    local conf=$work/$name.conf log=$out/broker-$name.log
    cat >"$conf" <<EOF
[ProxyServer]
name=remoteproxy-bench
monitorSocket=
logEngineEnabled=false
maxConnections=20000
shutdownGracePeriod=1000
[SSL]
enabled=$tls
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
EOF
    "$broker_bin" -c "$conf" -m 2>"$log" &
    broker_pid=$!
    tcp_addr="" ws_addr=""
    for _ in $(seq 1 200); do
        tcp_addr=$(sed -n 's/.*v1 TCP listener address=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        ws_addr=$(sed -n 's/.*v1 WebSocket listener address=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        if [ -n "$tcp_addr" ] && [ -n "$ws_addr" ]; then
            return 0
        fi
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            echo "bench.sh: the broker exited at start:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "bench.sh: the broker did not log its listeners within 10 s:" >&2
    cat "$log" >&2
    exit 1
}

stop_broker() {
    kill -TERM "$broker_pid"
    wait "$broker_pid" || true
    broker_pid=""
}

# bench NAME SUBCOMMAND URL WS_URL [flags]: runs the bench, JSON to $work/NAME.json, human lines
# to the terminal and $out/run-NAME.txt.
bench() {
    local name=$1 command=$2 url=$3 ws_url=$4
    shift 4
    "$bench_bin" "$command" --url "$url" --ws-url "$ws_url" --insecure --pid "$broker_pid" --json "$@" \
        >"$work/$name.json" 2> >(tee "$out/run-$name.txt" >&2)
}

start_broker tls true
echo "bench.sh: broker (TLS) pid $broker_pid at ssl://$tcp_addr and wss://$ws_addr" >&2
bench tls all "ssl://$tcp_addr" "wss://$ws_addr/" "$@"
stop_broker
inputs=(--input "$work/tls.json")

if [ "$big_hold" != 0 ]; then
    # The most tunnels one host here can show (2 sockets each under a 20,000 open-files limit),
    # on a fresh broker.
    start_broker hold true
    echo "bench.sh: broker (TLS) pid $broker_pid for $big_hold held tunnels" >&2
    bench hold hold "ssl://$tcp_addr" "wss://$ws_addr/" "$@" --hold-tunnels "$big_hold"
    stop_broker
    inputs+=(--input "$work/hold.json")
fi

if [ "$plain" != 0 ]; then
    start_broker plain false
    echo "bench.sh: broker (TLS off) pid $broker_pid at tcp://$tcp_addr and ws://$ws_addr" >&2
    bench plain-throughput throughput "tcp://$tcp_addr" "ws://$ws_addr/" "$@"
    bench plain-latency latency "tcp://$tcp_addr" "ws://$ws_addr/" "$@"
    stop_broker
    inputs+=(--input "$work/plain-throughput.json" --input "$work/plain-latency.json")
fi

"$bench_bin" report "${inputs[@]}" --merged "$out/results.json" --tables "$out/tables.md" --chart "$out/chart.svg"
echo
cat "$out/tables.md"
echo
echo "bench.sh: wrote $out/results.json, $out/tables.md, $out/chart.svg" >&2
