"""barenet's own threads: a batch's samples split across the cores.

A layer's work on a batch is the same work on every sample, so the layers split the batch into one
slice per thread and run their kernels (NumPy products and ufuncs, the compiled kernels) on the
slices at once; all of those release Python's GIL while they compute. Parameter gradients are summed
over the slices (or, for a dense layer's kernel, computed in blocks of columns).

This happens inside :func:`engine`, which ``fit``, ``evaluate``, ``predict`` and ``compute_gradients``
of a :class:`~barenet.Sequential` enter for models with a layer whose work is large and not a single
matrix product (:attr:`barenet.layers.Layer.splits_batch`: convolutions with their column copies,
batch normalization, pooling). Inside it the BLAS library (the
matrix products' own thread pool) runs on one thread: after a product, BLAS's idle threads keep
spinning for a while and take the cores from the element-wise kernels that follow. On a two-core
machine one CNN layer's forward and backward (convolution, batch normalization) took 95 ms with two
BLAS threads and 45 ms with two barenet threads of one BLAS thread each (112 ms on one thread).
Models of dense layers only keep BLAS's own threads: there the step is nearly all products, which
BLAS's threads share out faster than Python threads can be handed work (about 90 microseconds a
hand-over measured on that machine). So do recurrent layers: each thread running the time loop of its
samples made an LSTM slower (0.87x against 0.96x PyTorch's speed), the threads' per-step Python work
waiting for each other's GIL.

All threads of a process share one set of helper threads, started as splits need them; they live as
long as the process (a forked child starts its own), and a split into fewer parts hands out fewer tasks.

The number of threads is :func:`get_num_threads`: ``BARENET_NUM_THREADS`` if set, else
``OMP_NUM_THREADS``, else the cores this process may run on; :func:`set_num_threads` changes it. The
variables are read as OpenMP reads ``OMP_NUM_THREADS``: a count, or a list of counts per nesting level of
which barenet's one level takes the first ("4,1" is 4); a value of neither form is ignored with a warning.
With one thread nothing is split. With more, results differ from the one-thread results by float
rounding only (sums taken in another order), and are the same from run to run for the same number of
threads.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from typing import TypeVar

import numpy as np

from .errors import ConfigError

T = TypeVar("T")

#: A split is not worth a thread hand-off (tens of microseconds) below this many values (or multiply-adds) of work.
MIN_WORK = 1 << 18

_state = threading.local()  # .depth: enabled engine() blocks entered; .inside: this thread runs a part
_lock = threading.Lock()  # guards the pool
_threads: int | None = None
_warned: set[tuple[str, str]] = set()  # unusable environment values already warned about


def _env_threads(name: str) -> int | None:
    """The thread count in the environment variable ``name``, read as OpenMP reads ``OMP_NUM_THREADS``: a
    positive integer, or a comma-separated list of them, one per level of nesting, of which barenet's one
    level takes the first ("2,1" is 2). ``None`` when unset or unusable (with one warning per value)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    levels = [level.strip() for level in value.split(",")]
    if all(re.fullmatch(r"[0-9]+", level) and int(level) > 0 for level in levels):
        return int(levels[0])
    if (name, value) not in _warned:
        _warned.add((name, value))
        warnings.warn(f"barenet ignores {name}={value!r}: expected a positive number of threads, or a "
                      f"comma-separated list of them such as '4,1' (the first is used)", stacklevel=4)
    return None




def _default_threads() -> int:
    for name in ("BARENET_NUM_THREADS", "OMP_NUM_THREADS"):
        n = _env_threads(name)
        if n is not None:
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """Threads barenet splits a batch across (see the module docstring)."""
    global _threads
    if _threads is None:
        _threads = _default_threads()
    return _threads


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads from now on; ``None`` goes back to the default from the environment."""
    global _threads
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ConfigError(f"the number of threads must be a positive integer or None, got {n!r}")
    _threads = n


class _Pool:
    """Helper threads that take parts from one queue and live as long as the process; more are started
    when a split needs them, none is ever stopped, so a split on fewer threads just hands out fewer parts."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.size = 0

    def grow(self, workers: int) -> None:
        """Have at least ``workers`` threads (called under ``_lock``)."""
        while self.size < workers:
            threading.Thread(target=self._work, name=f"barenet-{self.size}", daemon=True).start()
            self.size += 1

    def submit(self, function: Callable[[slice], T], part: slice) -> Future[T]:
        future: Future[T] = Future()
        self._tasks.put((future, function, part))
        return future

    def _work(self) -> None:
        while True:
            future, function, part = self._tasks.get()
            future.set_running_or_notify_cancel()
            try:
                result = _run_inside(function, part)
            except BaseException as error:  # handed to the caller, which raises it
                future.set_exception(error)
            else:
                future.set_result(result)
            del future, function, part  # hold no arrays while idle


_pool: _Pool | None = None


def _helpers(workers: int) -> _Pool:
    """The process's pool, with at least ``workers`` threads and as many as :func:`get_num_threads` needs."""
    global _pool
    workers = max(workers, get_num_threads() - 1)
    with _lock:
        if _pool is None:
            _pool = _Pool()
        _pool.grow(workers)
        return _pool


def active() -> bool:
    """Whether work is split across threads here: inside an enabled :func:`engine` with more than one
    thread, and not already inside a part."""
    return getattr(_state, "depth", 0) > 0 and not getattr(_state, "inside", False) and get_num_threads() > 1


def parts(n: int, work_per_row: int = 1) -> list[slice]:
    """Slices ``[start, stop)`` covering ``range(n)`` in order, one per thread when splitting pays.

    ``work_per_row`` is the number of values one row costs (for example the elements a layer reads
    per sample); with less than :data:`MIN_WORK` in all, or when not :func:`active`, the one slice
    ``slice(0, n)`` is returned.
    """
    k = min(get_num_threads(), n, max(1, n * work_per_row // MIN_WORK)) if active() else 1
    bounds = [n * i // k for i in range(k + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(k)]


def _run_inside(function: Callable[[slice], T], part: slice) -> T:
    _state.inside = True
    try:
        return function(part)
    finally:
        _state.inside = False


def run(function: Callable[[slice], T], slices: list[slice]) -> list[T]:
    """``[function(s) for s in slices]``, the slices at once on barenet's threads.

    The calling thread runs the first slice itself. Every slice has finished when this returns or
    raises (an exception in a slice, or an interrupt while waiting, is raised after all are done), so
    no thread still writes into the arrays afterwards. Inside a part the slices run one after another.
    """
    if len(slices) == 1 or getattr(_state, "inside", False):
        return [function(s) for s in slices]
    pool = _helpers(len(slices) - 1)
    futures: list[Future[T]] = []
    try:
        futures = [pool.submit(function, s) for s in slices[1:]]
        first = _run_inside(function, slices[0])
        return [first, *(f.result() for f in futures)]
    finally:
        wait(futures)


def by_rows(function: Callable[..., object], *arrays: np.ndarray) -> None:
    """``function(*(a[rows] for a in arrays))`` on slices of the arrays' first axis at once (the batch, of
    the same length in each), one slice per thread when splitting pays; the work of a row is the largest
    array's row. For kernels that write into one of the arrays."""
    n = len(arrays[0])
    run(lambda rows: function(*(a[rows] for a in arrays)), parts(n, max(a[0].size for a in arrays) if n else 1))


_controller = None


def _blas_controller():
    """threadpoolctl's handle on the thread pools loaded in this process, looked up once (it reads the
    list of loaded libraries): NumPy's BLAS, loaded before barenet, is among them."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def engine(enabled: bool = True) -> Iterator[None]:
    """Within this block (with ``enabled`` and more than one thread) the layers split batches across the
    threads and BLAS runs on one thread of its own (restored on leaving); otherwise nothing changes.
    Nests: an inner block keeps the outer one's choice."""
    depth = getattr(_state, "depth", 0)
    splitting = depth > 0 or (enabled and get_num_threads() > 1)
    limit = contextlib.nullcontext()
    if splitting and depth == 0:
        limit = _blas_controller().limit(limits=1, user_api="blas")
    with limit:
        _state.depth = depth + 1 if splitting else 0
        try:
            yield
        finally:
            _state.depth = depth


def _after_fork_in_child() -> None:
    """A child starts with the forking thread only: no helper threads, and no lock held by a thread that
    is gone."""
    global _lock, _pool
    _lock = threading.Lock()
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def matmul_tn(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = a.T @ b`` for ``a : (m, k)``, ``b : (m, n)``, ``out : (k, n)`` (a weight gradient, the ``m``
    samples summed over), each thread computing a block of the ``n`` columns from all ``m`` rows, so that
    nothing is added up afterwards."""
    run(lambda cols: np.matmul(a.T, b[:, cols], out=out[:, cols]), parts(b.shape[1], a.size))
    return out
