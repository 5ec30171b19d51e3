#!/usr/bin/env bash
# `candlelog rebuild` against the SQLite limit (tools/sqlite_limit.py) on one data dir.
#
#   bash tools/bench_rebuild.sh DATA_DIR            # a dir made by `candlelog import`
#   SYMBOLS=200 MONTHS=12 bash tools/bench_rebuild.sh   # no dir: generate one (439,200 candles)
#
# Environment: RUNS (3; rebuilds, the median is reported), LIMIT_RUNS (1),
# BIN (default: target/release/candlelog, built here), PYTHON=0 skips the
# Python paths of sqlite_limit.py. Prints, for the rebuild and for the limit,
# wall seconds and CPU seconds (user + sys) with candles/s, and the ratios.
# A generated dir lives in a temp dir removed at the end (KEEP=1 keeps it).
# PAIRS=N (0) then runs N back-to-back pairs (a rebuild, then the limit
# alone) and prints the median of each pair's share: the figure least moved
# by the host's speed drifting between the runs above.
set -euo pipefail

RUNS=${RUNS:-3}
LIMIT_RUNS=${LIMIT_RUNS:-1}

cd "$(dirname "$0")/.."
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet 2>/dev/null || cargo build --release
    BIN=${CARGO_TARGET_DIR:-target}/release/candlelog
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/candlelog-rebuild.XXXXXX")
cleanup() { if [[ "${KEEP:-0}" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi; }
trap cleanup EXIT

DIR=${1:-}
if [[ -z "$DIR" ]]; then
    DIR="$TMP/data"
    python3 tools/gen_archives.py "$TMP/archives" --symbols "${SYMBOLS:-200}" --months "${MONTHS:-12}"
    "$BIN" --data-dir "$DIR" import "$TMP/archives"
fi

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "== candlelog rebuild ($RUNS runs) on $DIR"
walls=()
cpus=()
for run in $(seq 1 "$RUNS"); do
    /usr/bin/time -f '%e %U %S' -o "$TMP/time" "$BIN" --data-dir "$DIR" rebuild >"$TMP/out"
    read -r wall user sys <"$TMP/time"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    walls+=("$wall")
    cpus+=("$cpu")
    echo "   run $run: $wall s wall, $cpu s CPU -- $(cat "$TMP/out")"
done
CANDLES=$(sed -n 's/.*(\([0-9][0-9]*\) candles).*/\1/p' "$TMP/out" | head -1)
RB_WALL=$(printf '%s\n' "${walls[@]}" | median)
RB_CPU=$(printf '%s\n' "${cpus[@]}" | median)

echo "== SQLite limit ($LIMIT_RUNS run(s))"
args=(--runs "$LIMIT_RUNS")
[[ "${PYTHON:-1}" == 0 ]] && args+=(--no-python)
python3 tools/sqlite_limit.py "$DIR" "${args[@]}" | tee "$TMP/limit"
read -r L_WALL L_CPU < <(awk '$1 == "limit" { print $2, $8 }' "$TMP/limit")
PY_WALL=$(awk '$1 == "py-symbol" { print $2 }' "$TMP/limit")
WAL_WALL=$(awk '$1 == "limit-wal" { print $2 }' "$TMP/limit")
PAGE_WALL=$(awk '$1 == "limit-page" { print $2 }' "$TMP/limit")

echo "== summary ($CANDLES candles)"
awk -v n="$CANDLES" -v rw="$RB_WALL" -v rc="$RB_CPU" -v lw="$L_WALL" -v lc="$L_CPU" -v py="${PY_WALL:-0}" -v ww="${WAL_WALL:-0}" -v pw="${PAGE_WALL:-0}" 'BEGIN {
    printf "   rebuild: %.2f s wall = %.0f candles/s; %.2f s CPU = %.0f candles/s (medians)\n", rw, n / rw, rc, n / rc
    printf "   limit:   %.2f s wall = %.0f candles/s; %.2f s CPU = %.0f candles/s\n", lw, n / lw, lc, n / lc
    printf "   rebuild / limit: %.0f %% by wall, %.0f %% by CPU (target >= 70 %%)\n", 100 * lw / rw, 100 * lc / rc
    if (pw > 0) printf "   rebuild / limit-page (the limit with the projection'"'"'s page size): %.0f %% by wall\n", 100 * pw / rw
    if (ww > 0) printf "   rebuild / limit-wal (the same load in WAL mode, as the projection is): %.0f %% by wall\n", 100 * ww / rw
    if (py > 0) printf "   rebuild / best Python path (py-symbol, wall): %.1fx (target >= 3x)\n", py / rw
}'

PAIRS=${PAIRS:-0}
if (( PAIRS > 0 )); then
    echo "== $PAIRS pairs: rebuild, then the limit"
    shares=()
    pshares=()
    for pair in $(seq 1 "$PAIRS"); do
        /usr/bin/time -f '%e' -o "$TMP/time" "$BIN" --data-dir "$DIR" rebuild >/dev/null
        rw=$(cat "$TMP/time")
        python3 tools/sqlite_limit.py "$DIR" --runs 1 --no-python >"$TMP/limit"
        lw=$(awk '$1 == "limit" { print $2 }' "$TMP/limit")
        pw=$(awk '$1 == "limit-page" { print $2 }' "$TMP/limit")
        share=$(awk -v r="$rw" -v l="$lw" 'BEGIN { printf "%.0f", 100 * l / r }')
        shares+=("$share")
        if [[ -n "$pw" ]]; then
            pshare=$(awk -v r="$rw" -v l="$pw" 'BEGIN { printf "%.0f", 100 * l / r }')
            pshares+=("$pshare")
            echo "   pair $pair: rebuild $rw s, limit $lw s: $share %; limit-page $pw s: $pshare %"
        else
            echo "   pair $pair: rebuild $rw s, limit $lw s: $share %"
        fi
    done
    echo "   rebuild / limit, median of the pairs: $(printf '%s\n' "${shares[@]}" | median) % (target >= 70 %)"
    if (( ${#pshares[@]} > 0 )); then
        echo "   rebuild / limit-page, median of the pairs: $(printf '%s\n' "${pshares[@]}" | median) %"
    fi
fi
