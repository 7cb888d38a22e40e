"""Give freed tensor memory back to the OS on Linux (glibc): a fixed mmap threshold, or a trim
of the heap between phases.

PyTorch's CPU tensors come from ``malloc``. glibc serves a large request with its own ``mmap``
(returned to the OS on ``free``) only while the request is above the *mmap threshold*, and it
raises that threshold every time such a block is freed, up to 32 MiB. After a few training
steps, activation-sized blocks therefore come from the heap, and a heap keeps what it freed: the
process's RSS grows to the largest set of blocks it ever held at once, fragmented, and stays
there (the demo's process held ~8 GB from its first warm-start step on).

:func:`release_large_blocks` sets the threshold once with ``mallopt(M_MMAP_THRESHOLD, n)``, which
also turns the dynamic adjustment off: every block over ``n`` bytes is mmap'd and unmapped when
freed. The cost is page faults on each new large block (measured in ``benchmarks/allocator.py``).

:func:`trim_heap` is the lighter alternative: ``malloc_trim(0)`` hands every whole free page of
the heap back to the OS at once (``madvise(MADV_DONTNEED)``), and allocations keep coming from the
heap in between. Called at phase boundaries (after a training step, after a rollout, between
evaluation batches: :func:`trim_heap_callback` and the trainer), it bounds what one phase keeps
for the next. Measured on the demo's GRPO and evaluation (BENCHMARKS.md, "Peak memory of the
demo's GRPO and evaluation"): the evaluation held ~3 GB instead of 7.3 GB at 1-3 % more time, with
the same numbers; the process's *peak* did not drop, since it comes from inside a training step.
Not covered: other C libraries (musl, macOS), where the call is a no-op returning False, and
memory the process holds for other reasons (live tensors, the K/V cache, the prefix store).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from typing import Any

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
DEFAULT_THRESHOLD = 1 << 20  # 1 MiB: a 576-wide fp32 activation of 455 tokens


def _glibc() -> Any:
    """glibc as a ctypes library, or None (not Linux, or a C library without mallopt/malloc_trim)."""
    return _load_glibc() if sys.platform.startswith("linux") else None


@functools.cache
def _load_glibc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):  # musl has no malloc_trim
        return None
    return libc


def release_large_blocks(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Serve every allocation over ``threshold`` bytes by mmap (freed back to the OS on free).

    Returns True when glibc accepted the setting, False where there is no glibc ``mallopt``."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, int(threshold)))


def trim_heap() -> bool:
    """Give the heap's free pages back to the OS now (glibc ``malloc_trim(0)``).

    Returns True when glibc released memory, False when there was none to release or no glibc."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


def trim_heap_callback() -> Any:
    """A ``transformers`` ``TrainerCallback`` that trims the heap after every optimizer step."""
    from transformers import TrainerCallback

    class TrimHeapCallback(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            trim_heap()

    return TrimHeapCallback()
