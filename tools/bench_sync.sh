#!/usr/bin/env bash
# Sync benchmarks against fake-binance on loopback (issue: nightly sync).
#
#  1. incremental: 60 symbols × 4h, one day of new candles each, with 50 ms of
#     latency on every request; target < 1.5 s wall, process start included.
#  2. backfill: SYMBOLS symbols × CANDLES 1h candles against a weight budget of
#     1,200 per minute; target ≤ 110% of the minimum time the budget allows,
#     zero 429s. Takes several minutes by design (set BACKFILL=0 to skip).
#
# Usage: bash tools/bench_sync.sh        (SYMBOLS=200 CANDLES=10000 BACKFILL=1)
set -euo pipefail
cd "$(dirname "$0")/.."
SYMBOLS=${SYMBOLS:-200}
CANDLES=${CANDLES:-10000}
BACKFILL=${BACKFILL:-1}

cargo build --release -q -p candlelog -p fake-binance
BIN=target/release/candlelog
FAKE=target/release/fake-binance
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$TMP"' EXIT

start_fake() { # args → sets URL
  "$FAKE" --port 0 "$@" > "$TMP/fake.out" &
  for _ in $(seq 50); do grep -q listening "$TMP/fake.out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^listening on //p' "$TMP/fake.out")
}
now_ms() { date +%s%3N; }
http() { # METHOD URL [JSON]: a tiny client, so the script needs only Python
  python3 - "$@" <<'PY'
import sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
data = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
print(urllib.request.urlopen(req).read().decode())
PY
}

echo "== incremental: 60 symbols × 4h, a day of new candles each, 50 ms latency per request"
T0=1772323800000   # 2026-03-01 00:10 UTC
start_fake --latency-ms 50 --time "$T0"
"$BIN" --data-dir "$TMP/inc" sync --exchange-url "$URL" --lookback 30 >/dev/null 2>&1
http POST "$URL/_fake/time" '{"advance_ms": 86400000}' >/dev/null
s=$(now_ms)
"$BIN" --data-dir "$TMP/inc" sync --exchange-url "$URL" --json > "$TMP/inc.json" 2>"$TMP/inc.err"
e=$(now_ms)
python3 - "$TMP/inc.json" $((e - s)) <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); wall = int(sys.argv[2])
print(f"  wall {wall} ms (target < 1500): {r['symbols_ok']}/{r['symbols_total']} symbols, "
      f"{r['candles_appended']} candles, {r['requests']} requests, weight {r['weight_used']}, outcome {r['outcome']}")
PY
kill %1 2>/dev/null || true; wait 2>/dev/null || true

if [ "$BACKFILL" = 1 ]; then
  echo "== backfill: $SYMBOLS symbols × $CANDLES 1h candles, budget 1,200 weight per minute"
  start_fake --weight-limit 1200 --symbols "$SYMBOLS"
  LIST=$(http GET "$URL/fapi/v1/exchangeInfo" | python3 -c 'import json,sys; print(",".join(s["symbol"] for s in json.load(sys.stdin)["symbols"] if s["status"]=="TRADING" and s["contractType"]=="PERPETUAL" and s["quoteAsset"]=="USDT"))')
  sleep 61   # let the fake's one-minute window forget the exchangeInfo above
  s=$(now_ms)
  "$BIN" --data-dir "$TMP/bf" sync --exchange-url "$URL" --symbols "$LIST" --interval 1h --lookback "$CANDLES" --timeout 60m --json > "$TMP/bf.json" 2>"$TMP/bf.err"
  e=$(now_ms)
  http GET "$URL/_fake/stats" > "$TMP/stats.json"
  python3 - "$TMP/bf.json" "$TMP/stats.json" $((e - s)) <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); st = json.load(open(sys.argv[2])); wall = int(sys.argv[3]) / 1000
weight = r["weight_used"]
# The budget admits 1,200 weight per minute window: the last window's requests
# can start as soon as it opens, so the floor is (windows needed − 1) minutes.
import math
floor_min = (math.ceil(weight / 1200) - 1) * 60
cont = weight / 1200 * 60
print(f"  wall {wall:.1f} s; weight {weight} in {r['requests']} requests; {r['candles_appended']} candles; "
      f"429s seen by client {r['rate_limited']}, served by fake {st['responses_429']}, max weight in a minute {st['max_weight_in_a_minute']}")
print(f"  minimum the budget allows: {cont:.1f} s (weight / 1200 per minute); ratio {wall / cont:.3f} (target ≤ 1.10)")
PY
fi
