#!/usr/bin/env python3
"""Close-to-projection latency of `candlelog run` (issue 13) against fake-binance on loopback.

The fake runs on the real clock (so its closes happen at real minute boundaries) and streams
SYMBOLS symbols x (1m, 1h, 4h), updating every 250 ms as Binance documents. The service is
started, and once its stream is connected this script polls the SQLite projection every
POLL_MS for MINUTES minutes: each new 1m row's latency is the time it was first seen minus
its candle's close (open + 60 s). It then sends SIGTERM and reads the service's report
(message-to-commit maximum, stream counters) and its resident memory at start and end.

With SPEED > 1 the fake's clock runs SPEED times faster (its closes come SPEED times as
often) and each latency is in real time: the real moment of a close is found from one reading
of the fake's clock (GET /fapi/v1/time) against the local clock.

The latency includes up to one stream update period (250 ms: the fake, like Binance, sends a
close at its first update after the close) and up to one poll period.

Usage: python3 tools/bench_run_latency.py   (env SYMBOLS=60 MINUTES=3 POLL_MS=20 SPEED=1)
"""

import os
import sqlite3
import time

from service_rig import Service, call, measured_on, rss_kb

SYMBOLS = int(os.environ.get("SYMBOLS", "60"))
MINUTES = float(os.environ.get("MINUTES", "3"))
POLL_MS = int(os.environ.get("POLL_MS", "20"))
SPEED = int(os.environ.get("SPEED", "1"))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    with Service(SYMBOLS, SPEED) as s:
        url, names, svc = s.url, s.names, s.svc
        rss_start = rss_kb(svc.pid)
        # The fake's clock against ours: server ms s0 at real ms r0.
        before = time.time() * 1000
        s0 = call(f"{url}/fapi/v1/time")["serverTime"]
        r0 = (before + time.time() * 1000) / 2
        watch_from = s0
        db = sqlite3.connect(f"file:{s.data}/candles.sqlite?mode=ro", uri=True)
        seen = set()
        lat = []
        end = time.time() + MINUTES * 60
        while time.time() < end:
            rows = db.execute("SELECT symbol, timestamp FROM ohlcv_m1 WHERE timestamp + 60000 > ?", (int(watch_from),)).fetchall()
            now = time.time() * 1000
            for sym, ts in rows:
                if (sym, ts) not in seen:
                    seen.add((sym, ts))
                    lat.append(now - (r0 + (ts + 60000 - s0) / SPEED))
            time.sleep(POLL_MS / 1000)
        rss_end = rss_kb(svc.pid)
        report, stop_s = s.stop()
        print(f"{measured_on()}; {len(names)} symbols x (1m, 1h, 4h); watched {MINUTES} min (real) at speed {SPEED}")
        if lat:
            print(f"1m closes seen in the projection: {len(lat)}; close-to-projection ms: p50 {pct(lat, 50):.0f}, "
                  f"p99 {pct(lat, 99):.0f}, max {max(lat):.0f} (poll every {POLL_MS} ms)")
        print(f"message-to-commit p50 {report['commit_lag_p50_ms']} ms, p99 {report['commit_lag_p99_ms']} ms, max {report['max_commit_lag_ms']} ms; stream candles {report['stream_candles']}; "
              f"reconnects {report['stream']['reconnects']}; malformed {report['stream']['malformed']}; exit {svc.returncode}; "
              f"stopped {stop_s:.2f} s after SIGTERM")
        print(f"service RSS: start {rss_start / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
