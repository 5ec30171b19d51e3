#!/usr/bin/env python3
"""The kill -9 matrix (issue 10): start an operation of the real binary, kill -9
it at a staggered moment, reopen the directory the way an operator would, and
check that nothing acknowledged was lost. Not run in CI (minutes of wall time).

    python3 tools/kill_matrix.py [--trials 40] [--first-run 100] [--ops import,sync,...]
                                 [--json OUT] [--keep]

Operations (each trial starts from a copy of the same baseline):

  first-run  `import` into a directory that does not exist yet (the real SKRUSDT
             archives in ../shared/data, or generated ones: alternating), killed
             between 0 and 300 ms after the start.
  import     `import` of 40 symbols x 12 months of generated archives into a
             directory that already holds 20 of those symbols.
  sync       `sync` of 60 symbols against tools/fake-binance (fixed clock 30
             days after the baseline's sync).
  backup     `backup --to REPO` (a fresh repository, or one holding an older backup).
  rebuild    `rebuild`.
  recover    `recover --from REPO` of a directory with damage (its projection
             deleted, a byte flipped in the projection, a byte flipped in a sealed
             segment, its index truncated: in turn).
  restore    `restore --from REPO --into NEW`, or `--force` into an existing
             directory (in turn).

After each kill: a writer opens the directory (`init`; after `recover`, `recover`
again, as the runbook says; after `restore`, the restore again when the target is
not in place), then `verify --deep`. A trial *survived* when those exit 0 with no
manual step; otherwise the directory is *bricked*. *Acknowledged* candles are those
the killed run had reported committed (`import -v`'s "committed lsn=N", `sync -v`'s
"series synced status=ok") plus everything the baseline held; *lost* counts those
missing afterwards. A kill that landed after the process had exited on its own is
counted apart (`mid-run` counts the others). `leftovers` counts trials after which
hidden work files of the killed process (`.*.tmp-<pid>`, `.snapshot-<pid>.sqlite`,
`.base-<pid>.sqlite`) were still in the data directory after the next writer.

Needs `cargo build --release -p candlelog -p fake-binance`; Python 3 standard
library only.
"""

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from matrix_common import copy, flip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/candlelog")
FAKE = os.path.join(ROOT, "target/release/fake-binance")
SHARED = os.path.join(ROOT, "../shared/data/binance/data.binance.vision")
SEG = ["--segment-bytes", "131072"]
T0 = 1772323800000  # 2026-03-01 00:10 UTC: the baseline sync
T1 = T0 + 30 * 86400000  # the trials' sync: 30 days of new 4h candles per symbol


def run(args, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, **kw)


def rows(db):
    """Every row of every ohlcv_* table: {(table, timestamp, symbol): values}."""
    if not os.path.exists(db):
        return {}
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = {}
        for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'ohlcv_%'"):
            for r in c.execute(f"SELECT * FROM {t}"):
                out[(t, r[0], r[1])] = r[2:]
        return out
    finally:
        c.close()


def head_lsn(d):
    r = run(["--data-dir", d, "status", "--json"])
    try:
        return json.loads(r.stdout)["head_lsn"]
    except (ValueError, KeyError):
        return None


def kill_at(args, delay, env=None):
    """Starts the binary, kills it with SIGKILL after `delay` s; returns (stderr, landed mid-run)."""
    p = subprocess.Popen([BIN] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(delay)
    mid = p.poll() is None
    if mid:
        p.send_signal(signal.SIGKILL)
    _, err = p.communicate()
    return err, mid


def timed(args):
    t = time.monotonic()
    r = run(args)
    if r.returncode != 0:
        sys.exit(f"baseline step failed: {' '.join(args)}\n{r.stdout}\n{r.stderr}")
    return time.monotonic() - t


class Fake:
    def __init__(self, at_ms, latency_ms):
        self.p = subprocess.Popen(
            [FAKE, "--port", "0", "--time", str(at_ms), "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True
        )
        line = self.p.stdout.readline()
        m = re.match(r"listening on (\S+)", line)
        if not m:
            sys.exit(f"fake-binance did not start: {line!r}")
        self.url = m.group(1)

    def stop(self):
        self.p.kill()
        self.p.wait()


class Result:
    def __init__(self, op):
        self.op = op
        self.trials = self.mid = self.survived = self.bricked = self.lost = self.quarantined = self.leftovers = 0
        self.failures = []

    def record(self, ok, lost, why, mid, quarantined=False, leftovers=()):
        self.trials += 1
        self.leftovers += bool(leftovers)
        if leftovers and len(self.failures) < 5:
            self.failures.append(f"left behind after the next writer: {leftovers}")
        self.mid += mid
        self.survived += ok
        self.bricked += not ok
        self.lost += lost
        self.quarantined += quarantined
        if (not ok or lost) and len(self.failures) < 5:
            self.failures.append(why)


def reopen_and_check(d, acked_rows, acked_lsn=0, writer=("init",)):
    """A writer, then verify --deep; returns (ok, lost candles, why)."""
    w = run(["--data-dir", d] + SEG + list(writer))
    v = run(["--data-dir", d, "verify", "--deep"])
    now = rows(os.path.join(d, "candles.sqlite"))
    lost = sum(1 for k, val in acked_rows.items() if now.get(k) != val)
    head = head_lsn(d) or 0
    lost += max(0, acked_lsn - head)
    ok = w.returncode == 0 and v.returncode == 0
    why = f"writer {w.returncode}: {w.stderr.strip()[-300:]} | verify {v.returncode}: {v.stdout.strip()[-300:]}"
    return ok, lost, why


def leftovers(d):
    """Hidden work files of a killed process still in the data directory after the next writer."""
    if not os.path.isdir(d):
        return []
    return [n for n in os.listdir(d) if n.startswith(".") and (".tmp-" in n or n.startswith((".snapshot-", ".base-")))]


def committed_lsn(stderr):
    return max([int(m) for m in re.findall(r"committed .*lsn=(\d+)", stderr)] or [0])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=40, help="trials per operation (default 40)")
    ap.add_argument("--first-run", type=int, default=100, help="first-run trials (default 100)")
    ap.add_argument("--ops", default="first-run,import,sync,backup,rebuild,recover,restore")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--seed", type=int, default=10)
    a = ap.parse_args()
    for b in (BIN, FAKE):
        if not os.path.exists(b):
            sys.exit(f"{b} is missing: cargo build --release -p candlelog -p fake-binance")
    rng = random.Random(a.seed)
    ops = a.ops.split(",")
    work = tempfile.mkdtemp(prefix="kill-matrix-")
    started = time.time()
    J = lambda *p: os.path.join(work, *p)  # noqa: E731
    results = []
    try:
        # Baselines.
        subprocess.run([sys.executable, os.path.join(ROOT, "tools/gen_archives.py"), J("arch"), "--symbols", "40", "--months", "12"],
                       check=True, capture_output=True)
        arch = J("arch", "data.binance.vision")
        klines = os.path.join(arch, "futures/um/monthly/klines")
        half = [os.path.join(klines, s) for s in sorted(os.listdir(klines))[:20]]
        t_half = timed(["--data-dir", J("half")] + SEG + ["import", "--group-files", "10"] + half)
        t_import = timed(["--data-dir", J("full")] + SEG + ["import", "--group-files", "10", arch])
        full_rows = rows(J("full", "candles.sqlite"))
        half_rows = rows(J("half", "candles.sqlite"))
        copy(J("full"), J("probe-rebuild"))
        t_rebuild = timed(["--data-dir", J("probe-rebuild"), "rebuild"])
        t_backup = timed(["--data-dir", J("full"), "backup", "--to", J("repo")])
        t_restore = timed(["restore", "--from", J("repo"), "--into", J("probe-restore")])
        full_rows = rows(J("full", "candles.sqlite"))  # after backup's Run record (rows unchanged)

        if "first-run" in ops:
            r = Result("first-run")
            gen_small = J("arch-small")
            subprocess.run([sys.executable, os.path.join(ROOT, "tools/gen_archives.py"), gen_small, "--symbols", "8", "--months", "12"],
                           check=True, capture_output=True)
            for i in range(a.first_run):
                src = SHARED if i % 2 == 0 else os.path.join(gen_small, "data.binance.vision")
                d = J("fr")
                shutil.rmtree(d, ignore_errors=True)
                delay = 0.300 * i / max(1, a.first_run - 1)
                err, mid = kill_at(["--data-dir", d, "-v", "import", src], delay)
                acked = committed_lsn(err)
                # Nothing half-made: a reader right after the kill finds no damage.
                pre = run(["--data-dir", d, "verify"]) if os.path.isdir(d) else None
                ok, lost, why = reopen_and_check(d, {}, acked)
                q = os.path.isdir(os.path.join(d, "quarantine"))
                left = [n for n in os.listdir(d) if ".tmp-" in n] if os.path.isdir(d) else []
                if pre is not None and pre.returncode != 0:
                    ok, why = False, f"verify right after the kill: {pre.stdout.strip()[-300:]}"
                if q or left:
                    ok, why = False, f"quarantine={q} temporaries left={left}"
                r.record(ok, lost, f"delay {delay*1000:.0f} ms: {why}", mid, q)
            results.append(r)

        if "import" in ops:
            r = Result("import")
            for i in range(a.trials):
                d = J("t")
                copy(J("half"), d)
                delay = rng.uniform(0, 1.1 * t_import)
                err, mid = kill_at(["--data-dir", d, "-v"] + SEG + ["import", "--group-files", "10", arch], delay)
                ok, lost, why = reopen_and_check(d, half_rows, committed_lsn(err))
                r.record(ok, lost, f"delay {delay*1000:.0f} ms: {why}", mid, leftovers=leftovers(d))
            results.append(r)

        if "sync" in ops:
            r = Result("sync")
            base_fake = Fake(T0, 0)
            timed(["--data-dir", J("sync0"), "sync", "--exchange-url", base_fake.url, "--lookback", "60"])
            base_fake.stop()
            sync_rows = rows(J("sync0", "candles.sqlite"))
            fake = Fake(T1, 2)
            try:
                copy(J("sync0"), J("sync-probe"))
                t_sync = timed(["--data-dir", J("sync-probe"), "sync", "--exchange-url", fake.url])
                probe = rows(J("sync-probe", "candles.sqlite"))
                for i in range(a.trials):
                    d = J("t")
                    copy(J("sync0"), d)
                    delay = rng.uniform(0, 1.1 * t_sync)
                    err, mid = kill_at(["--data-dir", d, "-v", "sync", "--exchange-url", fake.url], delay)
                    done = set(re.findall(r'series synced symbol=(\S+) interval=\S+ status="?ok\b', err))
                    acked = dict(sync_rows)
                    acked.update({k: v for k, v in probe.items() if k[2] in done})
                    ok, lost, why = reopen_and_check(d, acked)
                    r.record(ok, lost, f"delay {delay*1000:.0f} ms: {why}", mid, leftovers=leftovers(d))
            finally:
                fake.stop()
            results.append(r)

        if "backup" in ops:
            r = Result("backup")
            for i in range(a.trials):
                d, repo = J("t"), J("trepo")
                copy(J("full"), d)
                shutil.rmtree(repo, ignore_errors=True)
                if i % 2:
                    copy(J("repo"), repo)  # an incremental backup over an older one
                delay = rng.uniform(0, 1.1 * t_backup)
                # --snapshot: over an older repository a snapshot is taken whatever the spacing, so the kill can land in it.
                _, mid = kill_at(["--data-dir", d, "backup", "--to", repo, "--snapshot"], delay)
                ok, lost, why = reopen_and_check(d, full_rows)
                left = leftovers(d)
                # The repository survives too: it verifies (when it got as far as its marker) and takes the next backup.
                nb = run(["--data-dir", d, "backup", "--to", repo])
                bv = run(["backup", "verify", "--from", repo, "--deep"])
                if nb.returncode != 0 or bv.returncode != 0:
                    ok, why = False, f"repository after the kill: backup {nb.returncode} {nb.stderr.strip()[-200:]} | verify {bv.returncode} {bv.stdout.strip()[-300:]}"
                r.record(ok, lost, f"delay {delay*1000:.0f} ms: {why}", mid, leftovers=left)
            results.append(r)

        if "rebuild" in ops:
            r = Result("rebuild")
            for i in range(a.trials):
                d = J("t")
                copy(J("full"), d)
                delay = rng.uniform(0, 1.1 * t_rebuild)
                _, mid = kill_at(["--data-dir", d, "rebuild"], delay)
                ok, lost, why = reopen_and_check(d, full_rows)
                r.record(ok, lost, f"delay {delay*1000:.0f} ms: {why}", mid, leftovers=leftovers(d))
            results.append(r)

        if "recover" in ops:
            r = Result("recover")
            t_recover = {}
            damages = ["projection deleted", "projection byte", "sealed segment byte", "index truncated"]
            for i in range(a.trials):
                d = J("t")
                copy(J("full"), d)
                kind = damages[i % len(damages)]
                if kind == "projection deleted":
                    os.remove(os.path.join(d, "candles.sqlite"))
                elif kind == "projection byte":
                    p = os.path.join(d, "candles.sqlite")
                    flip(p, rng.randrange(4096, os.path.getsize(p)))
                elif kind == "sealed segment byte":
                    segs = sorted(n for n in os.listdir(os.path.join(d, "log")) if n.endswith(".seg"))
                    p = os.path.join(d, "log", segs[0])
                    flip(p, rng.randrange(100, os.path.getsize(p) - 100))
                else:
                    p = os.path.join(d, "index.redb")
                    os.truncate(p, os.path.getsize(p) // 2)
                if kind not in t_recover:
                    copy(d, J("rprobe"))
                    t_recover[kind] = timed(["--data-dir", J("rprobe"), "recover", "--from", J("repo")])
                delay = rng.uniform(0, 1.1 * t_recover[kind])
                _, mid = kill_at(["--data-dir", d, "recover", "--from", J("repo")], delay)
                ok, lost, why = reopen_and_check(d, full_rows, writer=("recover", "--from", J("repo")))
                r.record(ok, lost, f"{kind}, delay {delay*1000:.0f} ms: {why}", mid, leftovers=leftovers(d))
            results.append(r)

        if "restore" in ops:
            r = Result("restore")
            for i in range(a.trials):
                target = J("rt")
                force = i % 2 == 1
                shutil.rmtree(target, ignore_errors=True)
                for n in os.listdir(work):
                    if n.startswith("rt.") or n.startswith(".rt."):
                        shutil.rmtree(J(n), ignore_errors=True)
                if force:
                    copy(J("half"), target)  # an existing directory being replaced
                delay = rng.uniform(0, 1.1 * t_restore)
                args = ["restore", "--from", J("repo"), "--into", target] + (["--force"] if force else [])
                _, mid = kill_at(args, delay)
                # The target is either the old directory, whole, or the new one, whole.
                before = rows(os.path.join(target, "candles.sqlite")) if os.path.isdir(target) else None
                intact = before in (half_rows, full_rows) if force else before in (None, full_rows)
                # Unless the new directory is in place, the operator runs the restore again.
                again = run(args) if before != full_rows else None
                ok, lost, why = reopen_and_check(target, full_rows)
                again_ok = again is None or again.returncode == 0
                ok = ok and again_ok and intact
                restore_left = [n for n in os.listdir(work) if n.startswith(".rt.restore-")]
                if not intact:
                    why = f"the target after the kill is neither the old nor the new directory (exists: {os.path.isdir(target)}) | {why}"
                elif not again_ok:
                    why = f"restore again exit {again.returncode}: {again.stderr.strip()[-300:]}"
                elif restore_left:
                    ok, why = False, f"leftover temporaries: {restore_left}"
                r.record(ok, lost, f"{'--force ' if force else ''}delay {delay*1000:.0f} ms: {why}", mid)
            results.append(r)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)

    total = Result("total")
    for r in results:
        for f in ("trials", "mid", "survived", "bricked", "lost", "quarantined", "leftovers"):
            setattr(total, f, getattr(total, f) + getattr(r, f))
    print(f"kill -9 matrix, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, {platform.node()} "
          f"({os.cpu_count()} CPUs), {time.time() - started:.0f} s")
    print(f"{'operation':<10} {'trials':>6} {'mid-run':>7} {'survived':>8} {'bricked':>7} {'lost':>5} {'quarantined':>11} {'leftovers':>9}")
    for r in results + [total]:
        print(f"{r.op:<10} {r.trials:>6} {r.mid:>7} {r.survived:>8} {r.bricked:>7} {r.lost:>5} {r.quarantined:>11} {r.leftovers:>9}")
    for r in results:
        for f in r.failures:
            print(f"  {r.op}: {f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"started": started, "results": [vars(r) for r in results + [total]]}, f, indent=2)
    sys.exit(1 if total.bricked or total.lost else 0)


if __name__ == "__main__":
    main()
