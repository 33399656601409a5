#!/usr/bin/env bash
# Benchmarks the remoteproxy broker against baselines run at the same time (see bench/README.md).
#
#   scripts/bench.sh [--quick] [remoteproxy-bench flags...]
#
# Builds release, starts target/release/remoteproxy with the mock authenticator on free ports
# (TLS on, self-signed), runs `remoteproxy-bench all` against it, then the idle-fleet holds, each
# on a fresh broker (v1 tunnels over wss after 64 KiB and after 1 MiB each way, registered v2
# TunnelProxy servers over TLS-TCP and over wss with clients reaching them), then starts a broker
# with TLS off and runs `throughput` and `latency` there (the plain-TCP and plain-WebSocket
# targets), and writes into $BENCH_OUT (default bench-results/):
#   results.json   every result (the merged --json documents)
#   tables.md      BENCHMARKS.md-ready markdown tables
#   chart.svg      throughput bars broker vs baseline, setup-latency CDF
#   run-*.txt      the human lines of each run; broker-*.log the brokers' logs
#
# Flags go to every bench invocation: --quick (smoke run, well under a minute), --rounds N,
# --hold-tunnels 9000, --tunnels N, --concurrency C, --bytes 1GiB, ...
# Environment: BENCH_OUT=DIR; BENCH_MAIN=0 skips the main run (`all` on a TLS broker);
# BENCH_PLAIN=0 skips the TLS-off broker; BENCH_BIG_HOLD=N is the
# second hold run on a fresh broker (default 9000 tunnels, 0 skips it; skipped with --quick; it
# needs an open-files hard limit above 2N for the bench and the broker); BENCH_SHAPES=0 skips the
# idle-fleet holds, BENCH_SHAPE_SIZE=N sets their tunnels or servers (default 2000; with --quick
# the bench's quick size); BENCH_FLEET=N adds a hold of N v2 TLS-TCP servers on a fresh broker
# (default 0: none; 18000 is the issue's fleet, it needs an open-files hard limit above N + 300);
# BENCH_STORM=N adds the reconnect storm of N v2 devices (default 0: none; 2000 a normal run, 18000
# the issue's; it needs an open-files hard limit above N + 300) on a broker with its ticket keys in
# a file and its metrics on, restarted on the same key file when the bench asks for it;
# RUST_LOG reaches the broker (default: its own `info`, one line per tunnel and refusal, as in
# production).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out=${BENCH_OUT:-bench-results}
plain=${BENCH_PLAIN:-1}
big_hold=${BENCH_BIG_HOLD:-9000}
main=${BENCH_MAIN:-1}
shapes=${BENCH_SHAPES:-1}
shape_size=(--hold-tunnels "${BENCH_SHAPE_SIZE:-2000}")
fleet=${BENCH_FLEET:-0}
storm=${BENCH_STORM:-0}
quick=0
for arg in "$@"; do
    if [ "$arg" = --quick ]; then
        quick=1
        big_hold=${BENCH_BIG_HOLD:-0}
        if [ -z "${BENCH_SHAPE_SIZE:-}" ]; then shape_size=(); fi
    fi
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

# start_broker NAME TLS: starts a broker with [SSL] enabled=TLS (plus the lines in $ssl_extra, and
# the sections in $conf_extra); sets broker_pid, tcp_addr, ws_addr (v1), v2_tcp_addr, v2_ws_addr
# (the TunnelProxy listeners) and metrics_addr (when [Metrics] is enabled).
ssl_extra=""
conf_extra=""
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
$ssl_extra
[WebSocketServer]
host=127.0.0.1
port=0
[TcpServer]
host=127.0.0.1
port=0
[UnixSocketServer]
unixSocketFileName=
[WebSocketServerTunnelProxy]
host=127.0.0.1
port=0
[TcpServerTunnelProxy]
host=127.0.0.1
port=0
[UnixSocketServerTunnelProxy]
unixSocketFileName=
$conf_extra
EOF
    "$broker_bin" -c "$conf" -m 2>"$log" &
    broker_pid=$!
    tcp_addr="" ws_addr="" v2_tcp_addr="" v2_ws_addr=""
    for _ in $(seq 1 200); do
        tcp_addr=$(sed -n 's/.*v1 TCP listener address=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        ws_addr=$(sed -n 's/.*v1 WebSocket listener address=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        v2_tcp_addr=$(sed -n 's/.*v2 TCP listener address=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        v2_ws_addr=$(sed -n 's/.*v2 WebSocket listener address=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        metrics_addr=$(sed -n 's/.*metrics endpoint.* address=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        if [ -n "$conf_extra" ] && [ -z "$metrics_addr" ]; then continue_wait=1; else continue_wait=0; fi
        if [ -n "$tcp_addr" ] && [ -n "$ws_addr" ] && [ -n "$v2_tcp_addr" ] && [ -n "$v2_ws_addr" ] &&
            [ "$continue_wait" = 0 ]; then
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

# bench NAME SUBCOMMAND URL WS_URL [flags]: runs the bench against the running broker (its v2
# listeners with the scheme of URL and WS_URL), JSON to $work/NAME.json, human lines to the
# terminal and $out/run-NAME.txt.
bench() {
    local name=$1 command=$2 url=$3 ws_url=$4
    shift 4
    "$bench_bin" "$command" --url "$url" --ws-url "$ws_url" \
        --v2-url "${url%%://*}://$v2_tcp_addr" --v2-ws-url "${ws_url%%://*}://$v2_ws_addr/" \
        --insecure --pid "$broker_pid" --json "$@" \
        >"$work/$name.json" 2> >(tee "$out/run-$name.txt" >&2)
}

inputs=()
if [ "$main" != 0 ]; then
    start_broker tls true
    echo "bench.sh: broker (TLS) pid $broker_pid at ssl://$tcp_addr and wss://$ws_addr" >&2
    bench tls all "ssl://$tcp_addr" "wss://$ws_addr/" "$@"
    stop_broker
    inputs+=(--input "$work/tls.json")
fi

if [ "$big_hold" != 0 ]; then
    # The most tunnels one host here can show (2 sockets each under a 20,000 open-files limit),
    # on a fresh broker.
    start_broker hold true
    echo "bench.sh: broker (TLS) pid $broker_pid for $big_hold held tunnels" >&2
    bench hold hold "ssl://$tcp_addr" "wss://$ws_addr/" "$@" --hold-tunnels "$big_hold"
    stop_broker
    inputs+=(--input "$work/hold.json")
fi

if [ "$shapes" != 0 ]; then
    # The idle fleet (issue 14), each shape on a fresh broker so that none inherits the memory
    # another one left in the allocator. The 1 MiB wss hold is the same code as the 64 KiB one;
    # --quick skips it.
    runs=("v1-ws-64k --hold-shape v1-ws --hold-bytes 64KiB")
    if [ "$quick" = 0 ]; then runs+=("v1-ws-1m --hold-shape v1-ws --hold-bytes 1MiB"); fi
    runs+=("v2-tcp --hold-shape v2-tcp" "v2-ws --hold-shape v2-ws")
    for run in "${runs[@]}"; do
        read -r name flags <<<"$run"
        start_broker "$name" true
        echo "bench.sh: broker (TLS) pid $broker_pid for the hold $flags" >&2
        # shellcheck disable=SC2086 # the flags are words
        bench "$name" hold "ssl://$tcp_addr" "wss://$ws_addr/" "$@" $flags "${shape_size[@]}"
        stop_broker
        inputs+=(--input "$work/$name.json")
    done
fi

if [ "$fleet" != 0 ]; then
    # The fleet the issue states its targets for: N registered v2 servers on one broker.
    start_broker fleet true
    echo "bench.sh: broker (TLS) pid $broker_pid for $fleet held v2 servers" >&2
    bench fleet hold "ssl://$tcp_addr" "wss://$ws_addr/" "$@" --hold-shape v2-tcp --hold-tunnels "$fleet"
    stop_broker
    inputs+=(--input "$work/fleet.json")
fi

if [ "$storm" != 0 ]; then
    # The reconnect storm (issue 14): N devices register at once with full TLS handshakes, then
    # again resuming their sessions, then again after the broker restarted. The ticket keys live
    # in a file of this run, so the restarted broker opens the tickets the first one issued. The
    # bench asks for the restart on stderr and reads the new broker from a fifo.
    if [ "$(ulimit -Hn)" != unlimited ]; then ulimit -n "$(ulimit -Hn)"; fi
    ssl_extra="ticketKeyFile=$work/ticket-keys"
    conf_extra=$'[Metrics]\nenabled=true\nhost=127.0.0.1\nport=0'
    start_broker storm true
    echo "bench.sh: broker (TLS) pid $broker_pid for a storm of $storm v2 devices" >&2
    mkfifo "$work/storm-stdin"
    # Emptied first: the restart request of an earlier run must not restart this broker.
    : >"$out/run-storm.txt"
    "$bench_bin" storm --url "ssl://$tcp_addr" --v2-url "ssl://$v2_tcp_addr" --metrics "$metrics_addr" \
        --insecure --pid "$broker_pid" --json --restart-via-stdin "$@" --storm-servers "$storm" \
        <"$work/storm-stdin" >"$work/storm.json" 2> >(tee "$out/run-storm.txt" >&2) &
    storm_pid=$!
    exec 3>"$work/storm-stdin"
    while kill -0 "$storm_pid" 2>/dev/null && ! grep -qs "storm: restart the broker now" "$out/run-storm.txt"; do
        sleep 0.1
    done
    if kill -0 "$storm_pid" 2>/dev/null; then
        stop_broker
        start_broker storm-restarted true
        echo "bench.sh: broker restarted on the same ticket keys: pid $broker_pid" >&2
        echo "url=ssl://$tcp_addr v2-url=ssl://$v2_tcp_addr pid=$broker_pid metrics=$metrics_addr" >&3
    fi
    wait "$storm_pid"
    exec 3>&-
    stop_broker
    ssl_extra="" conf_extra=""
    inputs+=(--input "$work/storm.json")
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
