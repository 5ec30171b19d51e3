#!/usr/bin/env bash
# `candlelog import` against the sqlite3 CLI's `.import` of the same rows
# (issue 12, target 3), run interleaved in one script.
#
#   bash tools/bench_import_vs_sqlite.sh                   # 200 symbols x 12 months = 439,200 candles
#   SYMBOLS=700 MONTHS=24 bash tools/bench_import_vs_sqlite.sh   # 3,070,200 candles (~3 min to generate)
#   bash tools/bench_import_vs_sqlite.sh ARCHIVES_DIR      # archives made by tools/gen_archives.py
#
# The reference: the rows of every archive, already unzipped and turned into
# the table's nine columns (timestamp, symbol, open, high, low, close,
# volume, quote_volume, trades_count) in one CSV file, in the order
# `candlelog import` reads them (path order: symbol by symbol), untimed;
# then, timed, one `sqlite3` process doing in one transaction: CREATE TABLE
# (the projection's schema), `.import --csv`, CREATE INDEX (the projection's
# symbol index), COMMIT -- with the projection's 64 MiB page cache and the
# CLI's defaults otherwise (rollback journal, synchronous=FULL). No log, no
# checksums, no validation. candlelog does all of those: it reads the zips,
# checks each `.CHECKSUM`, validates every candle, commits each group of
# files to the log (fdatasync) and fills the redb index and the projection.
#
# Environment: SYMBOLS (200), MONTHS (12), RUNS (3: each run is one candlelog
# import into a fresh data dir and one sqlite3 load into a fresh file,
# alternated; medians reported), BIN (default: target/release/candlelog,
# built here), SQLITE3 (default: sqlite3 on PATH), KEEP=1 keeps the temp dir.
# Prints wall and CPU (user + sys) seconds per run, the medians, the ratio
# candlelog / sqlite3 (below 1: candlelog is faster) and the load average.
set -euo pipefail

SYMBOLS=${SYMBOLS:-200}
MONTHS=${MONTHS:-12}
RUNS=${RUNS:-3}
SQLITE3=${SQLITE3:-sqlite3}

cd "$(dirname "$0")/.."
command -v "$SQLITE3" >/dev/null || { echo "no sqlite3 CLI ($SQLITE3): apt-get install sqlite3, or set SQLITE3" >&2; exit 2; }
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet 2>/dev/null || cargo build --release
    BIN=${CARGO_TARGET_DIR:-target}/release/candlelog
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/candlelog-import-vs-sqlite.XXXXXX")
cleanup() { if [[ "${KEEP:-0}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

SRC=${1:-}
if [[ -z "$SRC" ]]; then
    SRC="$TMP/archives"
    echo "== generating $SYMBOLS symbols x $MONTHS months of 4h archives"
    python3 tools/gen_archives.py "$SRC" --symbols "$SYMBOLS" --months "$MONTHS"
fi

echo "== the reference's input: every archive's rows as one 9-column CSV (untimed)"
python3 - "$SRC" "$TMP/rows.csv" <<'EOF'
import csv, io, os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
zips = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs if f.endswith(".zip"))
n = 0
with open(out, "w", newline="") as fh:
    w = csv.writer(fh, lineterminator="\n")
    for path in zips:
        symbol = os.path.basename(path).split("-")[0]
        with zipfile.ZipFile(path) as z:
            text = z.read(z.namelist()[0]).decode()
        for row in csv.reader(io.StringIO(text)):
            if not row or row[0] == "open_time":
                continue
            # open_time open high low close volume close_time quote_volume count ...
            w.writerow([row[0], symbol, row[1], row[2], row[3], row[4], row[5], row[7], row[8]])
            n += 1
print("   %d archives, %d rows, %d bytes of CSV" % (len(zips), n, os.path.getsize(out)))
EOF
CANDLES=$(wc -l <"$TMP/rows.csv")

cat >"$TMP/load.sql" <<EOF
PRAGMA cache_size=-65536;
BEGIN;
CREATE TABLE ohlcv_h4 (timestamp INTEGER NOT NULL, symbol TEXT NOT NULL, open REAL NOT NULL, high REAL NOT NULL, low REAL NOT NULL, close REAL NOT NULL, volume REAL NOT NULL, quote_volume REAL NOT NULL, trades_count INTEGER NOT NULL, PRIMARY KEY (timestamp, symbol));
.import --csv $TMP/rows.csv ohlcv_h4
CREATE INDEX idx_ohlcv_h4_symbol ON ohlcv_h4(symbol);
COMMIT;
SELECT count(*) FROM ohlcv_h4;
EOF

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
timed() { # label, command...: prints "wall cpu"
    /usr/bin/time -f '%e %U %S' -o "$TMP/time" "${@:2}" >"$TMP/out.$1" 2>&1 || { cat "$TMP/out.$1" >&2; exit 1; }
    read -r wall user sys <"$TMP/time"
    echo "$wall $(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')"
}

echo "== $RUNS runs, alternated ($CANDLES candles; load before: $(cut -d' ' -f1-3 /proc/loadavg))"
cl_w=(); cl_c=(); sq_w=(); sq_c=()
for run in $(seq 1 "$RUNS"); do
    rm -rf "$TMP/data"
    read -r w c < <(timed candlelog "$BIN" --data-dir "$TMP/data" import "$SRC")
    cl_w+=("$w"); cl_c+=("$c")
    echo "   run $run candlelog import: $w s wall, $c s CPU -- $(tail -1 "$TMP/out.candlelog")"
    rm -f "$TMP/ref.sqlite"
    read -r w c < <(timed sqlite3 "$SQLITE3" "$TMP/ref.sqlite" ".read $TMP/load.sql")
    sq_w+=("$w"); sq_c+=("$c")
    echo "   run $run sqlite3 .import:    $w s wall, $c s CPU -- $(tail -1 "$TMP/out.sqlite3") rows"
done
CLW=$(printf '%s\n' "${cl_w[@]}" | median); CLC=$(printf '%s\n' "${cl_c[@]}" | median)
SQW=$(printf '%s\n' "${sq_w[@]}" | median); SQC=$(printf '%s\n' "${sq_c[@]}" | median)

echo "== summary ($CANDLES candles; load after: $(cut -d' ' -f1-3 /proc/loadavg); $("$SQLITE3" --version | cut -d' ' -f1))"
awk -v n="$CANDLES" -v cw="$CLW" -v cc="$CLC" -v sw="$SQW" -v sc="$SQC" 'BEGIN {
    printf "   candlelog import: %.2f s wall = %.0f candles/s; %.2f s CPU (medians)\n", cw, n / cw, cc
    printf "   sqlite3 .import:  %.2f s wall = %.0f candles/s; %.2f s CPU\n", sw, n / sw, sc
    printf "   candlelog / sqlite3: %.2f by wall, %.2f by CPU (target: below 1 at every size: %s)\n", cw / sw, cc / sc, (cw < sw) ? "pass" : "MISS"
}'
