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
MINUTES = float(os.environ.get("MINUTES", "3"))
POLL_MS = int(os.environ.get("POLL_MS", "20"))
SPEED = int(os.environ.get("SPEED", "1"))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def get(url):
    return json.loads(urllib.request.urlopen(url).read().decode())


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "candlelog", "-p", "fake-binance"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp()
    procs = []
    try:
        # Copies: a rebuild while the bench runs must not change the binaries.
        for b in ("candlelog", "fake-binance"):
            shutil.copy(os.path.join(ROOT, "target/release", b), tmp)
        fake = subprocess.Popen([f"{tmp}/fake-binance", "--symbols", str(SYMBOLS), "--speed", str(SPEED)], stdout=subprocess.PIPE, text=True)
        procs.append(fake)
        url = fake.stdout.readline().strip().removeprefix("listening on ")
        info = get(f"{url}/fapi/v1/exchangeInfo")
        names = [s["symbol"] for s in info["symbols"] if s["status"] == "TRADING" and s["contractType"] == "PERPETUAL" and s["quoteAsset"] == "USDT"]
        data = f"{tmp}/data"
        log = open(f"{tmp}/service.log", "w")
        svc = subprocess.Popen(
            [f"{tmp}/candlelog", "--data-dir", data, "run", "--json", "--symbols", ",".join(names), "--interval", "1m,1h,4h",
             "--lookback", "2", "--exchange-url", url, "--stream-url", url.replace("http://", "ws://")],
            stdout=subprocess.PIPE, stderr=log, text=True)
        procs.append(svc)
        deadline = time.time() + 120
        while get(f"{url}/_fake/stream")["connections_open"] < 1:
            if time.time() > deadline or svc.poll() is not None:
                sys.exit("the service never connected; see " + f"{tmp}/service.log")
            time.sleep(0.1)
        rss_start = rss_kb(svc.pid)
        # The fake's clock against ours: server ms s0 at real ms r0.
        before = time.time() * 1000
        s0 = get(f"{url}/fapi/v1/time")["serverTime"]
        r0 = (before + time.time() * 1000) / 2
        watch_from = s0
        db = sqlite3.connect(f"file:{data}/candles.sqlite?mode=ro", uri=True)
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
        sent = time.time()
        svc.send_signal(signal.SIGTERM)
        out, _ = svc.communicate(timeout=60)
        stop_s = time.time() - sent
        report = json.loads(out)
        load = open("/proc/loadavg").read().split()[:3]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        print(f"commit {commit}; load average {' '.join(load)}; {len(names)} symbols x (1m, 1h, 4h); watched {MINUTES} min (real) at speed {SPEED}")
        if lat:
            print(f"1m closes seen in the projection: {len(lat)}; close-to-projection ms: p50 {pct(lat, 50):.0f}, "
                  f"p99 {pct(lat, 99):.0f}, max {max(lat):.0f} (poll every {POLL_MS} ms)")
        print(f"message-to-commit p50 {report['commit_lag_p50_ms']} ms, p99 {report['commit_lag_p99_ms']} ms, max {report['max_commit_lag_ms']} ms; stream candles {report['stream_candles']}; "
              f"reconnects {report['stream']['reconnects']}; malformed {report['stream']['malformed']}; exit {svc.returncode}; "
              f"stopped {stop_s:.2f} s after SIGTERM")
        print(f"service RSS: start {rss_start / 1024:.1f} MiB, end {rss_end / 1024:.1f} MiB")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
