#!/usr/bin/env python3
"""Checks that the library's top-level modules only point down the data flow.

The allowed order (lowest first) is LAYERS below: a module may name
`crate::<m>` only for an m at or below its own layer. `error` is the crate's
error vocabulary: every module may use it, and it may name only the error
types (`...Error`) of the layers it wraps. The binary (src/main.rs, src/cli/)
sits above all of them and uses the library by its public name.

Usage: tools/check_layers.py [SRC_DIR]   (default: src/ beside this script)
Exit status: 0 when every edge points down, 1 otherwise (each bad edge is
printed as file:line: from -> to).
"""
import pathlib
import re
import sys

# Lowest first. Same-numbered modules share a layer but may still only point
# to the left (a strict order keeps the graph free of cycles).
LAYERS = [
    "durable",     # fsync discipline: atomic writes, durable directories
    "event",       # the vocabulary: Candle, Run, Lsn, codec
    "log",         # segments, frames, the chain
    "source",      # exchange and archive input, parsed into events
    "projection",  # SQLite tables and the redb index, applied from the log
    "snapshot",    # consistent copies of the projection
    "store",       # the data directory: lock, log writer, projections in step
    "backup",      # repository transport: objects, manifests, segments
    "config",      # candlelog.toml
    "ops",         # the commands as library functions
]
RANK = {m: i for i, m in enumerate(LAYERS)}
EDGE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
ERROR_IMPORT = re.compile(r"crate::[a-z_]+(?:::[a-z_]+)*::(\{[^}]*\}|[A-Za-z_]+)")


def top_module(src: pathlib.Path, f: pathlib.Path) -> str:
    rel = f.relative_to(src).parts
    return rel[0].removesuffix(".rs")


def code_lines(f: pathlib.Path):
    for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        yield n, line.split("//", 1)[0] if "://" not in line else line


def main() -> int:
    src = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent / "src"
    bad = []
    seen = set()
    for f in sorted(src.rglob("*.rs")):
        top = top_module(src, f)
        if top in ("main", "lib", "cli"):
            continue
        if top != "error" and top not in RANK:
            bad.append(f"{f}: module `{top}` has no layer in tools/check_layers.py; add it to LAYERS")
            continue
        for n, line in code_lines(f):
            for m in EDGE.finditer(line):
                to = m.group(1)
                if to == top or to in ("error", "Error", "Result"):
                    continue
                seen.add((top, to))
                if top == "error":
                    names = ERROR_IMPORT.findall(line)
                    flat = [x.strip() for g in names for x in g.strip("{}").split(",") if x.strip()]
                    if not flat or any(not x.endswith("Error") for x in flat):
                        bad.append(f"{f}:{n}: error -> {to}: the crate error may only wrap other layers' error types")
                    continue
                if to not in RANK:
                    bad.append(f"{f}:{n}: {top} -> {to}: `{to}` has no layer in tools/check_layers.py")
                elif RANK[to] > RANK[top]:
                    bad.append(f"{f}:{n}: {top} -> {to} points up (layers, lowest first: {' < '.join(LAYERS)})")
    for b in bad:
        print(b)
    if bad:
        print(f"check_layers: {len(bad)} upward or unknown edge(s)", file=sys.stderr)
        return 1
    print(f"check_layers: {len(seen)} module edges, all pointing down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
