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

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYMBOLS = int(os.environ.get("SYMBOLS", "60"))
SPEED = int(os.environ.get("SPEED", "60"))
DOWN_MIN = float(os.environ.get("DOWN_MIN", "10"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
MIN = 60_000
HOUR = 3_600_000


def call(url, body=None):
    req = urllib.request.Request(url, method="GET" if body is None else "POST", data=None if body is None else json.dumps(body).encode())
    return json.loads(urllib.request.urlopen(req).read().decode())


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
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "candlelog", "-p", "fake-binance"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp()
    procs = []
    try:
        for b in ("candlelog", "fake-binance"):
            shutil.copy(os.path.join(ROOT, "target/release", b), tmp)
        fake = subprocess.Popen([f"{tmp}/fake-binance", "--symbols", str(SYMBOLS), "--speed", str(SPEED)], stdout=subprocess.PIPE, text=True)
        procs.append(fake)
        url = fake.stdout.readline().strip().removeprefix("listening on ")
        info = call(f"{url}/fapi/v1/exchangeInfo")
        names = [s["symbol"] for s in info["symbols"] if s["status"] == "TRADING" and s["contractType"] == "PERPETUAL" and s["quoteAsset"] == "USDT"]
        data = f"{tmp}/data"
        log = open(f"{tmp}/service.log", "w")
        svc = subprocess.Popen(
            [f"{tmp}/candlelog", "--data-dir", data, "run", "--json", "--symbols", ",".join(names), "--interval", "1m,1h,4h",
             "--lookback", "2", "--exchange-url", url, "--stream-url", url.replace("http://", "ws://")],
            stdout=subprocess.PIPE, stderr=log, text=True)
        procs.append(svc)
        deadline = time.time() + 120
        while call(f"{url}/_fake/stream")["connections_open"] < 1:
            if time.time() > deadline or svc.poll() is not None:
                sys.exit("the service never connected; see " + f"{tmp}/service.log")
            time.sleep(0.1)
        db = sqlite3.connect(f"file:{data}/candles.sqlite?mode=ro", uri=True)
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
                    sys.exit(f"missed candles never all arrived: {want}; see {tmp}/service.log")
                time.sleep(0.005)
            delays.append(time.time() - back)
            counts.append(sum(n for _, _, n in want.values()))
            time.sleep(2)
        svc.send_signal(signal.SIGTERM)
        out, _ = svc.communicate(timeout=60)
        report = json.loads(out)
        load = open("/proc/loadavg").read().split()[:3]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        delays_sorted = sorted(delays)
        print(f"commit {commit}; load average {' '.join(load)}; {len(names)} symbols x (1m, 1h, 4h); speed {SPEED}; "
              f"{ROUNDS} disconnects of {DOWN_MIN:g} min exchange time")
        print(f"missed candles per disconnect: {counts}; all present after reconnect, s: "
              f"{', '.join(f'{d:.2f}' for d in delays)} (median {delays_sorted[len(delays) // 2]:.2f}, max {max(delays):.2f})")
        print(f"service: reconnects {report['stream']['reconnects']}, connect failures {report['stream']['connect_failures']}, "
              f"gap syncs {report['gap_syncs']} ({report['gap_sync_candles']} candles, {report['gap_sync_failures']} failed), exit {svc.returncode}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
