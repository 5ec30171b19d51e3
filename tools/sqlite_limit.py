#!/usr/bin/env python3
"""The SQLite limit for a candlelog projection, and the best Python path.

    python3 tools/sqlite_limit.py DATA_DIR_OR_SQLITE [--runs 1] [--tmp DIR] [--no-python]

Given a candlelog data dir (its projection is DATA_DIR/candles.sqlite) or a
projection file, this makes fresh SQLite files with exactly the projection's
schema (the `CREATE` statements read from its sqlite_master) and loads the
same rows into them, timing three ways of doing it:

  limit      `INSERT INTO t SELECT * FROM staged ORDER BY rowid` in one
             transaction, the staged copy already in key order
             `(timestamp, symbol)`: SQLite's own speed for these rows, with
             no per-row host-language cost. This is "the SQLite limit" that
             `candlelog rebuild` is compared with.
  limit-wal  the same load into a file in WAL mode, as the projection is
             (so readers never wait on a writer), with `synchronous=NORMAL`
             as the projection has, then a `wal_checkpoint(TRUNCATE)`, timed,
             as `rebuild` does: the WAL is synced before its pages are copied
             into the file and the file after. Every page is written twice,
             to the WAL and back into the file. Not the issue's limit:
             printed beside it, to say what WAL mode costs. (Until
             2026-12-05 this load, like `rebuild`, ran with
             `synchronous=OFF`, under which the checkpoint synced neither
             file: faster, and not durable.)
  limit-page the limit's load into a file with the projection's page size,
             printed when that is not SQLite's default for a fresh file
             (candlelog creates its projections with 16 KiB pages, SQLite's
             default is 4 KiB). Larger pages make SQLite's own load faster
             too: `rebuild` is also given as a share of this.
  py-key     Python `executemany` of the same rows, in key order, one
             transaction.
  py-symbol  Python `executemany` in the order rows come from the exchange
             (symbol by symbol, then time), one transaction: the best Python
             path.

Each load creates the tables without their secondary indexes, inserts, then
creates the indexes (what `rebuild` does), all inside the one transaction,
and commits; the page cache is 64 MiB (`PRAGMA cache_size=-65536`, the
projection's). Journal and sync settings are SQLite's defaults for a fresh
file. Staging the rows (and, for the Python paths, reading them into a
list) is not timed. Prints seconds and candles/s per load (the median of
--runs), by the wall clock and by the process's CPU time (user + sys,
the fairer figure on a machine shared with other work). Needs python3 only (stdlib sqlite3); the rows read into Python need
about 0.5 kB of memory each.
"""

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time


def projection_path(arg):
    if os.path.isdir(arg):
        return os.path.join(arg, "candles.sqlite")
    return arg


def read_schema(src):
    """The candle tables and the CREATE statements (tables, then indexes)."""
    rows = src.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type DESC, name"
    ).fetchall()
    tables = [(name, sql) for type_, name, _, sql in rows if type_ == "table"]
    indexes = [(tbl, sql) for type_, _, tbl, sql in rows if type_ == "index"]
    candles = [name for name, _ in tables if name.startswith("ohlcv_")]
    return tables, indexes, candles


def columns(conn, table, schema="main"):
    return [r[1] for r in conn.execute("PRAGMA %s.table_info(%s)" % (schema, table))]


def fresh(path, tables, page_size=None):
    if os.path.exists(path):
        os.remove(path)
    conn = sqlite3.connect(path, isolation_level=None)
    if page_size:
        conn.execute("PRAGMA page_size=%d" % page_size)
    conn.execute("PRAGMA cache_size=-65536")
    return conn


def clocks():
    return time.perf_counter(), time.process_time()


def finish(conn, tables, indexes, t0):
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    wall, cpu = clocks()
    return wall - t0[0], cpu - t0[1]


def load_sql(path, stage_path, tables, indexes, candles, wal=False, page_size=None):
    conn = fresh(path, tables, page_size)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("ATTACH DATABASE ? AS stage", (stage_path,))
    t0 = clocks()
    conn.execute("BEGIN")
    for _, sql in tables:
        conn.execute(sql)
    for t in candles:
        conn.execute("INSERT INTO main.%s SELECT * FROM stage.%s ORDER BY rowid" % (t, t))
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("COMMIT")
    if wal:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wall, cpu = clocks()
    conn.close()
    return wall - t0[0], cpu - t0[1]


def load_python(path, tables, indexes, data):
    conn = fresh(path, tables)
    t0 = clocks()
    conn.execute("BEGIN")
    for _, sql in tables:
        conn.execute(sql)
    for t, cols, rows in data:
        marks = ",".join("?" * len(cols))
        conn.executemany("INSERT INTO %s (%s) VALUES (%s)" % (t, ",".join(cols), marks), rows)
    secs = finish(conn, tables, indexes, t0)
    conn.close()
    return secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="candlelog data dir or its projection (.sqlite)")
    ap.add_argument("--runs", type=int, default=1, help="loads of each kind; the median is printed")
    ap.add_argument("--tmp", help="where the fresh files go (default: a temp dir)")
    ap.add_argument("--no-python", action="store_true", help="time the SQL limit only")
    args = ap.parse_args()

    src_path = projection_path(args.source)
    if not os.path.isfile(src_path):
        sys.exit("sqlite_limit: no projection at %s: give a candlelog data dir or its .sqlite file" % src_path)
    src = sqlite3.connect("file:%s?mode=ro" % src_path, uri=True)
    tables, indexes, candles = read_schema(src)
    page_size = src.execute("PRAGMA page_size").fetchone()[0]
    if not candles:
        sys.exit("sqlite_limit: %s has no ohlcv_* table: nothing to load" % src_path)
    src.close()

    tmp = tempfile.mkdtemp(prefix="sqlite-limit.", dir=args.tmp)
    try:
        # The staged copy: plain rowid tables in key order (untimed).
        stage_path = os.path.join(tmp, "stage.sqlite")
        st = sqlite3.connect(stage_path, isolation_level=None)
        st.execute("PRAGMA journal_mode=OFF")
        st.execute("PRAGMA synchronous=OFF")
        st.execute("ATTACH DATABASE ? AS src", ("file:%s?mode=ro" % src_path,))
        n = 0
        for t in candles:
            cols = ",".join(columns(st, t, "src"))
            st.execute("CREATE TABLE %s AS SELECT %s FROM src.%s ORDER BY timestamp, symbol" % (t, cols, t))
            n += st.execute("SELECT count(*) FROM %s" % t).fetchone()[0]
        st.execute("DETACH DATABASE src")
        st.close()
        print("%s: %d candles in %s" % (src_path, n, ", ".join(candles)))

        def report(name, times):
            s = statistics.median(t[0] for t in times)
            c = statistics.median(t[1] for t in times)
            print(
                "  %-10s %8.3f s wall %10.0f candles/s | %8.3f s CPU %10.0f candles/s   (wall of each run: %s)"
                % (name, s, n / s, c, n / c, " ".join("%.3f" % t[0] for t in times))
            )

        out = os.path.join(tmp, "fresh.sqlite")
        report("limit", [load_sql(out, stage_path, tables, indexes, candles) for _ in range(args.runs)])
        report("limit-wal", [load_sql(out, stage_path, tables, indexes, candles, wal=True) for _ in range(args.runs)])
        default_page = sqlite3.connect(":memory:").execute("PRAGMA page_size").fetchone()[0]
        if page_size != default_page:
            name = "limit-page"
            report(name, [load_sql(out, stage_path, tables, indexes, candles, page_size=page_size) for _ in range(args.runs)])
            print("  (limit-page: the limit's load with the projection's %d-byte pages; limit: SQLite's default %d)" % (page_size, default_page))
        for f in (out + "-wal", out + "-shm"):
            if os.path.exists(f):
                os.remove(f)
        if not args.no_python:
            st = sqlite3.connect(stage_path)
            for order, name in (("timestamp, symbol", "py-key"), ("symbol, timestamp", "py-symbol")):
                data = []
                for t in candles:
                    cols = columns(st, t)
                    data.append((t, cols, st.execute("SELECT * FROM %s ORDER BY %s" % (t, order)).fetchall()))
                report(name, [load_python(out, tables, indexes, data) for _ in range(args.runs)])
                del data
            st.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
