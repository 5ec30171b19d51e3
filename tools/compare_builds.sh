#!/usr/bin/env bash
# Two builds of candlelog side by side on the same data, runs interleaved
# (A, B, A, B, ...) so a busy machine slows both alike: import, rebuild,
# verify --deep, and backup + restore from a directory repository. Prints the
# median wall time of each and the ratio B / A (above 1: B is slower).
#
#   bash tools/compare_builds.sh OLD_BIN NEW_BIN
#   SYMBOLS=20 MONTHS=3 RUNS=3 bash tools/compare_builds.sh a/candlelog b/candlelog   # quick
#
# Build an older commit with `git worktree add /tmp/old REV && (cd /tmp/old &&
# cargo build --release)`. Environment: SYMBOLS (200), MONTHS (12): archives
# from tools/gen_archives.py (200 x 12 = 439,200 candles); RUNS (5).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: tools/compare_builds.sh OLD_BIN NEW_BIN" >&2; exit 2; }
A=$(realpath "$1"); B=$(realpath "$2")
SYMBOLS=${SYMBOLS:-200}
MONTHS=${MONTHS:-12}
RUNS=${RUNS:-5}
cd "$(dirname "$0")/.."
TMP=$(mktemp -d "${TMPDIR:-/tmp}/candlelog-compare.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
timed() { local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'; }

python3 tools/gen_archives.py "$TMP/archives" --symbols "$SYMBOLS" --months "$MONTHS" >/dev/null
declare -A T
for run in $(seq 1 "$RUNS"); do
    for side in A B; do
        bin=${!side}
        d="$TMP/$side"
        rm -rf "$d" "$d.repo" "$d.restored"
        T[$side.import]+="$(timed "$bin" --config /dev/null --data-dir "$d" import "$TMP/archives") "
        T[$side.rebuild]+="$(timed "$bin" --config /dev/null --data-dir "$d" rebuild) "
        T[$side.verify_deep]+="$(timed "$bin" --config /dev/null --data-dir "$d" verify --deep) "
        "$bin" --config /dev/null --data-dir "$d" backup --to "$d.repo" >/dev/null
        T[$side.restore]+="$(timed "$bin" --config /dev/null --data-dir "$d" restore --from "$d.repo" --into "$d.restored") "
    done
done
printf '%-12s %10s %10s %8s\n' path "A (s)" "B (s)" "B / A"
for p in import rebuild verify_deep restore; do
    a=$(tr ' ' '\n' <<<"${T[A.$p]}" | grep . | median)
    b=$(tr ' ' '\n' <<<"${T[B.$p]}" | grep . | median)
    printf '%-12s %10.3f %10.3f %8.2f\n' "$p" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN { print b / a }')"
done
