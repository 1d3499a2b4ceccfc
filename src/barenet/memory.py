"""Memory freed by one training step, kept for the next.

A step allocates its activations, caches and gradients afresh (every layer call returns new arrays) and
frees them when it ends. With glibc's default policy, a block of more than ``M_MMAP_THRESHOLD`` bytes is
mapped from the kernel and unmapped when freed, and free memory at the top of the heap is handed back
once it passes ``M_TRIM_THRESHOLD`` (both adjusted dynamically: at most 32 MiB and 64 MiB). A step that
frees more than that gives its pages back, and the next step takes them again, paying one page fault
per 4 KiB touched: the character Transformer of ``examples/char_transformer.py`` frees about 70 MB a step,
17,000 faults that cost a fifth of its step time.

So ``fit``, and ``evaluate`` and ``predict`` over more than one batch, call :func:`keep_freed_memory`:
from then on the mmap threshold is 32 MiB (the largest value glibc's own dynamic rule gives it) and the
trim threshold 2 GiB, and the memory a step frees stays with the process, where the next step (or any
other allocation of the process) takes it again. The settings stay after the call returns, so that a
loop calling ``fit`` once per batch keeps its memory too: the process holds on to as much memory as it
used at its peak, no more (its peak does not grow, the kept blocks being the ones allocated again).
:func:`release_freed_memory` hands the free memory back to the system and sets glibc's thresholds back
to 32 MiB and 64 MiB, until the next ``fit``. Arrays larger than 32 MiB are mapped and unmapped as before.

This applies where the C library is glibc (Linux); elsewhere nothing changes. With the environment
variable ``BARENET_REUSE_MEMORY=0`` (read at each call) barenet leaves the allocator's settings alone.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading

#: glibc's ``mallopt`` parameters (``<malloc.h>``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: The mmap threshold barenet sets: the ceiling of glibc's dynamic threshold on 64-bit systems.
MMAP_THRESHOLD = 32 << 20
#: The trim threshold while memory is kept: free memory at the heap's top is kept up to this many bytes.
KEPT_TRIM_THRESHOLD = (2 << 30) - 1
#: The trim threshold after :func:`release_freed_memory`: twice the mmap threshold, as glibc's rule sets it.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD

_lock = threading.Lock()
_keeping = False  # the thresholds are barenet's
_libc: ctypes.CDLL | None | bool = False  # False: not looked up yet; None: not glibc


def _glibc() -> ctypes.CDLL | None:
    """The process's glibc, with ``mallopt`` and ``malloc_trim``, or ``None`` on other C libraries."""
    global _libc
    if _libc is False:
        _libc = None
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(None)
                libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                _libc = libc
            except (OSError, AttributeError):
                _libc = None
    return _libc


def enabled() -> bool:
    """Whether :func:`keep_freed_memory` changes the allocator's settings: glibc is the C library and
    ``BARENET_REUSE_MEMORY`` is not ``0``."""
    return os.environ.get("BARENET_REUSE_MEMORY", "1").strip() != "0" and _glibc() is not None


def keep_freed_memory(batches: int = 2) -> bool:
    """From now on, memory the process frees stays with it for reuse (see the module's text), for a call
    that runs ``batches`` batches (one batch frees nothing it would allocate again: nothing changes).
    Returns whether the settings are barenet's. Cheap after the first call; safe from several threads."""
    global _keeping
    if batches < 2 or _keeping or not enabled():
        return _keeping
    with _lock:
        if not _keeping:
            libc = _glibc()
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, KEPT_TRIM_THRESHOLD)
            _keeping = True
    return True


def release_freed_memory() -> None:
    """Hand the free memory the process keeps back to the system (``malloc_trim(0)``) and set glibc's trim
    threshold back to 64 MiB, until the next ``fit`` (or :func:`keep_freed_memory`). Without glibc: nothing."""
    global _keeping
    libc = _glibc()
    if libc is None:
        return
    with _lock:
        if _keeping:
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            _keeping = False
        libc.malloc_trim(0)
