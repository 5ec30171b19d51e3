#!/usr/bin/env python3
"""Cost of scraping `candlelog run`'s /metrics and /health on a store of a given size.

    python3 tools/bench_http_scrape.py DATA_DIR [--rounds 10] [--gap 5.2]

Starts fake-binance (real clock) and `candlelog run` on DATA_DIR (streaming BTCUSDT 1m
beside whatever the store holds: /metrics reads every series, /health walks the whole
chain), then times, interleaved round by round, GET /metrics, GET /health (computed:
rounds are --gap s apart, past the service's reuse of max(5 s, 4 x health's time): raise
--gap on a store where health takes over 1.3 s), GET /health again at once (the
reused report) and the reference `candlelog health --json` (a process of its own, beside
the service). Prints
the medians and the load average. Stops the service with SIGTERM. Build first:
`cargo build --release --workspace --bins`.
"""
import os, re, signal, statistics, subprocess, sys, tempfile, time, urllib.request

def wait_line(path, pattern, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            m = re.search(pattern, open(path).read())
            if m:
                return m.group(1)
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {pattern!r} in {path}:\n{open(path).read()}")

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def main():
    data = sys.argv[1]
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 10
    gap = float(sys.argv[sys.argv.index("--gap") + 1]) if "--gap" in sys.argv else 5.2
    bin_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release")
    tmp = tempfile.mkdtemp()
    fake_log, run_log = os.path.join(tmp, "fake.log"), os.path.join(tmp, "run.log")
    fake = subprocess.Popen([os.path.join(bin_dir, "fake-binance"), "--port", "0"], stdout=open(fake_log, "w"), stderr=subprocess.STDOUT)
    try:
        addr = wait_line(fake_log, r"listening on http://([0-9.:]+)")
        env = dict(os.environ, RUST_LOG="info")
        svc = subprocess.Popen([os.path.join(bin_dir, "candlelog"), "--data-dir", data, "run", "--symbols", "BTCUSDT", "--interval", "1m",
                                "--lookback", "3", "--exchange-url", f"http://{addr}", "--stream-url", f"ws://{addr}", "--listen", "127.0.0.1:0"],
                               stdout=subprocess.DEVNULL, stderr=open(run_log, "w"), env=env)
        http = wait_line(run_log, r"serving /metrics and /health on http://([0-9.:]+)")
        wait_line(run_log, r"(stream connected)")
        t = {"/metrics": [], "/health": [], "/health (reused)": [], "health --json (CLI)": []}
        size = {}
        for _ in range(rounds):
            round_start = time.time()
            for key, path in (("/metrics", "/metrics"), ("/health", "/health"), ("/health (reused)", "/health")):
                start = time.perf_counter()
                code, body = get(f"http://{http}{path}")
                t[key].append((time.perf_counter() - start) * 1000)
                size[key] = (code, len(body))
            start = time.perf_counter()
            subprocess.run([os.path.join(bin_dir, "candlelog"), "--data-dir", data, "health", "--json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t["health --json (CLI)"].append((time.perf_counter() - start) * 1000)
            time.sleep(max(0.0, gap - (time.time() - round_start)))
        log_bytes = sum(os.path.getsize(os.path.join(data, "log", f)) for f in os.listdir(os.path.join(data, "log")))
        print(f"store {data}: log {log_bytes / 1e6:.1f} MB; {rounds} rounds; load average {os.getloadavg()}")
        for k, v in t.items():
            extra = f" (HTTP {size[k][0]}, {size[k][1]} bytes)" if k in size else ""
            print(f"  {k:<20} median {statistics.median(v):7.1f} ms  max {max(v):7.1f} ms{extra}")
        svc.send_signal(signal.SIGTERM)
        print(f"  service exit code on SIGTERM: {svc.wait(timeout=60)}")
    finally:
        fake.kill()

main()
