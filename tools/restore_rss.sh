#!/usr/bin/env bash
# Peak memory (RSS) of `candlelog restore` from a directory repository and
# from an s3:// repository, for a snapshot of SIZE GiB (issue 9, part 5:
# streaming repositories; the bound is 256 MiB whatever the snapshot's size).
#
#   bash tools/restore_rss.sh                  # 2.1 GiB of agent data: a 2.23 GiB snapshot, ~1.5 min
#   bash tools/restore_rss.sh --size-gib 0.3   # a quick run
#
# Options: --size-gib N (2.1), --limit-mib N (256), --keep (keep the temp dir).
# What it does, all under one mktemp dir (removed at the end):
#  1. an "agent database" with N GiB in a table of its own (agent_blobs: rows
#     of 4 KiB random bytes then 4 KiB of a repeated 16-byte pattern, so zstd
#     halves it), made the projection with --projection (README: a snapshot is
#     a VACUUM INTO copy of that whole file);
#  2. `import` of ../shared/data/binance/data.binance.vision (read in place;
#     ARCHIVES=DIR overrides), then one `backup --to DIR --to s3://...` to a
#     directory and to s3s-fs on loopback;
#  3. `restore --from REPO --into NEW` for each repository under
#     /usr/bin/time -v: peak RSS ("Maximum resident set size") and wall time.
# Prints the snapshot's raw and compressed size and a table; exits 1 if a
# restore's peak exceeds the limit (the backup's peak is shown, not judged).
# Needs: cargo, python3 (stdlib), s3s-fs (S3S_FS, PATH or ~/.cargo/bin; `cargo
# install s3s-fs@0.14.1 --features binary --locked`), GNU time (installed
# with apt-get when /usr/bin/time is missing). Disk: about 4 × SIZE.
set -euo pipefail

SIZE_GIB=2.1
LIMIT_MIB=256
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --size-gib) SIZE_GIB=$2; shift 2 ;;
        --limit-mib) LIMIT_MIB=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "restore_rss.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
ROOT=$PWD
ARCHIVES=${ARCHIVES:-$ROOT/../shared/data/binance/data.binance.vision}
[[ -d "$ARCHIVES" ]] || { echo "restore_rss.sh: $ARCHIVES is missing (check out shared/ beside this repository)" >&2; exit 2; }

if [[ ! -x /usr/bin/time ]]; then
    echo "== installing GNU time (apt-get install time)"
    SUDO=; [[ $(id -u) == 0 ]] || SUDO=sudo
    $SUDO apt-get install -y -qq time >/dev/null
fi
S3S=${S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
[[ -x "$S3S" ]] || { echo "restore_rss.sh: s3s-fs not found (cargo install s3s-fs@0.14.1 --features binary --locked)" >&2; exit 2; }

cargo build --release --quiet 2>/dev/null || cargo build --release
BIN=$ROOT/${CARGO_TARGET_DIR:-target}/release/candlelog

TMP=$(mktemp -d "${TMPDIR:-/tmp}/candlelog-rss.XXXXXX")
S3_PID=
cleanup() {
    if [[ -n "$S3_PID" ]]; then kill "$S3_PID" 2>/dev/null; wait "$S3_PID" 2>/dev/null || true; fi
    if [[ "$KEEP" == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

echo "== agent database with $SIZE_GIB GiB of its own data"
python3 - "$TMP/agent.sqlite" "$SIZE_GIB" <<'EOF'
import os, sqlite3, sys
path, gib = sys.argv[1], float(sys.argv[2])
row = 8192  # half random, half a repeated pattern: zstd keeps about half
rows = int(gib * (1 << 30) / row)
conn = sqlite3.connect(path)
conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                   "CREATE TABLE agent_blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);")
def blobs(n):
    for i in range(n):
        r = os.urandom(row // 2)
        yield (i, r + r[:16] * (row // 2 // 16))
done = 0
while done < rows:
    n = min(20000, rows - done)
    conn.executemany("INSERT INTO agent_blobs VALUES (?, ?)", ((done + i, b) for i, b in blobs(n)))
    conn.commit()
    done += n
conn.close()
EOF
echo "   $(stat -c %s "$TMP/agent.sqlite") bytes"

# s3s-fs on a free loopback port, serving bucket "candlelog".
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$TMP/s3/candlelog"
"$S3S" --host 127.0.0.1 --port "$PORT" --access-key AKIATEST --secret-key secret-test-key "$TMP/s3" >"$TMP/s3s.log" 2>&1 &
S3_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=AKIATEST AWS_SECRET_ACCESS_KEY=secret-test-key AWS_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
DIR_REPO=$TMP/repo
S3_REPO=s3://candlelog/rss/repo

CL=("$BIN" --data-dir "$TMP/data" --projection "$TMP/agent.sqlite")
# measure LABEL COMMAND...: runs COMMAND under GNU time; sets PEAK_KB and WALL.
measure() {
    local label=$1; shift
    if ! /usr/bin/time -v -o "$TMP/time.$label" "$@" >"$TMP/out.$label" 2>"$TMP/err.$label"; then
        echo "restore_rss.sh: $label failed:" >&2; cat "$TMP/err.$label" "$TMP/time.$label" >&2; exit 1
    fi
    PEAK_KB=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$TMP/time.$label")
    WALL=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$TMP/time.$label")
}

echo "== import $ARCHIVES"
"${CL[@]}" import "$ARCHIVES"
echo "== backup --to $DIR_REPO --to $S3_REPO"
measure backup "${CL[@]}" backup --to "$DIR_REPO" --to "$S3_REPO"
BACKUP_PEAK=$PEAK_KB BACKUP_WALL=$WALL
read -r RAW COMPRESSED < <(python3 - "$DIR_REPO" <<'EOF'
import glob, json, sys
m = json.load(open(sorted(glob.glob(sys.argv[1] + "/snapshots/*.json"))[-1]))
print(m["raw_bytes"], m["file_bytes"])
EOF
)
echo "   snapshot: $RAW bytes raw, $COMPRESSED bytes compressed (zstd 3)"

rows=()
over=0
for repo in "$DIR_REPO" "$S3_REPO"; do
    label=restore-$([[ $repo == s3://* ]] && echo s3 || echo dir)
    echo "== restore --from $repo"
    measure "$label" "$BIN" restore --from "$repo" --into "$TMP/restored"
    rm -rf "$TMP/restored"
    rows+=("$label $PEAK_KB $WALL")
    if (( PEAK_KB > LIMIT_MIB * 1024 )); then over=1; fi
done

echo "== summary"
awk -v raw="$RAW" -v z="$COMPRESSED" 'BEGIN { printf "   snapshot: %.2f GiB raw, %.2f GiB compressed (%.0f %%)\n", raw / 2^30, z / 2^30, 100 * z / raw }'
printf '   %-12s %14s %12s\n' command "peak RSS (MiB)" "wall"
for r in "${rows[@]}" "backup(both) $BACKUP_PEAK $BACKUP_WALL"; do
    read -r label kb wall <<<"$r"
    printf '   %-12s %14.1f %12s\n' "$label" "$(awk -v k="$kb" 'BEGIN { print k / 1024 }')" "$wall"
done
if (( over )); then
    echo "FAIL: a restore's peak RSS exceeds $LIMIT_MIB MiB"
    exit 1
fi
echo "ok: every restore's peak RSS is within $LIMIT_MIB MiB"
