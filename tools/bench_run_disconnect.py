#!/usr/bin/env python3
"""Refill after a 10-minute disconnect of `candlelog run` (issue 13's target: every missed
candle present <= 5 s after reconnect), against fake-binance on loopback.

The fake streams SYMBOLS symbols x (1m, 1h, 4h) with its clock SPEED times faster than real
time. Once the service streams, the fake drops every connection and refuses new ones
(`connections_per_window` [0, ...]: the stream endpoint is out, REST still answers) for
DOWN_MIN minutes of exchange time, then accepts them again. The script notes the real time
the service's connection is accepted again (the fake's `connections_opened` moves), then
polls the projection until every 1m and 1h candle that closed from the last one stored before
the disconnect up to the reconnect is there (each compared with none missing), and reports
that delay. ROUNDS disconnects in a row; median and max.

Usage: python3 tools/bench_run_disconnect.py   (env SYMBOLS=60 SPEED=60 DOWN_MIN=10 ROUNDS=5)
"""

import os
import sqlite3
import sys
import time

from service_rig import Service, call, measured_on

SYMBOLS = int(os.environ.get("SYMBOLS", "60"))
SPEED = int(os.environ.get("SPEED", "60"))
DOWN_MIN = float(os.environ.get("DOWN_MIN", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
MIN = 60_000
HOUR = 3_600_000


def newest(db, table, n_symbols):
    """The oldest of the symbols' newest open times in `table` (None until every symbol has one)."""
    try:
        rows = db.execute(f"SELECT symbol, MAX(timestamp) FROM {table} GROUP BY symbol").fetchall()
    except sqlite3.OperationalError:
        return None
    return min(r[1] for r in rows) if len(rows) == n_symbols else None


def count_between(db, table, lo, hi):
    return db.execute(f"SELECT COUNT(*) FROM {table} WHERE timestamp >= ? AND timestamp <= ?", (lo, hi)).fetchone()[0]


def main():
    with Service(SYMBOLS, SPEED) as s:
        url, names, svc = s.url, s.names, s.svc
        db = sqlite3.connect(f"file:{s.data}/candles.sqlite?mode=ro", uri=True)
        time.sleep(3)
        delays, counts = [], []
        for _ in range(ROUNDS):
            before = {"ohlcv_m1": newest(db, "ohlcv_m1", len(names)), "ohlcv_h1": newest(db, "ohlcv_h1", len(names))}
            opened = call(f"{url}/_fake/stream")["connections_opened"]
            call(f"{url}/_fake/stream", {"connections_per_window": [0, 300_000], "drop": True})
            time.sleep(DOWN_MIN * 60 / SPEED)
            call(f"{url}/_fake/stream", {"connections_per_window": [300, 300_000]})
            while call(f"{url}/_fake/stream")["connections_opened"] == opened:
                time.sleep(0.005)
            back = time.time()
            server_now = call(f"{url}/fapi/v1/time")["serverTime"]
            # Every candle closed by the reconnect: opens up to (now - length), floored.
            want = {}
            for table, length in (("ohlcv_m1", MIN), ("ohlcv_h1", HOUR)):
                hi = (server_now - length) // length * length
                lo = before[table] + length
                if hi >= lo:
                    want[table] = (lo, hi, ((hi - lo) // length + 1) * len(names))
            while any(count_between(db, t, lo, hi) < n for t, (lo, hi, n) in want.items()):
                if time.time() - back > 120:
                    sys.exit(f"missed candles never all arrived: {want}; see {s.log}")
                time.sleep(0.005)
            delays.append(time.time() - back)
            counts.append(sum(n for _, _, n in want.values()))
            time.sleep(2)
        report, _ = s.stop()
        delays_sorted = sorted(delays)
        print(f"{measured_on()}; {len(names)} symbols x (1m, 1h, 4h); speed {SPEED}; "
              f"{ROUNDS} disconnects of {DOWN_MIN:g} min exchange time")
        print(f"missed candles per disconnect: {counts}; all present after reconnect, s: "
              f"{', '.join(f'{d:.2f}' for d in delays)} (median {delays_sorted[len(delays) // 2]:.2f}, max {max(delays):.2f})")
        print(f"service: reconnects {report['stream']['reconnects']}, connect failures {report['stream']['connect_failures']}, "
              f"gap syncs {report['gap_syncs']} ({report['gap_sync_candles']} candles, {report['gap_sync_failures']} failed), exit {svc.returncode}")


if __name__ == "__main__":
    main()
