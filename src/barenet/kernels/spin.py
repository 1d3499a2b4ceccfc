r"""Waiting for another thread by watching a counter, without Python's GIL and without sleeping.

:mod:`barenet.threads` hands a part of a layer's work to a helper thread and waits for it to finish, tens
of times per training step. Waiting by sleeping (a lock, a condition) costs a wake-up each time: the
operating system has to put the sleeping thread back on a core, 5-10 microseconds on a laptop and 40-50
inside some virtual machines, where an idle virtual core is halted and woken by the host. OpenMP's
threads (PyTorch's, BLAS's) spin instead: for a while after each task they keep watching for the next
one, so a task handed to a watching thread starts at once. :func:`signal_and_wait` is that watch for
barenet's threads: a compiled loop, run with the GIL released (so the thread it waits for can run Python
meanwhile), that reads a shared counter until it changes or a number of rounds has passed, with the
processor's spin-wait hint (``pause`` on x86) between reads.

The counters live in a C-contiguous ``int64`` array; each is read with acquire and added to with
acquire-release ordering (atomic, so that several threads may add to one counter), so what a thread wrote
before adding is seen by the thread that sees the new count. Importing this module imports numba; callers
import it only when compiled kernels are enabled (:data:`barenet.kernels._jit.NUMBA_ENABLED`).
"""

from __future__ import annotations

import platform

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


@intrinsic
def _load(typingctx, counters, i):  # type: ignore[no-untyped-def]
    """``counters[i]``, an atomic load with acquire ordering."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, signature.args[0], array, [args[1]])
        return builder.load_atomic(pointer, "acquire", 8)
    return types.int64(counters, i), codegen


@intrinsic
def _add(typingctx, counters, i, value):  # type: ignore[no-untyped-def]
    """``counters[i] += value``, atomic, with acquire-release ordering."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, signature.args[0], array, [args[1]])
        builder.atomic_rmw("add", pointer, args[2], "acq_rel")
        return context.get_dummy_value()
    return types.void(counters, i, value), codegen


@intrinsic
def _pause(typingctx):  # type: ignore[no-untyped-def]
    """The processor's spin-wait hint: ``pause`` on x86 (it spares the other hyper-thread of the core and
    the pipeline flush when the watched value changes); nothing elsewhere."""
    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        if _X86:
            hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                  "llvm.x86.sse2.pause")
            builder.call(hint, [])
        return context.get_dummy_value()
    return types.void(), codegen


@numba.njit(nogil=True, cache=True)
def signal_and_wait(counters: np.ndarray, add_at: int, wait_at: int, seen: int, rounds: int) -> int:
    """Add 1 to ``counters[add_at]`` (none when ``add_at < 0``), then watch ``counters[wait_at]`` for up to
    ``rounds`` reads until it differs from ``seen``; return its last value (``seen`` when the rounds ran out).

    ``counters``: 1-d C-contiguous ``int64``. Runs without the GIL: the signal is given after the calling
    thread has let go of the GIL, so the thread it wakes never finds the GIL held by the signaller.
    """
    if add_at >= 0:
        _add(counters, add_at, 1)
    for _ in range(rounds):
        value = _load(counters, wait_at)
        if value != seen:
            return value
        _pause()
    return _load(counters, wait_at)
