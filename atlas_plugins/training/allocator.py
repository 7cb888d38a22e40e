"""Give freed tensor memory back to the OS on Linux (glibc): a fixed mmap threshold.

PyTorch's CPU tensors come from ``malloc``. glibc serves a large request with its own ``mmap``
(returned to the OS on ``free``) only while the request is above the *mmap threshold*, and it
raises that threshold every time such a block is freed, up to 32 MiB. After a few training
steps, activation-sized blocks therefore come from the heap, and a heap keeps what it freed: the
process's RSS grows to the largest set of blocks it ever held at once, fragmented, and stays
there (the demo's process held ~8 GB from its first warm-start step on).

:func:`release_large_blocks` sets the threshold once with ``mallopt(M_MMAP_THRESHOLD, n)``, which
also turns the dynamic adjustment off: every block over ``n`` bytes is mmap'd and unmapped when
freed. The cost is page faults on each new large block (measured in ``benchmarks/allocator.py``).
Not covered: other C libraries (musl, macOS), where the call is a no-op returning False, and
memory the process holds for other reasons (live tensors, the K/V cache, the prefix store).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
DEFAULT_THRESHOLD = 1 << 20  # 1 MiB: a 576-wide fp32 activation of 455 tokens


def release_large_blocks(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Serve every allocation over ``threshold`` bytes by mmap (freed back to the OS on free).

    Returns True when glibc accepted the setting, False where there is no glibc ``mallopt``."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))
