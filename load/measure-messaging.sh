#!/usr/bin/env bash
# The messaging figures of BENCHMARKS.md (issue 5): two release sichatd nodes on loopback,
# A (the recipient's) and B (the sender's), fresh for each scenario, and sichat-load's
# messaging scenarios between them:
#   rate  — RATE messages/s (default 200) for SECS: end-to-end latency at a fixed rate;
#   max   — CONC loops posting back to back for SECS: messages/s sustained end to end;
#   fill  — MESSAGES (default 100000) left for an offline recipient: the nodes' RSS, then a
#           live pickup of the whole queue, checked.
# Loopback only; bounded in time; removes its data directories and databases at exit.
#
#   load/measure-messaging.sh                          # SQLite, scenarios "rate max"
#   BACKEND=postgres load/measure-messaging.sh         # fresh databases on 127.0.0.1:5432
#   SCENARIOS=fill load/measure-messaging.sh           # the 100,000-message mailbox
#   NO_BUILD=1 …                                       # use the binaries already built
#
# Raised for the benchmark (one client address and one sender send everything): the
# per-address limits, and the per-device, per-node and per-sender message rates; the mailbox
# quota (fill holds ~150 MB of envelopes). The sender is the recipient's friend (a
# FriendCredential the recipient issued), so it lands in the inbox, not the rate-limited
# requests folder. Each node runs one async worker thread (NODE_THREADS; tokio reads
# TOKIO_WORKER_THREADS). Every other setting is the default: SQLite runs WAL with
# synchronous=FULL.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-$here/../target}/release}"
SECS="${SECS:-10}"
CONC="${CONC:-32}"
RATE="${RATE:-200}"
MESSAGES="${MESSAGES:-100000}"
PORT_A="${PORT_A:-18091}"
PORT_B="${PORT_B:-18092}"
SCENARIOS="${SCENARIOS:-rate max}"
BACKEND="${BACKEND:-sqlite}"
# Async worker threads per node (tokio's own variable). Two nodes and the tool share the
# machine's cores: one each keeps them from waking each other's idle workers.
NODE_THREADS="${NODE_THREADS:-1}"

if [ -z "${NO_BUILD:-}" ]; then
    (cd "$here/.." && cargo build --release -p sichat-server -p sichat-load)
fi

work=$(mktemp -d)
pids=()
dbs=()
psql_admin() { psql -q -h 127.0.0.1 -U postgres -d postgres "$@"; }
stop_nodes() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    for d in "${dbs[@]}"; do psql_admin -c "DROP DATABASE IF EXISTS $d WITH (FORCE)"; done
    dbs=()
}
cleanup() {
    stop_nodes
    rm -rf "$work"
}
trap cleanup EXIT

export SICHAT_RATE_LIMIT_PER_SECOND=1000000 SICHAT_RATE_LIMIT_BURST=1000000
export SICHAT_MSG_IP_PER_SECOND=1000000 SICHAT_MSG_SEND_PER_SECOND=1000000
export SICHAT_MSG_NODE_PER_SECOND=1000000 SICHAT_MSG_SENDER_PER_SECOND=1000000
export SICHAT_MSG_QUOTA_BYTES=$((4 * 1024 * 1024 * 1024))
# The tool is one client address holding hundreds of connections, and with the cap raised
# the sending node may have 256 deliveries in flight to the other (the defaults: 64
# connections per address, 48 deliveries in flight per node).
export SICHAT_MAX_CONNECTIONS_PER_ADDRESS=100000 SICHAT_MSG_DELIVERIES_PER_NODE=256

# start_node NAME PORT: sets node_pid, and db_args_NAME for admin commands.
start_node() {
    local name=$1 port=$2 args=()
    if [ "$BACKEND" = postgres ]; then
        local db="sichat_msg_bench_$name"
        psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
        dbs+=("$db")
        args=(--database-url "postgres://postgres@127.0.0.1:5432/$db")
    fi
    rm -rf "$work/$name"
    TOKIO_WORKER_THREADS="$NODE_THREADS" "$BIN/sichatd" --data-dir "$work/$name" "${args[@]}" serve \
        --listen "127.0.0.1:$port" >"$work/$name.log" 2>&1 &
    node_pid=$!
    pids+=("$node_pid")
    for _ in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    invite=$("$BIN/sichatd" --data-dir "$work/$name" "${args[@]}" --public-url "http://localhost:$port" \
        admin invite --quota 1 --json | jq -r .code)
}

# A process's CPU time so far (user + system, all threads), in microseconds.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{printf "%d", ($14 + $15) * 1000000 / hz}' "/proc/$1/stat"; }

echo "backend $BACKEND; $(nproc) cores; $NODE_THREADS worker thread(s) per node; uptime: $(uptime)"
for s in $SCENARIOS; do
    start_node a "$PORT_A"
    pid_a=$node_pid invite_a=$invite
    start_node b "$PORT_B"
    pid_b=$node_pid invite_b=$invite
    common=(--server "http://localhost:$PORT_B" --invite "$invite_b"
        --recipient-server "http://localhost:$PORT_A" --recipient-invite "$invite_a"
        --recipient-pid "$pid_a" --sender-pid "$pid_b" --json)
    echo "== $s ($BACKEND) — load before: $(uptime | sed 's/.*load average: //')"
    cpu_a=$(cpu_us "$pid_a") cpu_b=$(cpu_us "$pid_b")
    case $s in
    rate)
        "$BIN/sichat-load" "${common[@]}" --scenario messaging --rate "$RATE" --seconds "$SECS" | tee "$work/out.json" \
            | jq -r '"rate \(.rate_target)/s: delivered \(.delivered)/\(.accepted) (errors \(.errors), missing \(.missing), duplicates \(.duplicates)); \(.delivered_per_second|floor) msgs/s end to end; latency p50 \(.latency_ms.p50) ms, p90 \(.latency_ms.p90) ms, p99 \(.latency_ms.p99) ms, max \(.latency_ms.max) ms; POST p50 \(.post_latency_ms.p50) ms, p99 \(.post_latency_ms.p99) ms; checked \(.unpacked_and_checked)"'
        ;;
    max)
        "$BIN/sichat-load" "${common[@]}" --scenario messaging --concurrency "$CONC" --seconds "$SECS" \
            | tee "$work/out.json" \
            | jq -r '"max, \(.concurrency) loops: delivered \(.delivered)/\(.accepted) (errors \(.errors), missing \(.missing), duplicates \(.duplicates)); accepted \(.accepted_per_second|floor)/s; delivered \(.delivered_per_second|floor) msgs/s end to end (\(.delivered_in_window_per_second|floor)/s within the sending window, drain \(.drain_seconds*100|round/100) s); latency p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms; POST p50 \(.post_latency_ms.p50) ms, p99 \(.post_latency_ms.p99) ms; pool exhausted: \(.envelope_pool_exhausted); checked \(.unpacked_and_checked)"'
        ;;
    fill)
        "$BIN/sichat-load" "${common[@]}" --scenario messaging-fill --messages "$MESSAGES" --concurrency "$CONC" \
            | tee "$work/out.json" \
            | jq -r '"fill: \(.held_by_recipient_node) held after \(.fill_seconds*10|round/10) s (accepted \(.accepted_per_second|floor)/s); recipient node RSS \(.recipient_node_full.rss_kib) KiB (HWM \(.recipient_node_full.hwm_kib)), sender node RSS \(.sender_node_full.rss_kib) KiB; pickup \(.picked_up) in \(.pickup_seconds*10|round/10) s (\(.picked_up_per_second|floor)/s), left \(.left_after_acknowledging), duplicates \(.duplicates), ok \(.pickup_ok); recipient RSS after pickup \(.recipient_node_after_pickup.rss_kib) KiB"'
        ;;
    *)
        echo "unknown scenario $s (rate, max, fill)" >&2
        exit 2
        ;;
    esac
    delivered=$(jq '[.delivered // .picked_up, 1] | max' "$work/out.json")
    echo "   node CPU per message delivered: A $((($(cpu_us "$pid_a") - cpu_a) / delivered)) µs, B $((($(cpu_us "$pid_b") - cpu_b) / delivered)) µs"
    echo "   node RSS after: A $(awk '/VmRSS/ {print $2}' /proc/$pid_a/status) KiB, B $(awk '/VmRSS/ {print $2}' /proc/$pid_b/status) KiB; load after: $(uptime | sed 's/.*load average: //')"
    [ -n "${KEEP_JSON:-}" ] && cp "$work/out.json" "${KEEP_JSON}.$s.json"
    stop_nodes
done
