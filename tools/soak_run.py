#!/usr/bin/env python3
"""Accelerated soak of `candlelog run` (issue 13) against fake-binance on loopback, with faults.

The fake's clock runs SPEED times faster than real time (1440: a day per real minute), so
HOURS hours of exchange time pass in HOURS * 3600 / SPEED real seconds, 24-hour disconnects
included. Meanwhile the fake drops every stream connection every DROP_S real seconds, and
every FAULT_S seconds queues 2 malformed messages, 2 duplicate closes and 2 closes that never
arrive; once, it goes silent for longer than the service's silence timeout. Then SIGTERM, and
every stored candle of every series is compared with what the fake's REST serves: missing,
extra and differing candles (all should be 0), plus the service's report and its resident
memory at start and end.

Usage: python3 tools/soak_run.py   (env SYMBOLS=5 HOURS=24 SPEED=1440 DROP_S=12 FAULT_S=5)
"""

import os
import sqlite3
import sys
import time

from service_rig import Service, call, measured_on, rss_kb

SYMBOLS = int(os.environ.get("SYMBOLS", "5"))
HOURS = float(os.environ.get("HOURS", "24"))
SPEED = int(os.environ.get("SPEED", "1440"))
DROP_S = float(os.environ.get("DROP_S", "12"))
FAULT_S = float(os.environ.get("FAULT_S", "5"))
START_MS = 1_772_323_200_000  # 2026-03-01 00:00 UTC
INTERVALS = {"1m": 60_000, "1h": 3_600_000, "4h": 14_400_000}
TABLES = {"1m": "ohlcv_m1", "1h": "ohlcv_h1", "4h": "ohlcv_h4"}


def rest_closed(url, symbol, interval, start, end, now):
    """(open_time, 6 floats, trades) of the closed candles with open time in [start, end]."""
    out = []
    while start <= end:
        page = call(f"{url}/fapi/v1/klines?symbol={symbol}&interval={interval}&startTime={start}&endTime={end}&limit=1500")
        if not page:
            break
        for k in page:
            if k[6] < now:
                out.append((k[0], tuple(float(k[i]) for i in (1, 2, 3, 4, 5, 7)), k[8]))
        start = page[-1][0] + 1
        if len(page) < 1500:
            break
    return out


def main():
    fake_args = ["--time", str(START_MS), "--stream-drop-every-ms", str(int(DROP_S * 1000)), "--ban-after", "4294967295"]
    with Service(SYMBOLS, SPEED, ",".join(INTERVALS), fake_args, ["--silence-timeout", "2s"]) as s:
        url, names, svc = s.url, s.names, s.svc
        rss_start = rss_kb(svc.pid)
        soak_s = HOURS * 3600 / SPEED
        end = time.time() + soak_s
        silenced = False
        next_fault = time.time() + FAULT_S
        while time.time() < end:
            if svc.poll() is not None:
                sys.exit(f"the service exited {svc.returncode} during the soak; see {s.log}")
            if time.time() >= next_fault:
                call(f"{url}/_fake/stream", {"malformed": 2, "duplicate": 2, "miss_close": 2})
                next_fault += FAULT_S
            if not silenced and time.time() > end - soak_s / 2:
                call(f"{url}/_fake/stream", {"silence_ms": 3000})
                silenced = True
            time.sleep(0.1)
        rss_end = rss_kb(svc.pid)
        report, _ = s.stop()
        now = call(f"{url}/_fake/time")["now_ms"]
        fake_stats = call(f"{url}/_fake/stream")
        db = sqlite3.connect(f"file:{s.data}/candles.sqlite?mode=ro", uri=True)
        missing = extra = differing = stored_total = 0
        for iv, table in TABLES.items():
            for sym in names:
                rows = db.execute(f"SELECT timestamp, open, high, low, close, volume, quote_volume, trades_count FROM {table} "
                                  "WHERE symbol = ? ORDER BY timestamp", (sym,)).fetchall()
                stored_total += len(rows)
                if not rows:
                    missing += 1
                    continue
                mine = {r[0]: (tuple(r[1:7]), r[7]) for r in rows}
                # Up to the last candle closed before the stop, less one interval of slack for
                # the close in flight at SIGTERM.
                last = max(mine)
                theirs = {k[0]: (k[1], k[2]) for k in rest_closed(url, sym, iv, rows[0][0], last, now)}
                missing += len(set(theirs) - set(mine))
                extra += len(set(mine) - set(theirs))
                differing += sum(1 for t in set(mine) & set(theirs) if mine[t] != theirs[t])
        print(f"{measured_on()}; {len(names)} symbols x (1m, 1h, 4h); "
              f"{HOURS} h of exchange time at {SPEED}x ({soak_s:.0f} s real)")
        print(f"stored {stored_total} candles; missing {missing}, extra {extra}, differing from REST {differing}")
        print(f"fake: {fake_stats['connections_opened']} connections, {fake_stats['connections_dropped']} dropped by the server, "
              f"{fake_stats['malformed_sent']} malformed, {fake_stats['duplicates_sent']} duplicates, "
              f"{fake_stats['closes_missed']} closes never sent, {fake_stats['messages_silenced']} silenced")
        st = report["stream"]
        print(f"service: exit {svc.returncode}; {report['stream_candles']} from the stream, {report['gap_syncs']} REST gap fills "
              f"({report['gap_sync_candles']} candles, {report['gap_sync_failures']} failed), {st['reconnects']} reconnects, "
              f"{st['silences']} silences, {st['missed']} missed closes, {st['duplicates']} duplicates, {st['malformed']} malformed")
        print(f"service RSS: start {rss_start / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
