"""The :class:`Dataset` pipeline: a re-iterable stream of row blocks and the stages that reshape it.

An *element* of a dataset is a block of rows: a NumPy array, or a tuple, list or dict of them (``(x, y)``,
``(x, y, sample_weight)``, a table ``{column: values}``) whose arrays share their first axis. Sources
(:mod:`barenet.data.sources`) yield blocks as they read them; :meth:`Dataset.batch` cuts and joins blocks
into batches of a fixed number of rows, which is what ``fit`` trains on.

Every stage reads its upstream lazily, one block at a time: one pass holds the shuffle buffer, the batch
being built and the ``prefetch`` queue, never the whole data. A pass is identified by its epoch number:
``dataset.iterate(epoch)`` gives the same blocks in the same order every time it is called with the same
epoch (and the same seeds), so training from a dataset is as reproducible as training from arrays.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from typing import Any

import numpy as np

from ..errors import ConfigError, ShapeError

Element = Any


# ----------------------------------------------------------------- elements: arrays in tuples, lists, dicts
def rows_of(element: Element) -> int:
    """The number of rows of a block (the first axis of its arrays, which must agree)."""
    counts = {len(leaf) for leaf in _leaves(element)}
    if len(counts) != 1:
        raise ShapeError(f"a block's arrays have different numbers of rows {sorted(counts)}; expected one")
    return counts.pop()


def _leaves(element: Element) -> list[np.ndarray]:
    if isinstance(element, Mapping):
        return [leaf for value in element.values() for leaf in _leaves(value)]
    if isinstance(element, (tuple, list)):
        return [leaf for value in element for leaf in _leaves(value)]
    array = np.asarray(element)
    if array.ndim == 0:
        raise ShapeError(f"a block holds a scalar {element!r}; expected arrays with one row per sample")
    return [array]


def take_rows(element: Element, index: slice | np.ndarray) -> Element:
    """The rows ``index`` of every array of a block, in the block's structure."""
    if isinstance(element, Mapping):
        return {key: take_rows(value, index) for key, value in element.items()}
    if isinstance(element, tuple):
        return tuple(take_rows(value, index) for value in element)
    if isinstance(element, list):
        return [take_rows(value, index) for value in element]
    return np.asarray(element)[index]


def concat(blocks: list[Element]) -> Element:
    """Blocks of one structure joined along their rows (the single block itself when there is one)."""
    if len(blocks) == 1:
        return blocks[0]
    first = blocks[0]
    if isinstance(first, Mapping):
        return {key: concat([b[key] for b in blocks]) for key in first}
    if isinstance(first, tuple):
        return tuple(concat([b[i] for b in blocks]) for i in range(len(first)))
    if isinstance(first, list):
        return [concat([b[i] for b in blocks]) for i in range(len(first))]
    return np.concatenate([np.asarray(b) for b in blocks])


def _positive(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _count(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer (rows), got {value!r}")
    return int(value)


# ----------------------------------------------------------------- the pipeline
class Dataset:
    """A stream of row blocks that can be read again, pass after pass, in bounded memory.

    Make one with a source (:func:`~barenet.data.from_arrays`, :func:`~barenet.data.from_npy`,
    :func:`~barenet.data.from_parquet`, :func:`~barenet.data.from_csv`, :func:`~barenet.data.from_dask`) and
    chain the stages; each returns a new dataset and leaves this one as it was::

        train = bn.data.from_parquet("logs/", target="clicked").skip(10_000).shuffle(100_000, seed=0)
        model.fit(train.batch(256).prefetch(), epochs=5)

    ``fit``, ``evaluate`` and ``predict`` take a dataset in place of arrays; an unbatched one is batched
    with their ``batch_size``. ``rows`` is the number of rows in one pass when the source knows it (a CSV
    file does not), and ``steps`` the number of batches.

    Passes: ``dataset.iterate(epoch)`` reads the pass of that epoch (``fit`` reads epoch ``k`` in its
    ``k``-th epoch); ``iter(dataset)`` reads the next pass, counting from 0 for each dataset object.
    A seeded :meth:`shuffle` gives each epoch its own order, the same every time that epoch is read.
    """

    rows: int | None = None
    batch_size: int | None = None
    #: A stage that must run in this process (a Dask source): ``prefetch(process=True)`` refuses it.
    in_process_only: bool = False

    def __init__(self, upstream: Dataset | None = None) -> None:
        self.upstream = upstream
        if upstream is not None:
            self.rows, self.batch_size = upstream.rows, upstream.batch_size
        self._passes = 0

    # -- reading
    def iterate(self, epoch: int = 0) -> Iterator[Element]:
        """The blocks (or batches) of the pass of ``epoch``."""
        return self._elements(int(epoch), None)

    def __iter__(self) -> Iterator[Element]:
        epoch, self._passes = self._passes, self._passes + 1
        return self.iterate(epoch)

    def _elements(self, epoch: int, order: np.random.Generator | None) -> Iterator[Element]:
        """The elements of the pass of ``epoch``; ``order``, when given, is the generator a source shuffles
        its parts (files, row groups, blocks) with."""
        raise NotImplementedError

    # A stage that keeps state of its own across passes (what it wrote somewhere as it read) returns it here
    # after a whole pass in the child of ``prefetch(process=True)``, and the same stage in the parent takes it
    # over; the default, ``None``, hands nothing back. A pass cut short hands nothing back.
    def _state_after_pass(self) -> Any:
        return None

    def _take_state(self, state: Any) -> None:
        pass

    @property
    def batched(self) -> bool:
        """Whether the elements are batches of ``batch_size`` rows (the last may be shorter)."""
        return self.batch_size is not None

    @property
    def steps(self) -> int | None:
        """Batches in one pass, when both the rows and the batch size are known."""
        if self.rows is None or self.batch_size is None:
            return None
        return -(-self.rows // self.batch_size)

    # -- stages
    def shuffle(self, buffer_size: int, seed: int | None = None) -> Dataset:
        """Shuffle the order of the source's parts (files, row groups, blocks) and the rows within a buffer.

        Rows are gathered into a buffer of ``buffer_size`` rows, which is permuted and passed on whole; the
        next buffer starts empty. A row thus moves anywhere within its buffer, and the part order moves whole
        parts anywhere in the pass. Memory: about two buffers of rows. With a ``seed`` every epoch has its own
        order, the same each time that epoch is read; without one, each pass draws fresh randomness.
        """
        if self.batched:
            raise ConfigError("shuffle a dataset before batch(): shuffling works on rows, and batches are fixed")
        return _Shuffle(self, _positive(buffer_size, "buffer_size"), seed)

    def batch(self, batch_size: int, drop_remainder: bool = False) -> Dataset:
        """Elements of exactly ``batch_size`` rows, joined across block boundaries; the last batch of a pass
        holds the rest of the rows unless ``drop_remainder``."""
        if self.batched:
            raise ConfigError(f"the dataset is already batched (batch_size={self.batch_size})")
        return _Batch(self, _positive(batch_size, "batch_size"), bool(drop_remainder))

    def map(self, fn: Callable[[Element], Element], *, rows: int | None | str = "same") -> Dataset:
        """Apply ``fn`` to every element (a block, or a batch after :meth:`batch`).

        ``rows``: the rows of a pass after the map; ``"same"`` (the default) when ``fn`` keeps every row,
        ``None`` when it drops some and the count is unknown.
        """
        return _Map(self, fn, rows)

    def prefetch(self, size: int = 2, *, process: bool = False) -> Dataset:
        """Read ahead in the background, keeping up to ``size`` elements ready while the current one is used.

        By default a thread reads ahead: NumPy, pyarrow and pandas release the interpreter while they read
        and parse, so reading overlaps training where training leaves the interpreter free (large layers).
        With ``process=True`` the stages upstream run in a child process, which sends the elements in
        groups of about 4 MB through a pipe: reading, parsing, ``map`` and ``shuffle`` then overlap even a
        small network's training, whose Python bookkeeping would otherwise take turns with them for the
        interpreter. The child then reads ahead by one group while this process uses the last (``size`` is
        the thread's queue). It is forked where the system can (Linux), so a ``map`` function may be any
        callable; elsewhere it is spawned and the pipeline must be picklable. A
        :func:`~barenet.data.from_dask` source stays in this process (its cluster connection does not survive
        a fork): use the thread there. Memory: the child's buffers (its shuffle buffer, the group being
        sent), in a process of its own. Ctrl-C is left to this process, which stops the child; so does
        leaving a pass early.

        An error in the thread or the child is raised where the element would have been (an error that
        cannot cross the process boundary as it is becomes a :class:`~barenet.errors.StreamError` with its
        type and message).
        """
        size = _positive(size, "size")
        if not process:
            return _Prefetch(self, size)
        stage = next((stage for stage in _chain(self) if stage.in_process_only), None)
        if stage is not None:
            raise ConfigError(f"prefetch(process=True) cannot run {stage.describe()} in a child process "
                              f"(a Dask source keeps its cluster connection in this process); use "
                              f"prefetch() (a thread) for it")
        return _ProcessPrefetch(self, size)

    def take(self, rows: int) -> Dataset:
        """The first ``rows`` rows of each pass (the validation part of a split; see :meth:`skip`)."""
        return _Take(self, _count(rows, "rows"))

    def skip(self, rows: int) -> Dataset:
        """Every row after the first ``rows`` of each pass. ``ds.take(n)`` and ``ds.skip(n)`` split a dataset
        in two without overlap; split before :meth:`shuffle`, so that the parts stay the same each epoch."""
        return _Skip(self, _count(rows, "rows"))

    def with_rows(self, rows: int) -> Dataset:
        """The same stream, declared to hold ``rows`` rows a pass (for the progress bar's ETA when the source
        cannot count them, as for CSV files)."""
        return _Map(self, None, _count(rows, "rows"))

    # -- description
    def describe(self) -> str:
        """The pipeline as it was written, e.g. ``from_parquet('logs') .shuffle(1000, seed=0) .batch(32)``."""
        return self.upstream.describe() + self._stage()

    def _stage(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"Dataset({self.describe()}, rows={self.rows})"


def _upstream(dataset: Dataset, epoch: int, order: np.random.Generator | None):
    """The upstream's elements as a context manager that closes them (files, threads) when the stage ends."""
    return closing(dataset.upstream._elements(epoch, order))


class _Shuffle(Dataset):
    def __init__(self, upstream: Dataset, buffer_size: int, seed: int | None) -> None:
        super().__init__(upstream)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.buffer_size, self.seed = buffer_size, seed

    def _stage(self) -> str:
        return f".shuffle({self.buffer_size}, seed={self.seed})"

    def _elements(self, epoch, order):
        rng = np.random.default_rng(None if self.seed is None else [int(self.seed), epoch])
        parts, rows = rng.spawn(2)
        buffer: list[Element] = []
        held = 0
        with _upstream(self, epoch, parts) as blocks:
            for block in blocks:
                buffer.append(block)
                held += rows_of(block)
                if held >= self.buffer_size:
                    yield take_rows(concat(buffer), rows.permutation(held))
                    buffer, held = [], 0
        if held:
            yield take_rows(concat(buffer), rows.permutation(held))


class _Batch(Dataset):
    def __init__(self, upstream: Dataset, batch_size: int, drop_remainder: bool) -> None:
        super().__init__(upstream)
        self.batch_size, self.drop_remainder = batch_size, drop_remainder
        if drop_remainder and self.rows is not None:
            self.rows = self.rows // batch_size * batch_size

    def _stage(self) -> str:
        return f".batch({self.batch_size}" + (", drop_remainder=True)" if self.drop_remainder else ")")

    def _elements(self, epoch, order):
        bs = self.batch_size
        pending: list[Element] = []
        held = 0
        with _upstream(self, epoch, order) as blocks:
            for block in blocks:
                n, start = rows_of(block), 0
                if held:
                    need = bs - held
                    if n < need:
                        pending.append(block)
                        held += n
                        continue
                    yield concat([*pending, take_rows(block, slice(0, need))])
                    pending, held, start = [], 0, need
                while n - start >= bs:
                    yield take_rows(block, slice(start, start + bs))
                    start += bs
                if start < n:
                    pending, held = [take_rows(block, slice(start, n))], n - start
        if held and not self.drop_remainder:
            yield concat(pending)


class _Map(Dataset):
    def __init__(self, upstream: Dataset, fn: Callable[[Element], Element] | None, rows: int | None | str) -> None:
        super().__init__(upstream)
        if fn is not None and not callable(fn):
            raise ConfigError(f"map takes a function of one element, got {type(fn).__name__}")
        if rows != "same":
            if rows is not None:
                rows = _count(rows, "rows")
            self.rows = rows
        self.fn = fn

    def _stage(self) -> str:
        if self.fn is None:
            return f".with_rows({self.rows})"
        return f".map({getattr(self.fn, '__qualname__', type(self.fn).__name__)})"

    def _elements(self, epoch, order):
        with _upstream(self, epoch, order) as elements:
            for element in elements:
                yield element if self.fn is None else self.fn(element)


class _Take(Dataset):
    def __init__(self, upstream: Dataset, rows: int) -> None:
        super().__init__(upstream)
        self.limit = rows
        self.rows = rows if self.rows is None else min(rows, self.rows)
        if upstream.rows is None:
            self.rows = None

    def _stage(self) -> str:
        return f".take({self.limit})"

    def _elements(self, epoch, order):
        left = self.limit
        if not left:
            return
        with _upstream(self, epoch, None) as blocks:
            for block in blocks:
                n = rows_of(block)
                if n >= left:
                    yield take_rows(block, slice(0, left))
                    return
                left -= n
                yield block


class _Skip(Dataset):
    def __init__(self, upstream: Dataset, rows: int) -> None:
        super().__init__(upstream)
        self.count = rows
        if self.rows is not None:
            self.rows = max(self.rows - rows, 0)

    def _stage(self) -> str:
        return f".skip({self.count})"

    def _elements(self, epoch, order):
        left = self.count
        with _upstream(self, epoch, None) as blocks:
            for block in blocks:
                if left:
                    n = rows_of(block)
                    if n <= left:
                        left -= n
                        continue
                    block, left = take_rows(block, slice(left, n)), 0
                yield block


_ITEM, _END, _ERROR, _PACKED = range(4)


class _Prefetch(Dataset):
    def __init__(self, upstream: Dataset, size: int) -> None:
        super().__init__(upstream)
        self.size = size

    def _stage(self) -> str:
        return f".prefetch({self.size})"

    def _elements(self, epoch, order):
        ready: queue.Queue = queue.Queue(maxsize=self.size)
        stop = threading.Event()

        def put(item: tuple[int, Any]) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                with _upstream(self, epoch, order) as elements:
                    for element in elements:
                        if not put((_ITEM, element)):
                            return
                put((_END, None))
            except BaseException as exc:  # handed to the reader, which raises it
                put((_ERROR, exc))

        worker = threading.Thread(target=produce, name="barenet-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                kind, value = ready.get()
                if kind == _END:
                    return
                if kind == _ERROR:
                    raise value
                yield value
        finally:
            stop.set()
            worker.join()


#: A child of ``prefetch(process=True)`` sends its elements in groups of about this many bytes (or of
#: :data:`_GROUP_ITEMS` elements, or what it has after :data:`_GROUP_SECONDS`): one pickle and one pipe write
#: for many small batches, without holding back a slow pipeline's elements.
_GROUP_BYTES = 4 << 20
_GROUP_ITEMS = 1024
_GROUP_SECONDS = 0.05


def _nbytes(element: Element) -> int:
    return sum(np.asarray(leaf).nbytes for leaf in _leaves(element))


# A group whose elements are arrays of one structure (the usual batches: tuples of numeric arrays with the same
# dtypes and row shapes) crosses the pipe as raw bytes: each array of the structure joined over the group's
# elements, read by the parent straight into a new array, whose row slices are the elements it yields. Pickled
# per element, a batch of a few hundred rows cost the parent a copy out of the pickle and a rebuild of every
# array (about 100 ns a row for 24 float32 features); raw, one copy out of the pipe (about 25).
def _spec(element: Element) -> Any:
    """The structure of an element made of tuples, lists and dicts of arrays of numbers, booleans or dates, as
    ``("array", dtype, row shape)``, ``("tuple" | "list", parts)`` or ``("dict", ((key, part), ...))``; ``None``
    for anything else (sent pickled)."""
    kind = type(element)
    if kind is np.ndarray:
        if element.ndim == 0 or element.dtype.kind not in "biufcmM" or not element.dtype.isnative:
            return None
        return ("array", element.dtype.str, element.shape[1:])
    if kind in (tuple, list):
        parts = tuple(_spec(value) for value in element)
        return None if None in parts else (kind.__name__, parts)
    if kind is dict:
        parts = tuple(_spec(value) for value in element.values())
        return None if None in parts else ("dict", tuple(zip(element, parts, strict=True)))
    return None


def _arrays_of(spec: Any) -> list[tuple[str, tuple[int, ...]]]:
    """``(dtype, row shape)`` of each array of a structure, in the order of :func:`_leaves`."""
    if spec[0] == "array":
        return [spec[1:]]
    parts = [part for _, part in spec[1]] if spec[0] == "dict" else spec[1]
    return [array for part in parts for array in _arrays_of(part)]


def _build(spec: Any, leaves: Iterator[np.ndarray]) -> Element:
    """The element of structure ``spec`` (see :func:`_spec`) holding the next arrays of ``leaves``."""
    if spec[0] == "array":
        return next(leaves)
    if spec[0] == "dict":
        return {key: _build(part, leaves) for key, part in spec[1]}
    parts = [_build(part, leaves) for part in spec[1]]
    return tuple(parts) if spec[0] == "tuple" else parts


def _send_group(connection: Any, group: list[Element]) -> bool:
    """Send a group of elements, as raw arrays where they share one structure (else pickled)."""
    spec = _spec(group[0]) if os.name == "posix" else None  # raw writes to the pipe's descriptor: POSIX
    try:
        lengths = [rows_of(element) for element in group] if spec is not None else None
    except ShapeError:
        lengths = None
    if lengths is None or any(_spec(element) != spec for element in group[1:]):
        return _send(connection, (_ITEM, group))
    joined = [np.ascontiguousarray(leaf) for leaf in _leaves(concat(group))]
    if not _send(connection, (_PACKED, (spec, lengths))):
        return False
    try:
        for leaf in joined:
            data = memoryview(leaf.reshape(-1).view(np.uint8))
            while data:  # raw after the header, which gave the sizes
                data = data[os.write(connection.fileno(), data):]
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


def _widen(connection: Any) -> None:
    """Give a pipe a buffer of up to 1 MiB (Linux; 64 KiB by default): a group of batches then crosses in a few
    writes rather than dozens, each of which waits for the reader. Silently nothing where that is not allowed."""
    try:
        import fcntl

        fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError, ValueError):
        pass


def _receive_group(connection: Any, spec: Any, lengths: list[int]) -> list[Element]:
    """The elements of a group sent by :func:`_send_group` as raw arrays: row slices of one array per leaf
    (``EOFError`` when the pipe ends first)."""
    total = sum(lengths)
    joined = []
    for dtype, row_shape in _arrays_of(spec):
        leaf = np.empty((total, *row_shape), dtype=np.dtype(dtype))
        data = memoryview(leaf.reshape(-1).view(np.uint8))
        while data:  # straight from the pipe into the array
            got = os.readv(connection.fileno(), [data])
            if not got:
                raise EOFError
            data = data[got:]
        joined.append(leaf)
    ends = np.cumsum([0, *lengths])
    return [_build(spec, iter([leaf[a:b] for leaf in joined])) for a, b in zip(ends[:-1], ends[1:], strict=True)]


def _send(connection: Any, message: tuple[int, Any]) -> bool:
    """Send ``message`` to the parent; False when the parent has gone (it closed its end: stop quietly)."""
    try:
        connection.send(message)
        return True
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return False


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a :class:`StreamError` with its type and message."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        from ..errors import StreamError

        return StreamError(f"{type(exc).__name__}: {exc}")


def _chain(dataset: Dataset | None) -> list[Dataset]:
    """``dataset`` and the stages upstream of it, down to the source."""
    stages = []
    while dataset is not None:
        stages.append(dataset)
        dataset = dataset.upstream
    return stages


def _produce_in_child(dataset: _ProcessPrefetch, epoch: int, order: np.random.Generator | None,
                      connection: Any) -> None:
    """The child of ``prefetch(process=True)``: the upstream's elements of the pass, in groups, then the end
    mark or the error."""
    import signal
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it stops this process
    try:
        group: list[Element] = []
        held, since = 0, time.monotonic()
        with _upstream(dataset, epoch, order) as elements:
            for element in elements:
                group.append(element)
                held += _nbytes(element)
                if held >= _GROUP_BYTES or len(group) >= _GROUP_ITEMS or time.monotonic() - since > _GROUP_SECONDS:
                    if not _send_group(connection, group):
                        return
                    group, held, since = [], 0, time.monotonic()
        if group and not _send_group(connection, group):
            return
        _send(connection, (_END, [stage._state_after_pass() for stage in _chain(dataset.upstream)]))
    except BaseException as exc:  # handed to the parent, which raises it
        _send(connection, (_ERROR, _portable(exc)))
    finally:
        connection.close()


class _ProcessPrefetch(_Prefetch):
    def _stage(self) -> str:
        return f".prefetch({self.size}, process=True)"

    def _elements(self, epoch, order):
        import multiprocessing

        from ..errors import StreamError

        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        receive, send = context.Pipe(duplex=False)
        _widen(receive)
        child = context.Process(target=_produce_in_child, args=(self, epoch, order, send),
                                name="barenet-prefetch", daemon=True)
        child.start()
        send.close()  # the child's end: when the child exits, this end reads EOF
        finished = False
        try:
            while True:
                try:
                    kind, value = receive.recv()
                    if kind == _PACKED:
                        kind, value = _ITEM, _receive_group(receive, *value)
                except EOFError:
                    child.join(timeout=5)
                    raise StreamError(f"the prefetch process of {self.upstream.describe()} ended without "
                                      f"finishing the pass (exit code {child.exitcode})") from None
                if kind == _END:
                    finished = True
                    for stage, state in zip(_chain(self.upstream), value, strict=True):
                        if state is not None:
                            stage._take_state(state)
                    return
                if kind == _ERROR:
                    finished = True  # the child has sent its last message and is leaving
                    raise value
                yield from value
        finally:
            receive.close()
            if not finished:  # left early (a step limit, an error here, Ctrl-C): the rest of the pass is not wanted
                child.terminate()
            child.join()


class Source(Dataset):
    """A dataset read from somewhere: a list of parts (files, row groups, blocks), each read into blocks.

    Subclasses set ``parts``, ``rows`` and ``name`` and implement :meth:`read`. A :meth:`shuffle` downstream
    permutes the parts.
    """

    parts: list[Any]
    name: str

    def __init__(self) -> None:
        super().__init__(None)

    def read(self, part: Any) -> Iterator[Element]:
        """The blocks of one part."""
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def _elements(self, epoch, order):
        indices = range(len(self.parts)) if order is None else order.permutation(len(self.parts))
        for i in indices:
            with closing(self.read(self.parts[int(i)])) as blocks:
                yield from blocks
