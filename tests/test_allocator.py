"""The fixed mmap threshold: a large block freed once is still mmap'd (and unmapped) the next time.

glibc's default raises its mmap threshold when an mmap'd block is freed, so the same request is
served from the heap the second time (and the heap keeps it after ``free``). Each case runs in a
fresh interpreter, so the allocator starts from its defaults; ``mallinfo2().hblkhd`` is the bytes
glibc holds in mmap'd blocks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, ctypes.util, sys
from atlas_plugins.training.allocator import release_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "fixed":
    assert release_large_blocks(1 << 20)
size = 8 << 20
p = libc.malloc(size); libc.free(p)          # the first 8 MiB block is mmap'd either way
before = libc.mallinfo2().hblkhd
q = libc.malloc(size)                         # the same request again
grown = libc.mallinfo2().hblkhd - before
libc.free(q)
print(int(grown >= size))
"""


def _has_mallinfo2() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2) to see where blocks come from")
def test_fixed_threshold_keeps_large_blocks_mmapped():
    def second_block_mmapped(case: str) -> bool:
        out = subprocess.run([sys.executable, "-c", PROBE, case], capture_output=True, text=True, check=True)
        return out.stdout.strip() == "1"

    assert not second_block_mmapped("default")  # glibc raised its threshold: the heap served it
    assert second_block_mmapped("fixed")


def test_release_large_blocks_is_a_no_op_off_linux(monkeypatch):
    from atlas_plugins.training import allocator

    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.release_large_blocks() is False


TRIM_PROBE = r"""
import ctypes, ctypes.util, re, sys
from atlas_plugins.training.allocator import trim_heap

def rss_kib():
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1))

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
blocks = [libc.malloc(64 << 10) for _ in range(4000)]  # 250 MiB of heap blocks (under the mmap threshold)
for b in blocks:
    ctypes.memset(b, 1, 64 << 10)
for b in blocks[:-1:2]:
    libc.free(b)                                      # every other one: holes the heap keeps
held = rss_kib()
released = trim_heap()
print(released, held - rss_kib())
"""


@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc (malloc_trim)")
def test_trim_heap_gives_freed_heap_pages_back():
    """Freed blocks in the middle of the heap stay in the process's RSS (glibc cannot shrink the
    heap past the live block above them); ``trim_heap()`` hands their pages back at once."""
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True)
    released, dropped_kib = out.stdout.split()
    assert released == "True" and int(dropped_kib) > 100 * 1024, out.stdout  # ~125 MiB freed
