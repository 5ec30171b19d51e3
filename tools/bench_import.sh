#!/usr/bin/env bash
# Bulk import: candlelog vs the replaced system's path (tools/legacy_import.py),
# plus the log's bytes per candle against the SQLite projection's.
#
#   bash tools/bench_import.sh            # 200 symbols x 12 months = 2,400 archives, 439,200 candles
#   SYMBOLS=20 MONTHS=3 bash tools/bench_import.sh     # a quick run
#
# Environment: SYMBOLS (200), MONTHS (12), RUNS (3, candlelog imports; the
# median is reported), LEGACY_RUNS (3, median reported), KEEP=1 keeps the
# temp dir. The legacy path is fsync-bound (about 4 fdatasyncs per file), so
# its time -- and the speed-up -- follows the disk's fsync latency; the script
# also runs it once with PRAGMA synchronous=OFF to show its CPU-only floor.
# Needs: cargo, python3 (stdlib only). Everything is written under one
# mktemp dir, removed at the end.
set -euo pipefail

SYMBOLS=${SYMBOLS:-200}
MONTHS=${MONTHS:-12}
RUNS=${RUNS:-3}
LEGACY_RUNS=${LEGACY_RUNS:-3}

cd "$(dirname "$0")/.."
# Quiet unless the build fails (then show why).
cargo build --release --quiet 2>/dev/null || cargo build --release
BIN=${CARGO_TARGET_DIR:-target}/release/candlelog

TMP=$(mktemp -d "${TMPDIR:-/tmp}/candlelog-bench.XXXXXX")
cleanup() { if [[ "${KEEP:-0}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "== generating $SYMBOLS symbols x $MONTHS months of 4h archives"
python3 tools/gen_archives.py "$TMP/archives" --symbols "$SYMBOLS" --months "$MONTHS"
FILES=$(find "$TMP/archives" -name '*.zip' | wc -l)
ZIP_BYTES=$(find "$TMP/archives" -name '*.zip' -printf '%s\n' | awk '{ s += $1 } END { print s }')
echo "   $FILES archives, $ZIP_BYTES bytes of zip"

echo "== candlelog import ($RUNS runs, fresh data dir each)"
times=()
for run in $(seq 1 "$RUNS"); do
    rm -rf "$TMP/data"
    t0=$(now)
    out=$("$BIN" --data-dir "$TMP/data" import "$TMP/archives")
    t1=$(now)
    CANDLES=$(sed -n 's/.*: \([0-9]*\) candles read.*/\1/p' <<<"$out")
    s=$(secs "$t0" "$t1")
    times+=("$s")
    echo "   run $run: $s s wall ($(rate "$CANDLES" "$s") candles/s) -- $out"
done
CL_S=$(printf '%s\n' "${times[@]}" | median)

echo "== legacy import: python3 sqlite3 executemany INSERT OR REPLACE, commit per file ($LEGACY_RUNS run(s))"
ltimes=()
for run in $(seq 1 "$LEGACY_RUNS"); do
    t0=$(now)
    out=$(python3 tools/legacy_import.py "$TMP/legacy.sqlite" "$TMP/archives")
    t1=$(now)
    s=$(secs "$t0" "$t1")
    ltimes+=("$s")
    echo "   run $run: $s s wall -- $out"
done
LEGACY_S=$(printf '%s\n' "${ltimes[@]}" | median)
t0=$(now)
out=$(python3 tools/legacy_import.py "$TMP/legacy-nosync.sqlite" "$TMP/archives" --synchronous off)
t1=$(now)
NOSYNC_S=$(secs "$t0" "$t1")
echo "   CPU-only floor: $NOSYNC_S s wall -- $out"

echo "== the other commands on the imported data dir"
t0=$(now); "$BIN" --data-dir "$TMP/data" verify >/dev/null; t1=$(now); V_S=$(secs "$t0" "$t1")
t0=$(now); "$BIN" --data-dir "$TMP/data" verify --deep >/dev/null; t1=$(now); VD_S=$(secs "$t0" "$t1")
t0=$(now); "$BIN" --data-dir "$TMP/data" rebuild >/dev/null; t1=$(now); RB_S=$(secs "$t0" "$t1")
echo "   verify:        $V_S s  ($(rate "$CANDLES" "$V_S") candles/s)"
echo "   verify --deep: $VD_S s  ($(rate "$CANDLES" "$VD_S") candles/s)"
echo "   rebuild:       $RB_S s  ($(rate "$CANDLES" "$RB_S") candles/s)"

echo "== bytes per candle"
LOG_BYTES=$(find "$TMP/data/log" -name '*.seg' -printf '%s\n' | awk '{ s += $1 } END { print s }')
# A compacted copy of the projection (VACUUM INTO also leaves the WAL behind).
python3 - "$TMP/data/candles.sqlite" "$TMP/vacuumed.sqlite" <<'EOF'
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
conn.execute("VACUUM INTO ?", (sys.argv[2],))
conn.close()
EOF
PROJ_BYTES=$(stat -c %s "$TMP/vacuumed.sqlite")
LEGACY_BYTES=$(stat -c %s "$TMP/legacy.sqlite")
INDEX_BYTES=$(stat -c %s "$TMP/data/index.redb")
awk -v l="$LOG_BYTES" -v p="$PROJ_BYTES" -v g="$LEGACY_BYTES" -v i="$INDEX_BYTES" -v n="$CANDLES" -v z="$ZIP_BYTES" 'BEGIN {
    printf "   log (DIR/log/*.seg):          %10d bytes = %6.1f B/candle\n", l, l / n
    printf "   SQLite projection (VACUUMed): %10d bytes = %6.1f B/candle\n", p, p / n
    printf "   legacy SQLite db:             %10d bytes = %6.1f B/candle\n", g, g / n
    printf "   redb index:                   %10d bytes = %6.1f B/candle\n", i, i / n
    printf "   source zips:                  %10d bytes = %6.1f B/candle\n", z, z / n
    printf "   log / projection = %.3f (target <= 0.333: %s)\n", l / p, (l / p <= 1 / 3) ? "pass" : "MISS"
}'

echo "== summary"
awk -v n="$CANDLES" -v f="$FILES" -v c="$CL_S" -v g="$LEGACY_S" -v o="$NOSYNC_S" 'BEGIN {
    printf "   %d candles in %d archives\n", n, f
    printf "   candlelog import: %.2f s = %.0f candles/s (median of runs)\n", c, n / c
    printf "   legacy import:    %.2f s = %.0f candles/s\n", g, n / g
    printf "   speed-up: %.1fx (target >= 10x: %s)\n", g / c, (g / c >= 10) ? "pass" : "MISS"
    printf "   (legacy with synchronous=OFF: %.2f s; candlelog is %.1fx its CPU-only floor)\n", o, o / c
}'
