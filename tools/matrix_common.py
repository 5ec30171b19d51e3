"""What tools/kill_matrix.py and tools/corruption_matrix.py both do to files."""

import os
import shutil


def copy(src, dst):
    """Replaces `dst` with a copy of the directory `src` (nothing when `src` is absent)."""
    shutil.rmtree(dst, ignore_errors=True)
    if os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True)


def flip(path, offset):
    """XORs the byte at `offset` of `path` with 0xFF, in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
