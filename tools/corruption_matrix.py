#!/usr/bin/env python3
"""The corruption matrix (issue 10): flip real bytes at many offsets of every kind
of file candlelog keeps, run the real binary's checkers, and count what they
detect. Not run in CI (minutes of wall time).

    python3 tools/corruption_matrix.py [--offsets 40] [--kinds sealed-segment,...] [--json OUT] [--keep]

Each trial copies a healthy data directory or repository, XORs one byte with 0xFF
at one offset of one file, and runs:

  data directory files   `verify --deep --json` and `health --json`
  repository files       `backup verify --from REPO --deep --json`

A flip is *detected* by a checker when it exits non-zero (health: its integrity or
consistency check is no longer OK) and *located* when the output names the file,
and for the log's files (segments, `base.json`) also a byte offset. A flip that
leaves what the file means unchanged (SQLite: the same rows and schema and a
clean `integrity_check`) is counted apart as *no effect*: there is nothing to
detect. Any exit 101 or "panicked" is a panic. Offsets: the first 64 bytes one by
one in steps, then evenly spread over the whole file, then random.

Needs `cargo build --release`; Python 3 standard library only.
"""

import argparse
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

from matrix_common import copy, flip

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/candlelog")
SEG = ["--segment-bytes", "65536"]


def run(args, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, **kw)


def must(args):
    r = run(args)
    if r.returncode != 0:
        sys.exit(f"setup step failed: {' '.join(args)}\n{r.stdout}\n{r.stderr}")
    return r


def sqlite_meaning(path):
    """Schema, rows and integrity of an SQLite file, or None when it cannot be read."""
    try:
        c = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            schema = sorted(c.execute("SELECT type, name, sql FROM sqlite_master").fetchall(), key=repr)
            data = {}
            for (t,) in c.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                data[t] = sorted(c.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
            ok = c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            return (schema, data, ok)
        finally:
            c.close()
    except sqlite3.Error:
        return None


def after_a_writer(tree, more):
    """What a data directory holds after the next writer imports `more` into it:
    the import's and `verify --deep`'s exit codes, `status` and the projection's
    rows. redb keeps no page checksums, so a flip in an index is judged by its
    effect: one that leaves this as it is for a healthy copy changed nothing a
    reader or a writer uses (the unused commit slot of its header, free pages)."""
    imported = run(["--data-dir", tree, "import", more]).returncode
    verified = run(["--data-dir", tree, "verify", "--deep"]).returncode
    meaning = sqlite_meaning(os.path.join(tree, "candles.sqlite"))
    # The head hash and the log's size follow the new frames' commit times: they differ from run to run.
    status = re.sub(r"[0-9a-f]{64}|\d+ bytes", "", run(["--data-dir", tree, "status"]).stdout)
    candles = meaning and {t: rows for t, rows in meaning[1].items() if t.startswith("ohlcv_")}
    return (imported, verified, status, candles)


def offsets(size, n, rng):
    head = list(range(0, min(64, size), 4))
    spread = [size * k // n for k in range(n)]
    rand = [rng.randrange(size) for _ in range(max(1, n // 4))]
    return sorted(set(o for o in head + spread + rand if 0 <= o < size))


class Tally:
    def __init__(self, kind, checker):
        self.kind, self.checker = kind, checker
        self.flips = self.detected = self.located = self.no_effect = self.panics = 0
        self.missed = []

    def row(self):
        real = self.flips - self.no_effect
        return f"{self.kind:<22} {self.checker:<20} {self.flips:>5} {self.no_effect:>9} {self.detected:>8}/{real:<5} {self.located:>7} {self.panics:>6}"


def named(out, path, want_offset):
    base = os.path.basename(path)
    if base not in out:
        return False
    if not want_offset:
        return True
    try:
        j = json.loads(out)
        return any(p.get("offset") is not None for p in j.get("problems", []) if base in (p.get("path") or ""))
    except ValueError:
        return "offset" in out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--offsets", type=int, default=40, help="evenly spread offsets per file (plus the header and random ones)")
    ap.add_argument("--kinds", help="comma-separated subset of the file kinds")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--seed", type=int, default=10)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit(f"{BIN} is missing: cargo build --release")
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="corruption-matrix-")
    J = lambda *p: os.path.join(work, *p)  # noqa: E731
    started = time.time()
    tallies = []
    try:
        subprocess.run([sys.executable, os.path.join(ROOT, "tools/gen_archives.py"), J("arch"), "--symbols", "10", "--months", "6"],
                       check=True, capture_output=True)
        # A data directory with sealed segments and an active one, backed up.
        must(["--data-dir", J("data")] + SEG + ["import", "--group-files", "5", J("arch")])
        must(["--data-dir", J("data"), "backup", "--to", J("repo")])
        must(["--data-dir", J("data")] + SEG + ["import", os.path.join(ROOT, "../shared/data/binance/data.binance.vision")])
        # A pruned repository and a directory restored from it (log base: base.json, base.sqlite.zst).
        tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
        copy(J("data"), J("data2"))
        with open(J("data2", "candlelog.toml"), "w") as f:
            f.write(f'[[backup.repositories]]\npath = "{J("prepo")}"\nkeep_days = 0\n')
        must(["--data-dir", J("data2"), "backup"])
        must(["--data-dir", J("data2"), "backup", "--snapshot", "--prune-segments-before", tomorrow])
        must(["restore", "--from", J("prepo"), "--into", J("pruned")])
        for d in ("data", "pruned"):
            if run(["--data-dir", J(d), "verify", "--deep"]).returncode != 0:
                sys.exit(f"the healthy {d} directory does not verify")

        log = J("data", "log")
        segs = sorted(n for n in os.listdir(log) if n.endswith(".seg"))
        repo_segs = sorted(os.listdir(J("repo", "segments")))
        snaps = sorted(os.listdir(J("repo", "snapshots")))
        repo_files = sorted(n for n in os.listdir(J("repo")) if os.path.isfile(J("repo", n)))
        # prepo's second snapshot is a delta of its first (issue 12).
        deltas = sorted(n for n in os.listdir(J("prepo", "snapshots")) if n.endswith(".delta.zst"))
        # kind → (tree to copy, file inside it, checkers, offset expected in the output)
        kinds = {
            "sealed-segment": ("data", os.path.join("log", segs[len(segs) // 2]), ["verify", "health"], True),
            "active-segment": ("data", os.path.join("log", segs[-1]), ["verify", "health"], True),
            "projection.sqlite": ("data", "candles.sqlite", ["verify", "health"], False),
            "index.redb": ("data", "index.redb", ["verify", "health"], False),
            "base.json": ("pruned", os.path.join("log", "base.json"), ["verify", "health"], False),
            "base.sqlite.zst": ("pruned", os.path.join("log", "base.sqlite.zst"), ["verify", "health"], False),
            "repo segment": ("repo", os.path.join("segments", repo_segs[0]), ["backup-verify"], False),
            "repo snapshot": ("repo", os.path.join("snapshots", next(s for s in snaps if s.endswith(".sqlite.zst"))), ["backup-verify"], False),
            "repo manifest": ("repo", os.path.join("snapshots", next(s for s in snaps if s.endswith(".json"))), ["backup-verify"], False),
        }
        if deltas:
            kinds["repo delta snapshot"] = ("prepo", os.path.join("snapshots", deltas[0]), ["backup-verify"], False)
        for n in repo_files:
            kinds[f"repo {n}"] = ("repo", n, ["backup-verify"], False)
        if a.kinds:
            kinds = {k: v for k, v in kinds.items() if k in a.kinds.split(",")}
        # Archives for the writer that judges an index flip's effect: 2 more symbols, 2 more months.
        more = J("arch-more")
        if any(rel.endswith(".redb") for _, rel, _, _ in kinds.values()):
            subprocess.run([sys.executable, os.path.join(ROOT, "tools/gen_archives.py"), more, "--symbols", "12", "--months", "8"],
                           check=True, capture_output=True)

        for kind, (tree, rel, checkers, want_offset) in kinds.items():
            src = J(tree)
            size = os.path.getsize(os.path.join(src, rel))
            ts = {c: Tally(kind, c) for c in checkers}
            is_sqlite, is_redb = rel.endswith(".sqlite"), rel.endswith(".redb")
            healthy = sqlite_meaning(os.path.join(src, rel)) if is_sqlite else None
            if is_redb:
                copy(src, J("t"))
                healthy = after_a_writer(J("t"), more)
                shutil.rmtree(J("t"), ignore_errors=True)
            for off in offsets(size, a.offsets, rng):
                t = J("t")
                copy(src, t)
                path = os.path.join(t, rel)
                flip(path, off)
                outcomes = []
                for c in checkers:
                    if c == "verify":
                        r = run(["--data-dir", t, "verify", "--deep", "--json"])
                        bad = r.returncode != 0
                    elif c == "health":
                        r = run(["--data-dir", t, "health", "--json"])
                        try:
                            checks = json.loads(r.stdout)["checks"]
                            bad = any(x["name"] in ("integrity", "consistency") and x["status"] != "OK" for x in checks)
                        except (ValueError, KeyError):
                            bad = r.returncode == 3  # UNKNOWN: health could not read it (an error)
                    else:
                        r = run(["backup", "verify", "--from", t, "--deep", "--json"])
                        bad = r.returncode != 0
                    outcomes.append((c, r, bad))
                if is_sqlite:
                    no_effect = sqlite_meaning(path) == healthy
                else:
                    # The checkers only read: the same copy then takes the writer, at the healthy one's path.
                    no_effect = is_redb and after_a_writer(t, more) == healthy
                for c, r, bad in outcomes:
                    out = r.stdout + r.stderr
                    x = ts[c]
                    x.flips += 1
                    x.no_effect += no_effect and not bad
                    panicked = r.returncode == 101 or "panicked" in r.stderr
                    x.panics += panicked
                    if bad and not panicked:
                        x.detected += 1
                        x.located += named(out, rel, want_offset and c == "verify")
                    elif not no_effect and len(x.missed) < 40:
                        x.missed.append({"offset": off, "exit": r.returncode, "output": out.strip()[-160:]})
                shutil.rmtree(t, ignore_errors=True)
            tallies.extend(ts.values())
    finally:
        if a.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(f"corruption matrix, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, {platform.node()} "
          f"({os.cpu_count()} CPUs), {time.time() - started:.0f} s")
    print(f"{'file':<22} {'checker':<20} {'flips':>5} {'no effect':>9} {'detected':>14} {'located':>7} {'panics':>6}")
    for x in tallies:
        print(x.row())
    flips = sum(x.flips for x in tallies)
    real = flips - sum(x.no_effect for x in tallies)
    det = sum(x.detected for x in tallies)
    print(f"total: {flips} checker runs on flipped files, {real} with an effect, {det} detected, "
          f"{sum(x.located for x in tallies)} located, {sum(x.panics for x in tallies)} panics")
    for x in tallies:
        for m in x.missed:
            print(f"  missed: {x.kind} / {x.checker} at offset {m['offset']}: exit {m['exit']}: {m['output']!r}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"started": started, "tallies": [vars(x) for x in tallies]}, f, indent=2)
    sys.exit(1 if det < real or any(x.panics for x in tallies) else 0)


if __name__ == "__main__":
    main()
