#!/usr/bin/env bash
# Scrapes a real `candlelog run`'s /metrics into OUT: fake-binance on loopback (real clock),
# the service streaming two symbols' 1m candles into a fresh data directory, scraped once its
# stream is connected, then stopped with SIGTERM (it must exit 0). .ci/run hands OUT to
# `.ci/check-conf --metrics`, so promtool checks the exposition the service really serves.
#
# Usage: tools/scrape_run_metrics.sh OUT      (after `cargo build --release --workspace`)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: tools/scrape_run_metrics.sh OUT}
bin=target/release
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# GET URL: the body on stdout, exit 1 unless 200 (python3: no curl needed).
get() {
    python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        sys.stdout.write(r.read().decode())
except Exception as e:
    sys.exit(f"{sys.argv[1]}: {e}")
PY
}
# wait_for FILE PATTERN: the first match of PATTERN (sed -n 's/…/\1/p') in FILE, waiting up to 60 s.
wait_for() {
    for _ in $(seq 600); do
        v=$(sed -n "$2" "$1" | head -1)
        [ -n "$v" ] && { echo "$v"; return 0; }
        sleep 0.1
    done
    echo "scrape_run_metrics: nothing matched $2 in $1:" >&2
    cat "$1" >&2
    return 1
}

"$bin/fake-binance" --port 0 > "$work/fake.log" 2>&1 &
pids+=($!)
fake=$(wait_for "$work/fake.log" 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p')

RUST_LOG=info "$bin/candlelog" --data-dir "$work/data" run --symbols BTCUSDT,ETHUSDT --interval 1m --lookback 3 \
    --exchange-url "http://$fake" --stream-url "ws://$fake" --listen 127.0.0.1:0 > "$work/run.out" 2> "$work/run.log" &
service=$!
pids+=("$service")
addr=$(wait_for "$work/run.log" 's/.*serving \/metrics and \/health on http:\/\/\([0-9.:]*\).*/\1/p')

for _ in $(seq 600); do
    if get "http://$addr/metrics" > "$out" 2>/dev/null && grep -qx 'candlelog_stream_connected 1' "$out"; then
        break
    fi
    sleep 0.1
done
grep -qx 'candlelog_stream_connected 1' "$out" || { echo "scrape_run_metrics: the stream never connected" >&2; cat "$work/run.log" >&2; exit 1; }
echo "scraped $(grep -c '^candlelog_' "$out") samples from http://$addr/metrics into $out"

kill -TERM "$service"
rc=0
wait "$service" || rc=$?
[ "$rc" -eq 0 ] || { echo "scrape_run_metrics: candlelog run exited $rc on SIGTERM" >&2; cat "$work/run.log" >&2; exit 1; }
