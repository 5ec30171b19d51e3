#!/bin/bash
# A/B of `verify --deep` between two candlelog builds on one data directory,
# interleaved with PRAGMA integrity_check of its projection (Python's sqlite3),
# RUNS times; /usr/bin/time gives wall, CPU (user+sys) and peak RSS of each.
# Usage: tools/bench_verify_ab.sh DATA_DIR OLD_BIN NEW_BIN   (RUNS=3)
set -euo pipefail
dir=$1 old=$2 new=$3
runs=${RUNS:-3}
uptime
for _ in $(seq "$runs"); do
  for b in "$old" "$new"; do
    /usr/bin/time -f "$b: wall %e s, cpu %U+%S s, rss %M KB" "$b" --data-dir "$dir" verify --deep >/dev/null
  done
  /usr/bin/time -f "integrity_check: wall %e s, cpu %U+%S s, rss %M KB" python3 -c "
import sqlite3, sys
c = sqlite3.connect('file:' + sys.argv[1] + '/candles.sqlite?mode=ro', uri=True)
r = c.execute('PRAGMA integrity_check').fetchone()[0]
assert r == 'ok', r" "$dir"
done
uptime
