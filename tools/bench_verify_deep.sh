#!/usr/bin/env bash
# `backup verify --deep` over a repository with many small snapshots
# (issue 10, part 9: time proportional to the repository's bytes).
#
#   bash tools/bench_verify_deep.sh                 # 3,000 manifests
#   MANIFESTS=300 bash tools/bench_verify_deep.sh   # a quick run
#   BIN=/path/to/candlelog bash tools/bench_verify_deep.sh   # another build
#
# What it does, under one mktemp dir (removed at the end):
#  1. a data directory holding the golden log (format/vectors/sealed.seg and
#     event_format_2.seg, LSN 1-7), rebuilt, then one `backup --to REPO`;
#  2. the snapshot that backup took copied to MANIFESTS snapshots (object and
#     manifest, each under its own `<lsn>-<created_ms>` name, as that many
#     backups with nothing appended in between would leave them);
#  3. `backup verify --deep` and `backup verify` timed (wall, GNU time's
#     elapsed), at MANIFESTS and at a tenth of it, so the growth shows.
set -euo pipefail
MANIFESTS=${MANIFESTS:-3000}
cd "$(dirname "$0")/.."
ROOT=$PWD
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet 2>/dev/null || cargo build --release
    BIN=$ROOT/${CARGO_TARGET_DIR:-target}/release/candlelog
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/candlelog-verify-deep.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/data/log"
cp format/vectors/sealed.seg "$TMP/data/log/00000000000000000001.seg"
cp format/vectors/event_format_2.seg "$TMP/data/log/00000000000000000002.seg"
"$BIN" --data-dir "$TMP/data" rebuild >/dev/null
"$BIN" --data-dir "$TMP/data" backup --to "$TMP/repo" >/dev/null

clone() { # clone N REPO_DIR: N snapshots from the one in REPO_DIR
    python3 - "$1" "$2" <<'PY'
import json, pathlib, sys
n, repo = int(sys.argv[1]), pathlib.Path(sys.argv[2])
snaps = repo / "snapshots"
manifest = next(snaps.glob("*.json"))
m = json.loads(manifest.read_text())
data = (repo / m["file"]).read_bytes()
lsn = m["lsn"]
for i in range(1, n):
    created = m["created_ms"] - i * 1000
    stem = f"snapshots/{lsn:020}-{created}"
    (repo / f"{stem}.sqlite.zst").write_bytes(data)
    m2 = dict(m, file=f"{stem}.sqlite.zst", created_ms=created)
    (repo / f"{stem}.json").write_text(json.dumps(m2, indent=2))
PY
}

measure() { # measure N
    local n=$1 repo="$TMP/repo-$1"
    cp -r "$TMP/repo" "$repo"
    clone "$n" "$repo"
    local bytes; bytes=$(du -sb "$repo" | cut -f1)
    for deep in --deep ""; do
        local t0 t1
        t0=$(date +%s.%N)
        "$BIN" backup verify --from "$repo" $deep >/dev/null
        t1=$(date +%s.%N)
        printf '%6d manifests  %9d bytes  verify %-6s  %6.2f s  %7.2f ms/manifest\n' "$n" "$bytes" "${deep:-}" \
            "$(echo "$t1 - $t0" | bc)" "$(echo "($t1 - $t0) * 1000 / $n" | bc -l)"
    done
}
measure $((MANIFESTS / 10))
measure "$MANIFESTS"
