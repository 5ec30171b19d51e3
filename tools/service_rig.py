"""The rig the live-service tools share (bench_run_latency.py, bench_run_disconnect.py,
soak_run.py): fake-binance and `candlelog run` started from copies of the release binaries
(a rebuild while a bench runs must not change them), on loopback, in a temporary directory.

    with Service(symbols=60, speed=10) as s:     # returns once the stream is connected
        ... s.url, s.names, s.data, s.svc ...
        report, stop_s = s.stop()                # SIGTERM, the service's JSON report
    print(measured_on())                         # "commit abc1234; load average ..."
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def call(url, body=None):
    """GET `url` (POST `body` as JSON when given); the JSON answer."""
    req = urllib.request.Request(url, method="GET" if body is None else "POST", data=None if body is None else json.dumps(body).encode())
    return json.loads(urllib.request.urlopen(req).read().decode())


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measured_on():
    """Which commit and how loaded the machine was, for the figures' first line."""
    load = open("/proc/loadavg").read().split()[:3]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return f"commit {commit}; load average {' '.join(load)}"


class Service:
    """fake-binance with `symbols` USDT perpetuals at `speed`, and `candlelog run` streaming
    all of them x `intervals`. `fake_args` and `run_args` are added to each command line."""

    def __init__(self, symbols, speed=1, intervals="1m,1h,4h", fake_args=(), run_args=()):
        self.symbols, self.speed, self.intervals = symbols, speed, intervals
        self.fake_args, self.run_args = list(fake_args), list(run_args)
        self.procs = []

    def __enter__(self):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "candlelog", "-p", "fake-binance"], cwd=ROOT, check=True)
        self.tmp = tempfile.mkdtemp()
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self):
        tmp = self.tmp
        for b in ("candlelog", "fake-binance"):
            shutil.copy(os.path.join(ROOT, "target/release", b), tmp)
        fake = subprocess.Popen([f"{tmp}/fake-binance", "--symbols", str(self.symbols), "--speed", str(self.speed), *self.fake_args],
                                stdout=subprocess.PIPE, text=True)
        self.procs.append(fake)
        self.url = fake.stdout.readline().strip().removeprefix("listening on ")
        info = call(f"{self.url}/fapi/v1/exchangeInfo")
        self.names = [s["symbol"] for s in info["symbols"]
                      if s["status"] == "TRADING" and s["contractType"] == "PERPETUAL" and s["quoteAsset"] == "USDT"]
        self.data = f"{tmp}/data"
        self.log = f"{tmp}/service.log"
        self.svc = subprocess.Popen(
            [f"{tmp}/candlelog", "--data-dir", self.data, "run", "--json", "--symbols", ",".join(self.names),
             "--interval", self.intervals, "--lookback", "2", "--exchange-url", self.url,
             "--stream-url", self.url.replace("http://", "ws://"), *self.run_args],
            stdout=subprocess.PIPE, stderr=open(self.log, "w"), text=True)
        self.procs.append(self.svc)
        deadline = time.time() + 120
        while call(f"{self.url}/_fake/stream")["connections_open"] < 1:
            if time.time() > deadline or self.svc.poll() is not None:
                sys.exit(f"the service never connected; see {self.log}")
            time.sleep(0.1)

    def stop(self):
        """SIGTERM; (the service's report, seconds it took to exit)."""
        sent = time.time()
        self.svc.send_signal(signal.SIGTERM)
        out, _ = self.svc.communicate(timeout=60)
        return json.loads(out), time.time() - sent

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False
