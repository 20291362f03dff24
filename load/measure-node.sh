#!/usr/bin/env bash
# Start-up time to the first /healthz answer, and idle RSS, of a release sichatd on a fresh
# SQLite data directory. Loopback only; bounded (RUNS starts, each polled for ≤ 10 s).
#   cargo build --release -p sichat-server && load/measure-node.sh [path/to/sichatd]
set -euo pipefail
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/sichatd}"
RUNS="${RUNS:-10}"
PORT="${PORT:-18080}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 "$RUNS"); do
    start=$(date +%s%N)
    "$BIN" --data-dir "$work/d$i" serve --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 10000); do
        curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
        sleep 0.001
    done
    echo "start-to-healthz-ms $(( ($(date +%s%N) - start) / 1000000 ))"
    if [ "$i" = 1 ]; then
        sleep 2
        echo "idle-rss-kib $(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
    fi
    kill -TERM "$pid"
    wait "$pid" || true
done
