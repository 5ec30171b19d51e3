#!/usr/bin/env bash
# Long backfill across repeated timed-out runs (issue 11, "Long backfills never
# progress"): SYMBOLS symbols × 1m candles from DAYS days back (5 × 365 days ≈
# 2.6 M candles) against fake-binance with the real weight limit (2,400 per
# minute), `candlelog sync --timeout TIMEOUT` run again and again until one
# exits 0. Reports, per run: exit code, wall time, peak RSS, candles committed
# and candles received; then runs needed, total wall, and the candles the
# runs received against the candles stored (equal = nothing fetched twice),
# with the fake's own request and weight counts.
#
# Targets: completes across repeated 5-minute runs, peak RSS ≤ 200 MB per run,
# no candle fetched twice. Takes ~5–10 minutes by design.
#
# Usage: bash tools/bench_backfill.sh    (SYMBOLS=5 DAYS=365 TIMEOUT=5m MAX_RUNS=10)
set -euo pipefail
cd "$(dirname "$0")/.."
SYMBOLS=${SYMBOLS:-5}
DAYS=${DAYS:-365}
TIMEOUT=${TIMEOUT:-5m}
MAX_RUNS=${MAX_RUNS:-10}

cargo build --release -q -p candlelog -p fake-binance
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT
# Copies: a rebuild while the bench runs must not change the binary between runs.
cp target/release/candlelog target/release/fake-binance "$TMP/"
BIN=$TMP/candlelog
FAKE=$TMP/fake-binance

"$FAKE" --port 0 --weight-limit 2400 --symbols "$SYMBOLS" > "$TMP/fake.out" &
for _ in $(seq 50); do grep -q listening "$TMP/fake.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^listening on //p' "$TMP/fake.out")
http() { # METHOD URL: a tiny client, so the script needs only Python
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(urllib.request.Request(sys.argv[2], method=sys.argv[1])).read().decode())' "$@"
}
LIST=$(http GET "$URL/fapi/v1/exchangeInfo" | python3 -c 'import json,sys; print(",".join(s["symbol"] for s in json.load(sys.stdin)["symbols"] if s["status"]=="TRADING" and s["contractType"]=="PERPETUAL" and s["quoteAsset"]=="USDT"))')
SINCE=$(date -u -d "$DAYS days ago" +%Y-%m-%dT%H:%M:00Z)
# Peak RSS: GNU time when present, else VmHWM polled from /proc.
if [ -x /usr/bin/time ] && /usr/bin/time -v true 2>/dev/null; then TIMEV=1; else TIMEV=0; fi

echo "== backfill: $SYMBOLS symbols × 1m from $SINCE ($DAYS days), weight limit 2,400/min, --timeout $TIMEOUT per run"
echo "   symbols: $LIST"
start=$(date +%s%3N)
runs=0
while [ "$runs" -lt "$MAX_RUNS" ]; do
  runs=$((runs + 1))
  s=$(date +%s%3N)
  set +e
  if [ "$TIMEV" = 1 ]; then
    /usr/bin/time -v -o "$TMP/time.$runs" "$BIN" --data-dir "$TMP/data" sync --exchange-url "$URL" --symbols "$LIST" \
      --interval 1m --since "$SINCE" --timeout "$TIMEOUT" --json > "$TMP/run.$runs.json" 2> "$TMP/run.$runs.err"
    code=$?
    rss_kb=$(sed -n 's/^\s*Maximum resident set size (kbytes): //p' "$TMP/time.$runs")
  else
    "$BIN" --data-dir "$TMP/data" sync --exchange-url "$URL" --symbols "$LIST" \
      --interval 1m --since "$SINCE" --timeout "$TIMEOUT" --json > "$TMP/run.$runs.json" 2> "$TMP/run.$runs.err" &
    pid=$!
    rss_kb=0
    while kill -0 "$pid" 2>/dev/null; do
      hwm=$(sed -n 's/^VmHWM:\s*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null || true)
      [ -n "$hwm" ] && [ "$hwm" -gt "$rss_kb" ] && rss_kb=$hwm
      sleep 0.2
    done
    wait "$pid"
    code=$?
  fi
  set -e
  e=$(date +%s%3N)
  python3 - "$TMP/run.$runs.json" "$runs" "$code" $((e - s)) "$rss_kb" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); run, code, wall, rss = sys.argv[2], sys.argv[3], int(sys.argv[4]) / 1000, int(sys.argv[5]) / 1024
fetched = sum(s.get("fetched", 0) for s in r["series"])
print(f"  run {run}: exit {code} ({r['outcome']}), wall {wall:.1f} s, peak RSS {rss:.1f} MB, "
      f"{r['candles_appended']:,} candles committed, {fetched:,} received, {r['requests']} requests, weight {r['weight_used']}, "
      f"429s {r['rate_limited']}")
for s in r["series"]:
    if s["status"] != "ok":
        print(f"    {s['symbol']} {s['interval']} {s['status']}: {s['error']}")
PY
  [ "$code" = 0 ] && break
  [ "$code" = 124 ] || { echo "  run $runs failed (exit $code), stopping"; cat "$TMP/run.$runs.err" | tail -5; break; }
done
end=$(date +%s%3N)
http GET "$URL/_fake/stats" > "$TMP/stats.json"
"$BIN" --data-dir "$TMP/data" status --json > "$TMP/status.json"
python3 - "$TMP" "$runs" $((end - start)) "$SYMBOLS" "$DAYS" <<'PY'
import glob, json, sys
tmp, runs, wall, symbols, days = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) / 1000, int(sys.argv[4]), int(sys.argv[5])
reports = [json.load(open(f"{tmp}/run.{i}.json")) for i in range(1, runs + 1)]
appended = sum(r["candles_appended"] for r in reports)
fetched = sum(s.get("fetched", 0) for r in reports for s in r["series"])
requests = sum(s["requests"] for r in reports for s in r["series"])
st = json.load(open(f"{tmp}/stats.json"))
target = symbols * days * 1440
print(f"== {runs} run(s), {wall:.1f} s in all; final outcome {reports[-1]['outcome']}")
print(f"  candles committed {appended:,} (target {target:,} plus the minutes that closed during the bench); "
      f"received {fetched:,} → fetched twice: {fetched - appended:,}")
print(f"  klines requests: fake served {st['klines_requests']}, the runs' series counted {requests}; "
      f"weight used {st['weight_used_total']}, max in a minute {st['max_weight_in_a_minute']}, 429s {st['responses_429']}, 418s {st['responses_418']}")
PY
times=$(ls "$TMP"/time.* 2>/dev/null | wc -l)
echo "  peak RSS measured with $([ "$TIMEV" = 1 ] && echo '/usr/bin/time -v' || echo 'VmHWM polling') over $times run(s)"
"$BIN" --data-dir "$TMP/data" verify >/dev/null && echo "  verify: ok"
