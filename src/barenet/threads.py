"""barenet's own threads: a batch's samples split across the cores.

A layer's work on a batch is the same work on every sample, so the layers split the batch into one
slice per thread and run their kernels (NumPy products and ufuncs, the compiled kernels) on the
slices at once; all of those release Python's GIL while they compute. Parameter gradients are summed
over the slices (or, for a dense layer's kernel, computed in blocks of columns).

Splitting happens inside an :func:`engine` block, which ``fit``, ``evaluate``, ``predict`` and
``compute_gradients`` of a :class:`~barenet.Sequential` enter for models with a layer whose work is large
and not a single matrix product (:attr:`barenet.layers.Layer.splits_batch`: convolutions with their
column copies, batch normalization, pooling, and float32 LSTM and GRU layers whose time loop is compiled,
each thread running the recurrence of its own rows). From a block's first split until it ends, the BLAS
libraries (the matrix products' own thread pools) run on one thread: after a product, BLAS's idle
threads keep spinning for a while and take the cores from the element-wise kernels that follow. Models
of dense layers keep BLAS's own threads, which share out their products faster than Python threads can
be handed work; so do recurrent layers whose time loop is Python's, whose per-step work would wait for
the GIL. Within a
block, a model that enters :func:`layer` around each layer's call decides per layer: the splitting layers
split, and a dense layer keeps BLAS's threads for its products until one of them has split (a network of
dense layers with one small batch normalization then runs as a dense network does; a CNN's dense layers
split like the rest).

All threads of a process share one set of helper threads and one BLAS limit. The helpers are started as
splits need them and live as long as the process (a forked child starts its own); a split into fewer
parts hands out fewer tasks. Where compiled kernels are enabled, a helper that has finished a part watches
for the next one for :data:`SPIN_SECONDS` before it sleeps, and the thread that handed out parts watches
for them to finish, as OpenMP's threads do (:mod:`barenet.kernels.spin`): a hand-off then costs no
wake-up from sleep, which takes 40-50 microseconds on some virtual machines. Nobody watches while more
threads split than the process has cores, or more than one thread hands out parts at once, or when
``OMP_WAIT_POLICY=passive``. The limit is set by the first block to split, in any thread, and lifted by
the last of them to end; a BLAS library loaded in the meantime (SciPy's own) is limited too.

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
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from typing import Any, TypeVar

import numpy as np

from .errors import ConfigError

T = TypeVar("T")

#: A split is not worth a thread hand-off (tens of microseconds) below this many values (or multiply-adds) of work.
MIN_WORK = 1 << 18

# .depth: enabled engine() blocks entered; .inside: this thread runs a part; .limits_blas: this thread's
# outermost block holds BLAS's one-thread limit; .products: the layer being called is matrix products
_state = threading.local()
_lock = threading.Lock()  # guards the pool and the BLAS limit below
_threads: int | None = None
_warned: set[tuple[str, str]] = set()  # unusable environment values already warned about


# --------------------------------------------------------------------------- how many threads
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
    return _cores()


def _cores() -> int:
    """The cores this process may run on."""
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


# --------------------------------------------------------------------------- the helper threads
class _Pool:
    """Helper threads that take parts from one queue and live as long as the process; more are started
    when a split needs them, none is ever stopped, so a split on fewer threads just hands out fewer parts.

    With :attr:`spin` (compiled kernels enabled), a helper that has finished a part watches for the next
    one for up to :data:`SPIN_SECONDS` before it sleeps on the queue, and :func:`run` watches for its parts
    to finish the same way: a hand-off then costs no wake-up (:mod:`barenet.kernels.spin`). The queue stays
    the one way parts travel; the watched counters only say when to look at it.
    """

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.size = 0
        self.callers = 0  # threads in a run() now: with more than one, nobody watches
        self._callers_lock = threading.Lock()
        self.spin = _Spin.make(self)

    def enter(self) -> None:
        """A thread starts handing out parts."""
        with self._callers_lock:
            self.callers += 1

    def leave(self) -> None:
        """A thread has got back every part it handed out."""
        with self._callers_lock:
            self.callers -= 1

    def grow(self, workers: int) -> None:
        """Have at least ``workers`` threads (called under ``_lock``)."""
        while self.size < workers:
            threading.Thread(target=self._work, name=f"barenet-{self.size}", daemon=True).start()
            self.size += 1

    def submit(self, function: Callable[[slice], T], part: slice) -> Future[T]:
        future: Future[T] = Future()
        self._tasks.put((future, function, part))
        if self.spin is not None:
            self.spin.post()
        return future

    def watch(self, futures: list[Future[Any]]) -> None:
        """With :attr:`spin`, watch until every one of ``futures`` is done or the watch runs out (their
        ``result()`` then sleeps for the rest); without it, return at once."""
        if self.spin is not None and futures:
            self.spin.watch_done(futures)

    def _next(self, finished: bool, seen: int) -> tuple[tuple[Future[Any], Callable[[slice], Any], slice], int]:
        """The next part from the queue, and the posted count last seen. With :attr:`spin`, the end of the
        last part (``finished``) is signalled and, while the queue is empty, the posted count watched for
        :data:`SPIN_SECONDS` before sleeping on the queue."""
        spin = self.spin
        if spin is None:
            return self._tasks.get(), seen
        while True:
            watched = self._tasks.empty()
            now = spin.watch_posted(seen, finished, watched)
            finished = False
            try:
                return self._tasks.get_nowait(), now
            except queue.Empty:
                if watched and now == seen:  # nothing came while watching: sleep until a part does
                    return self._tasks.get(), now
                seen = now  # another helper took it: watch on

    def _work(self) -> None:
        finished, seen = False, 0
        while True:
            (future, function, part), seen = self._next(finished, seen)
            future.set_running_or_notify_cancel()
            try:
                result = _run_inside(function, part)
            except BaseException as error:  # handed to the caller, which raises it
                future.set_exception(error)
            else:
                future.set_result(result)
            finished = True
            del future, function, part  # hold no arrays while idle


#: How long a helper thread watches for its next part after finishing one, and a thread that handed out
#: parts watches for them to end, before sleeping (seconds). OpenMP's threads spin for a like time.
SPIN_SECONDS = 0.002


class _Spin:
    """Two counters that a pool's threads watch without the GIL (:func:`barenet.kernels.spin.signal_and_wait`):
    parts posted to the queue, and parts finished.

    Watching pays only while every thread has a core of its own: it is off (:meth:`make` gives ``None``)
    when compiled kernels are not enabled or ``OMP_WAIT_POLICY`` is ``passive``, and a watch is skipped
    while :func:`get_num_threads` exceeds the cores this process may use or more than one thread hands
    out parts at once (each would watch on a core that the others' parts need).
    """

    _POSTED, _DONE = 0, 8  # a cache line apart

    def __init__(self, pool: _Pool, signal_and_wait: Callable[..., int]) -> None:
        self.pool = pool
        self.counters = np.zeros(16, dtype=np.int64)
        self._signal_and_wait = signal_and_wait
        self._rounds_per_second = self._calibrate()

    @classmethod
    def make(cls, pool: _Pool) -> _Spin | None:
        from .kernels._jit import NUMBA_ENABLED

        if not NUMBA_ENABLED or os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive":
            return None
        try:
            from .kernels.spin import signal_and_wait

            return cls(pool, signal_and_wait)  # compiles the watch (or reads it from numba's cache) and times it
        except Exception:  # numba installed but unable to build the watch here: sleep as without it
            return None

    def _calibrate(self) -> float:
        """Watching rounds per second on this processor (the best of three short timed watches)."""
        rounds, best = 20_000, float("inf")
        self._signal_and_wait(self.counters, -1, 15, 0, 1)  # compiled, or read from numba's cache
        for _ in range(3):
            start = time.perf_counter()
            self._signal_and_wait(self.counters, -1, 15, 0, rounds)  # counters[15] stays 0
            best = min(best, time.perf_counter() - start)
        return rounds / max(best, 1e-9)

    def _rounds(self) -> int:
        if self.pool.callers > 1 or get_num_threads() > _cores():
            return 0
        return int(SPIN_SECONDS * self._rounds_per_second)

    @property
    def posted(self) -> int:
        return int(self.counters[self._POSTED])

    def post(self) -> None:
        """Count a part put on the queue (a plain store under the GIL: a count lost to a race between two
        posting threads costs a watching helper its early start, never the part)."""
        self.counters[self._POSTED] += 1

    def watch_posted(self, seen: int, finished: bool, watch: bool = True) -> int:
        """Signal a finished part when ``finished``, then (when ``watch``) watch the posted count until it is
        not ``seen``; returns the count (``seen`` when the watch ran out)."""
        return self._signal_and_wait(self.counters, self._DONE if finished else -1, self._POSTED, seen,
                                     self._rounds() if watch else 0)

    def watch_done(self, futures: list[Future[Any]]) -> None:
        """Watch the finished count until all ``futures`` are done or a watch passes with none finishing."""
        rounds = self._rounds()
        seen = int(self.counters[self._DONE])
        while rounds and not all(f.done() for f in futures):
            now = self._signal_and_wait(self.counters, -1, self._DONE, seen, rounds)
            if now == seen:
                return
            seen = now


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
    thread, not already inside a part, and not in a :func:`layer` of matrix products while BLAS still
    has its own threads."""
    return (getattr(_state, "depth", 0) > 0 and not getattr(_state, "inside", False) and get_num_threads() > 1
            and (not getattr(_state, "products", False) or getattr(_state, "limits_blas", False)))


def parts(n: int, work_per_row: int = 1) -> list[slice]:
    """Slices ``[start, stop)`` covering ``range(n)`` in order, one per thread when splitting pays.

    ``work_per_row`` is the number of values one row costs (for example the elements a layer reads
    per sample); with less than :data:`MIN_WORK` in all, or when not :func:`active`, the one slice
    ``slice(0, n)`` is returned.
    """
    if n < 2 or not getattr(_state, "depth", 0):  # nothing to split: one row, or outside an engine block
        return [slice(0, n)]
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
    if getattr(_state, "depth", 0) > 0:
        if not getattr(_state, "limits_blas", False):
            _blas.acquire()  # held until this thread's outermost engine block ends
            _state.limits_blas = True
        else:
            _blas.limit_new()  # a BLAS loaded since (SciPy's, by the first compiled recurrent loop) too
    pool = _helpers(len(slices) - 1)
    futures: list[Future[T]] = []
    pool.enter()
    try:
        futures = [pool.submit(function, s) for s in slices[1:]]
        first = _run_inside(function, slices[0])
        pool.watch(futures)
        return [first, *(f.result() for f in futures)]
    finally:
        wait(futures)
        pool.leave()


def by_rows(function: Callable[..., object], *arrays: np.ndarray) -> None:
    """``function(*(a[rows] for a in arrays))`` on slices of the arrays' first axis at once (the batch, of
    the same length in each), one slice per thread when splitting pays; the work of a row is the largest
    array's row. For kernels that write into one of the arrays."""
    n = len(arrays[0])
    run(lambda rows: function(*(a[rows] for a in arrays)), parts(n, max(a[0].size for a in arrays) if n else 1))


# --------------------------------------------------------------------------- BLAS on one thread
class _BlasLimit:
    """BLAS held to one thread while a thread of the process splits work in an :func:`engine` block.

    The limit is process-wide, so it has one owner: the first holder (a thread's outermost block, from its
    first split) reads every BLAS library's thread count and sets it to 1, the last to let go sets the
    counts back. The libraries are looked up again (threadpoolctl reads the list of loaded libraries, most
    of a millisecond) when modules were imported since the last look-up, so a BLAS loaded later (SciPy's
    own OpenBLAS) is limited too.
    """

    def __init__(self) -> None:
        self.holders = 0  # threads whose outermost block holds the limit
        self.saved: dict[str, tuple[Any, int]] = {}  # library path -> (controller, thread count before)
        self.libraries: list[Any] = []
        self.modules_seen = -1

    def acquire(self) -> None:
        with _lock:
            self._limit_loaded()
            self.holders += 1

    def limit_new(self) -> None:
        """While held: limit the BLAS libraries loaded since the last look-up too (nothing to do, and no lock
        taken, when no module was imported since)."""
        if len(sys.modules) != self.modules_seen:
            with _lock:
                if self.holders > 0:
                    self._limit_loaded()

    def _limit_loaded(self) -> None:
        """Set every loaded BLAS library not yet limited to one thread, saving its count (under ``_lock``)."""
        if len(sys.modules) != self.modules_seen:
            self.modules_seen = len(sys.modules)
            from threadpoolctl import ThreadpoolController

            self.libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        for library in self.libraries:
            if library.filepath not in self.saved:
                n = library.num_threads
                if n is not None:  # None: the library does not say (nor take a count)
                    self.saved[library.filepath] = library, n
                    _set_blas_threads(library, 1)

    def release(self) -> None:
        with _lock:
            self.holders -= 1
            if self.holders == 0:
                for library, n in self.saved.values():
                    _set_blas_threads(library, n)
                self.saved.clear()


def _set_blas_threads(library: Any, n: int) -> None:
    """Set one library's thread count. threadpoolctl (3.8 on) lets only one Python thread at a time set
    OpenBLAS's count and silently ignores the others; barenet's limit, which has one owner under a lock,
    takes that role for the call and hands it back."""
    release = getattr(type(library), "clear_controlling_thread", None)
    if release is not None:
        release(force=True)
    library.set_num_threads(n)
    if release is not None:
        release()


_blas = _BlasLimit()


@contextlib.contextmanager
def engine(enabled: bool = True) -> Iterator[None]:
    """Within this block (with ``enabled`` and more than one thread) the layers split batches across the
    threads, and from the first split on BLAS runs on one thread (in the whole process, until the last
    block holding that limit in any thread ends); otherwise nothing changes. Nests: an inner block keeps
    the outer one's choice."""
    depth = getattr(_state, "depth", 0)
    if depth == 0 and not (enabled and get_num_threads() > 1):
        yield
        return
    _state.depth = depth + 1
    try:
        yield
    finally:
        _state.depth = depth
        if depth == 0 and getattr(_state, "limits_blas", False):
            _state.limits_blas = False
            _blas.release()


class _LayerCall:
    __slots__ = ("products", "outer")

    def __init__(self, products: bool) -> None:
        self.products = products

    def __enter__(self) -> None:
        self.outer = getattr(_state, "products", False)
        _state.products = self.products

    def __exit__(self, *exc_info: object) -> None:
        _state.products = self.outer


def layer(called: Any) -> contextlib.AbstractContextManager[None]:
    """The block around one call of a layer's ``forward`` or ``backward`` in an :func:`engine` block.

    A layer whose work is large and not one matrix product (``called.splits_batch``) splits as the
    engine says. Any other (a Dense layer: matrix products) leaves its products to BLAS's own threads,
    which share them out without a hand-over, until a layer of the first kind has split in this engine
    block and so put BLAS on one thread; from then on it splits too. Switching BLAS back for it would
    cost more than it gains: BLAS's threads spin for a while after each product and take the cores
    from the next layer's parts.

    Outside an engine block nothing splits, so there is nothing to mark: a shared block that does nothing.
    """
    if not getattr(_state, "depth", 0):
        return _OUTSIDE_ENGINE
    return _LayerCall(not getattr(called, "splits_batch", False))


_OUTSIDE_ENGINE = contextlib.nullcontext()


def _after_fork_in_child() -> None:
    """A child starts with the forking thread only: no helper threads, no lock held by a thread that
    is gone, and of the blocks holding BLAS's limit only the forking thread's, which it will end."""
    global _lock, _pool
    _lock = threading.Lock()
    _pool = None
    _blas.holders = 1 if getattr(_state, "limits_blas", False) else 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``out = a @ b`` for ``a : (m, k)``, ``b : (k, n)``, ``out : (m, n)`` (allocated when ``None``), each
    thread computing a block of the ``m`` rows."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    run(lambda rows: np.matmul(a[rows], b, out=out[rows]), parts(a.shape[0], b.size))
    return out


def matmul_tn(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = a.T @ b`` for ``a : (m, k)``, ``b : (m, n)``, ``out : (k, n)`` (a weight gradient, the ``m``
    samples summed over), each thread computing a block of the ``n`` columns from all ``m`` rows, so that
    nothing is added up afterwards."""
    matmul_tn_many([(a, b, out)])
    return out


def matmul_tn_many(products: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """:func:`matmul_tn` of every ``(a, b, out)`` in ``products`` in one hand-off: each thread computes the
    same share of every product's columns."""
    n = max(b.shape[1] for _, b, _ in products)

    def part(share: slice) -> None:
        for a, b, out in products:
            columns = slice(b.shape[1] * share.start // n, b.shape[1] * share.stop // n)
            if columns.start < columns.stop:
                np.matmul(a.T, b[:, columns], out=out[:, columns])

    run(part, parts(n, sum(a.size * b.shape[1] for a, b, _ in products) // max(n, 1)))


__all__ = ["active", "by_rows", "engine", "get_num_threads", "layer", "matmul", "matmul_tn", "matmul_tn_many", "parts",
           "run", "set_num_threads"]
