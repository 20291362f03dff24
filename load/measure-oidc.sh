#!/usr/bin/env bash
# The OpenID Provider figures of BENCHMARKS.md: every oidc-* scenario of sichat-load against
# a release sichatd and against the npm oidc-provider (load/peer/, in memory), one after the
# other, on the same machine, with the same tool and concurrency; then both processes' RSS.
# cpu_us_per_op is the provider process's own CPU time (user + system, all its threads) over
# the run, per operation: steadier than throughput when other work shares the machine. (On
# PostgreSQL the database's processes are not counted; a scenario's set-up is.)
# Loopback only; bounded (SECS per scenario and side).
#
#   cargo build --release -p sichat-server -p sichat-load && npm --prefix load/peer ci
#   load/measure-oidc.sh                     # SQLite in a fresh data directory
#   BACKEND=postgres load/measure-oidc.sh    # a fresh database on 127.0.0.1:5432 (trust)
set -euo pipefail
BIN="${BIN:-${CARGO_TARGET_DIR:-target}/release}"
SECS="${SECS:-10}"
CONC="${CONC:-32}"
PORT="${PORT:-18081}"
PEER_PORT="${PEER_PORT:-3000}"
SCENARIOS="${SCENARIOS:-discovery client-credentials introspect refresh dpop-refresh login device}"
here="$(cd "$(dirname "$0")" && pwd)"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

db=()
if [ "${BACKEND:-sqlite}" = postgres ]; then
    name=sichat_oidc_bench
    psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
    db=(--database-url "postgres://postgres@127.0.0.1:5432/$name")
fi

PORT="$PEER_PORT" node "$here/peer/oidc-provider.mjs" >"$work/peer.log" 2>&1 &
peer=$!
pids+=("$peer")
SICHAT_RATE_LIMIT_PER_SECOND=1000000 SICHAT_RATE_LIMIT_BURST=1000000 \
    "$BIN/sichatd" --data-dir "$work/node" "${db[@]}" serve --listen "127.0.0.1:$PORT" >"$work/node.log" 2>&1 &
node=$!
pids+=("$node")
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 \
        && curl -fs "http://127.0.0.1:$PEER_PORT/.well-known/openid-configuration" >/dev/null 2>&1 && break
    sleep 0.1
done

cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{printf "%d", ($14 + $15) * 1000000 / hz}' "/proc/$1/stat"; }
echo "side scenario per_second p50_ms p99_ms errors cpu_us_per_op"
for s in $SCENARIOS; do
    code=$("$BIN/sichatd" --data-dir "$work/node" "${db[@]}" --public-url "http://localhost:$PORT" \
        admin invite --quota 1 --json | jq -r .code)
    for side in sichat peer; do
        if [ "$side" = sichat ]; then
            target=(--server "http://localhost:$PORT" --invite "$code")
            pid=$node
        else
            target=(--issuer "http://localhost:$PEER_PORT" --client-id load --client-secret load-secret)
            pid=$peer
        fi
        before=$(cpu_us "$pid")
        "$BIN/sichat-load" "${target[@]}" --concurrency "$CONC" --seconds "$SECS" --scenario "oidc-$s" --json \
            >"$work/run.json"
        cpu=$(($(cpu_us "$pid") - before))
        jq -r --arg side "$side" --argjson cpu "$cpu" \
            '[$side, .scenario, (.per_second|floor), (.latency_ms.p50*100|round/100),
              (.latency_ms.p99*100|round/100), .errors, ($cpu / ([.operations, 1]|max) | round)] | join(" ")' \
            "$work/run.json"
    done
done
for side in sichat peer; do
    pid=$node
    [ "$side" = peer ] && pid=$peer
    echo "$side rss_kib $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") hwm_kib $(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
done
