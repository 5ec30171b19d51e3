#!/usr/bin/env python3
"""The replaced system's bulk-import path, kept as a baseline for benchmarks.

    python3 tools/legacy_import.py DB_PATH ARCHIVE_DIR [--synchronous off]

What the old cron scripts did with data.binance.vision archives: for each
`SYMBOL-4h-YYYY-MM.zip` (in path order), read the one CSV inside, turn each
row into (timestamp, symbol, open, high, low, close, volume, quote_volume,
trades_count), `executemany` an `INSERT OR REPLACE` into `ohlcv_h4` and
commit once per file. The database is created fresh with the schema of
DESIGN.md (table + symbol index) and Python's sqlite3 defaults (rollback
journal, synchronous=FULL), as the old scripts used it.

`--synchronous off` is not the old path: it sets `PRAGMA synchronous=OFF`
(no fsync at all) to show how much of the old path's time is its ~4
fdatasyncs per file and how much is CPU (Python + SQLite inserts).

Prints the elapsed seconds and candles/s on the last line:
    legacy: N files, C candles in S s = R candles/s

Python 3 standard library only.
"""

import argparse
import csv
import io
import os
import sqlite3
import sys
import time
import zipfile

SCHEMA = """
CREATE TABLE ohlcv_h4 (timestamp INTEGER NOT NULL,
  symbol TEXT NOT NULL, open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL,
  close REAL NOT NULL, volume REAL NOT NULL, quote_volume REAL NOT NULL,
  trades_count INTEGER NOT NULL, PRIMARY KEY (timestamp, symbol));
CREATE INDEX idx_ohlcv_h4_symbol ON ohlcv_h4(symbol);
"""

INSERT = (
    "INSERT OR REPLACE INTO ohlcv_h4 "
    "(timestamp, symbol, open, high, low, close, volume, quote_volume, trades_count) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def archives(root):
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if name.endswith(".zip"):
                found.append(os.path.join(dirpath, name))
    found.sort()
    return found


def rows_of(path):
    symbol = os.path.basename(path).split("-")[0]
    with zipfile.ZipFile(path) as z:
        name = z.namelist()[0]
        text = z.read(name).decode("utf-8")
    out = []
    for r in csv.reader(io.StringIO(text)):
        if not r or r[0] == "open_time":
            continue
        out.append((int(r[0]), symbol, float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]), float(r[7]), int(r[8])))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db_path")
    ap.add_argument("archive_dir")
    ap.add_argument("--synchronous", choices=("default", "off"), default="default")
    args = ap.parse_args()
    db_path, root = args.db_path, args.archive_dir
    for suffix in ("", "-journal", "-wal", "-shm"):
        if os.path.exists(db_path + suffix):
            os.remove(db_path + suffix)
    files = archives(root)
    started = time.perf_counter()
    conn = sqlite3.connect(db_path)
    if args.synchronous == "off":
        conn.execute("PRAGMA synchronous=OFF")
    conn.executescript(SCHEMA)
    candles = 0
    for path in files:
        rows = rows_of(path)
        conn.executemany(INSERT, rows)
        conn.commit()
        candles += len(rows)
    conn.close()
    elapsed = time.perf_counter() - started
    label = "legacy" if args.synchronous == "default" else "legacy (synchronous=OFF)"
    print("%s: %d files, %d candles in %.2f s = %.0f candles/s" % (label, len(files), candles, elapsed, candles / elapsed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
