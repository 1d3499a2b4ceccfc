"""Mutations of real exported ONNX files, and the contract every mutated file must meet on import.

Used by tests/test_onnx_fuzz.py (driven by hypothesis) and bench/fuzz_onnx.py (driven by a seeded NumPy
generator, thousands of cases). A mutation draws its choices from a :class:`Choices` source so that both
drivers share one list of mutations:

* byte level: flip, overwrite, insert or delete bytes; truncate;
* field level, on the parsed model: dims of an initializer set to huge or negative values, its raw bytes
  replaced, an ``external_data`` reference to a local path (``/etc/passwd``, ``../secret``), a node input
  rewired to a later node's output (a cycle), an operator renamed to an unknown or to another known one,
  an unknown domain, another opset version, attribute values made huge, negative or empty, the graph
  input's dims changed, a node removed;
* external data, for a :class:`Case` whose tensors lie in a file beside the model: the location made
  absolute, climbing out with ``..``, a symbolic link out of the folder (or inside it), missing or empty;
  offsets and lengths past the file, negative, huge or not numbers; keys dropped, repeated or unknown; the
  data file truncated, extended, flipped, removed, replaced by a folder; more tensors moved out.

The contract (:func:`check_import`): ``bn.import_onnx`` either returns a model or raises a ``BarenetError``,
within ``seconds`` and ``megabytes`` of Python-tracked memory, and opens no file outside the model's folder,
and none in it more than once.
"""

from __future__ import annotations

import builtins
import os
import shutil
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import barenet as bn

HUGE = [2**31 - 1, 2**40, 2**62, -1, -(2**40), 0, 10**9]
OPS = ["Cos", "If", "Loop", "Scan", "Relu", "Gemm", "LSTM", "GRU", "Conv", "Softmax", "Reshape", "Gather",
       "Concat", "Expand", "ConstantOfShape", "Slice", "Flatten", "MaxPool", "BatchNormalization", ""]
LOCAL_PATHS = ["/etc/passwd", "../secret.bin", "/proc/self/mem", "weights.bin", "/dev/zero"]


class Choices:
    """A source of choices: ``pick(n)`` an int in ``[0, n)``, ``raw(n)`` ``n`` bytes."""

    def __init__(self, pick: Callable[[int], int], raw: Callable[[int], bytes]) -> None:
        self.pick = pick
        self.raw = raw

    def one(self, seq):
        return seq[self.pick(len(seq))]

    @classmethod
    def from_rng(cls, rng: np.random.Generator) -> Choices:
        return cls(lambda n: int(rng.integers(n)) if n > 0 else 0, lambda n: rng.bytes(n))


# --------------------------------------------------------------------- byte mutations
def _flip(data: bytes, c: Choices) -> bytes:
    b = bytearray(data)
    for _ in range(1 + c.pick(8)):
        i = c.pick(len(b))
        b[i] ^= 1 << c.pick(8)
    return bytes(b)


def _overwrite(data: bytes, c: Choices) -> bytes:
    i = c.pick(len(data))
    chunk = c.raw(1 + c.pick(16))
    return data[:i] + chunk + data[i + len(chunk):]


def _insert(data: bytes, c: Choices) -> bytes:
    i = c.pick(len(data) + 1)
    return data[:i] + c.raw(1 + c.pick(32)) + data[i:]


def _delete(data: bytes, c: Choices) -> bytes:
    i = c.pick(len(data))
    return data[:i] + data[i + 1 + c.pick(64):]


def _truncate(data: bytes, c: Choices) -> bytes:
    return data[:c.pick(len(data))]


# --------------------------------------------------------------------- field mutations
def _initializer(model, c: Choices):
    inits = model.graph.initializer
    return inits[c.pick(len(inits))] if len(inits) else None


def _node(model, c: Choices):
    nodes = model.graph.node
    return nodes[c.pick(len(nodes))] if len(nodes) else None


def _huge_dims(model, c: Choices) -> None:
    t = _initializer(model, c)
    if t is not None and len(t.dims):
        t.dims[c.pick(len(t.dims))] = c.one(HUGE)


def _raw_bytes(model, c: Choices) -> None:
    t = _initializer(model, c)
    if t is not None:
        t.raw_data = c.raw(c.pick(4 * len(t.raw_data) + 9))


def _external(model, c: Choices) -> None:
    t = _initializer(model, c)
    if t is None:
        return
    entry = t.external_data.add()
    entry.key, entry.value = "location", c.one(LOCAL_PATHS)
    if c.pick(2):
        t.data_location = 1
        t.ClearField("raw_data")


def _cycle(model, c: Choices) -> None:
    nodes = model.graph.node
    if len(nodes) < 2:
        return
    i = c.pick(len(nodes) - 1)
    j = i + 1 + c.pick(len(nodes) - i - 1)
    if len(nodes[i].input) and len(nodes[j].output):
        nodes[i].input[c.pick(len(nodes[i].input))] = nodes[j].output[0]


def _op(model, c: Choices) -> None:
    n = _node(model, c)
    if n is not None:
        n.op_type = c.one(OPS)


def _domain(model, c: Choices) -> None:
    n = _node(model, c)
    if n is not None:
        n.domain = c.one(["com.example", "ai.onnx.ml", "com.microsoft", "ai.onnx", "pkg.onnxscript.torch_lib"])


def _opset(model, c: Choices) -> None:
    if len(model.opset_import):
        model.opset_import[0].version = c.one([1, 7, 9, 11, 13, 15, 18, 25, 10_000, -3])
    if c.pick(3) == 0:
        extra = model.opset_import.add()
        extra.domain, extra.version = c.one(["com.example", "ai.onnx.ml", ""]), 1


def _attribute(model, c: Choices) -> None:
    n = _node(model, c)
    if n is None or not len(n.attribute):
        return
    a = n.attribute[c.pick(len(n.attribute))]
    if len(a.ints):
        a.ints[c.pick(len(a.ints))] = c.one(HUGE)
    elif a.type == 2:
        a.i = c.one(HUGE)
    elif a.type == 1:
        a.f = c.one([float("nan"), float("inf"), -1.0, 0.0, 1e30])
    elif a.type == 3:
        a.s = c.one([b"", b"SAME_LOWER", b"reverse", b"bidirectional", b"\xff\xfe"])
    elif a.type == 4:
        a.t.dims.append(c.one(HUGE))


def _input_dims(model, c: Choices) -> None:
    inputs = model.graph.input
    if not len(inputs):
        return
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims):
        d = dims[c.pick(len(dims))]
        if c.pick(3) == 0:
            d.dim_param = "n"
        else:
            d.dim_value = c.one(HUGE)


def _remove_node(model, c: Choices) -> None:
    nodes = model.graph.node
    if len(nodes):
        del nodes[c.pick(len(nodes))]


BYTE_MUTATIONS = [_flip, _overwrite, _insert, _delete, _truncate]
FIELD_MUTATIONS = [_huge_dims, _raw_bytes, _external, _cycle, _op, _domain, _opset, _attribute, _input_dims,
                   _remove_node]


def mutate(data: bytes, c: Choices) -> tuple[bytes, str]:
    """One to three mutations of the serialized model ``data``, all byte-level (a third of the cases) or all
    field-level (so that most cases still parse and reach the deeper checks); returns the new bytes and the
    mutations' names."""
    import onnx

    names = []
    byte_level = c.pick(3) == 0
    model = None
    if not byte_level:
        model = onnx.ModelProto()
        model.ParseFromString(data)
    for _ in range(1 + c.pick(3)):
        m = c.one(BYTE_MUTATIONS if byte_level else FIELD_MUTATIONS)
        if byte_level:
            data = m(data, c) if data else data
        else:
            m(model, c)
        names.append(m.__name__.lstrip("_"))
    return (data if byte_level else model.SerializeToString()), "+".join(names)


# --------------------------------------------------------------------- external data
#: A file of a :class:`Case` that is a folder.
FOLDER = object()
#: Where symbolic links of the external-data mutations may point (each outside the case's folder but the last).
LINK_TARGETS = ["/etc/passwd", "../outside.bin", "/dev/zero", "/proc/self/mem"]
LOCATIONS = ["/etc/passwd", "../outside.bin", "sub/../{data}", "./{data}", "", "{data}\0", "C:\\{data}",
             "\\..\\{data}", "missing.bin", "link.bin", "case.onnx", "{data}/", "/{data}"]
NUMBERS = ["-1", "", " 1", "0x10", "1e3", "9" * 30, str(2**63), str(2**31), "0", "4", "7"]


@dataclass
class Case:
    """A model file and the files beside it: bytes, a ``str`` (a symbolic link to that target), or
    :data:`FOLDER`."""

    model: bytes
    files: dict[str, object] = field(default_factory=dict)


def write_case(folder: Path, case: Case, name: str = "case.onnx") -> Path:
    """Empty ``folder`` (made if missing), write ``case`` into it and return the model file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for file, content in case.files.items():
        if content is FOLDER:
            (folder / file).mkdir()
        elif isinstance(content, str):
            os.symlink(content, folder / file)
        else:
            (folder / file).write_bytes(content)
    (folder / name).write_bytes(case.model)
    return folder / name


def _external_tensors(model) -> list:
    return [t for t in model.graph.initializer if t.data_location == 1]


def _entry(tensor, key: str):
    return next((e for e in tensor.external_data if e.key == key), None)


def _data_name(case: Case) -> str:
    return next((k for k, v in case.files.items() if isinstance(v, bytes)), "data.bin")


def _location(model, case: Case, c: Choices) -> None:
    tensors = _external_tensors(model)
    if not tensors:
        return
    entry = _entry(c.one(tensors), "location")
    if entry is None:
        return
    entry.value = c.one(LOCATIONS).format(data=_data_name(case))
    if entry.value == "link.bin":
        case.files["link.bin"] = c.one([*LINK_TARGETS, _data_name(case)])


def _numbers(model, case: Case, c: Choices) -> None:
    tensors = _external_tensors(model)
    if not tensors:
        return
    tensor = c.one(tensors)
    key = c.one(["offset", "length"])
    entry = _entry(tensor, key) or tensor.external_data.add(key=key)
    data = case.files.get(_data_name(case))
    size = len(data) if isinstance(data, bytes) else 0
    entry.value = c.one([*NUMBERS, str(size), str(size + 1), str(max(size - 4, 0))])


def _keys(model, case: Case, c: Choices) -> None:
    tensors = _external_tensors(model)
    if not tensors:
        return
    tensor = c.one(tensors)
    action = c.pick(3)
    if action == 0 and len(tensor.external_data):
        del tensor.external_data[c.pick(len(tensor.external_data))]
    elif action == 1:
        tensor.external_data.add(key=c.one(["basepath", "checksum", "location", "offset", "LOCATION"]),
                                 value=c.one(["..", "0", _data_name(case), "/tmp"]))
    else:
        tensor.data_location = 0 if c.pick(2) else 1
        if c.pick(2):
            tensor.raw_data = b"\0" * 4


def _data_file(model, case: Case, c: Choices) -> None:
    name = _data_name(case)
    data = case.files.get(name)
    if not isinstance(data, bytes):
        return
    action = c.pick(6)
    if action == 0:
        case.files[name] = data[:c.pick(len(data) + 1)]
    elif action == 1:
        case.files[name] = data + c.raw(1 + c.pick(64))
    elif action == 2 and data:
        flipped = bytearray(data)
        for _ in range(1 + c.pick(8)):
            flipped[c.pick(len(flipped))] ^= 1 << c.pick(8)
        case.files[name] = bytes(flipped)
    elif action == 3:
        del case.files[name]
    elif action == 4:
        case.files[name] = FOLDER
    else:
        case.files[name] = c.one(LINK_TARGETS)


def _move_out(model, case: Case, c: Choices) -> None:
    """Move an inline initializer into the data file (its bytes appended), at the right offset or not."""
    name = _data_name(case)
    data = case.files.get(name)
    inline = [t for t in model.graph.initializer if t.data_location != 1 and t.raw_data]
    if not isinstance(data, bytes) or not inline:
        return
    tensor = c.one(inline)
    offset, raw = len(data), tensor.raw_data
    case.files[name] = data + raw
    tensor.ClearField("raw_data")
    tensor.data_location = 1
    tensor.external_data.add(key="location", value=name)
    tensor.external_data.add(key="offset", value=str(offset + c.one([0, 0, 1, -1, len(raw)])))
    tensor.external_data.add(key="length", value=str(len(raw) + c.one([0, 0, 4, -4])))


EXTERNAL_MUTATIONS = [_location, _numbers, _keys, _data_file, _move_out]


def mutate_case(case: Case, c: Choices) -> tuple[Case, str]:
    """Mutate ``case``: its model as :func:`mutate` does, or, for a case with external data (half the time),
    one to three external-data mutations of its model and files."""
    import onnx

    if not case.files or c.pick(2) == 0:
        model, names = mutate(case.model, c)
        return Case(model, dict(case.files)), names
    model = onnx.ModelProto()
    model.ParseFromString(case.model)
    new = Case(b"", dict(case.files))
    names = []
    for _ in range(1 + c.pick(3)):
        m = c.one(EXTERNAL_MUTATIONS)
        m(model, new, c)
        names.append(m.__name__.lstrip("_"))
    new.model = model.SerializeToString()
    return new, "+".join(names)


@dataclass
class Outcome:
    imported: bool
    seconds: float
    peak_mb: float
    error: str | None


class _NoOtherFiles:
    """Fails the case if anything opens a file outside the model's folder (or one in it twice) while it is
    active, but for what the process reads of itself: its map of loaded libraries (threadpoolctl reads it once,
    when a model first runs on barenet's threads) and numba's cache of compiled kernels (``.nbi``/``.nbc``, on a
    kernel's first call)."""

    def __init__(self, model: Path) -> None:
        self.model = str(model)
        self.folder = os.path.realpath(Path(model).parent)
        self.opened: list[str] = []
        self.inside: Counter = Counter()

    def __enter__(self):
        self._open = builtins.open

        def guarded(file, *args, **kwargs):
            if isinstance(file, (str, Path)) and str(file) not in (self.model, "/proc/self/maps") \
                    and not str(file).endswith((".nbi", ".nbc")):
                real = os.path.realpath(file)
                if os.path.commonpath([real, self.folder]) == self.folder:
                    self.inside[real] += 1
                else:
                    self.opened.append(str(file))
            return self._open(file, *args, **kwargs)

        builtins.open = guarded
        return self

    def __exit__(self, *exc):
        builtins.open = self._open


def check_import(path: Path, *, seconds: float = 5.0, megabytes: float = 200.0) -> Outcome:
    """Import ``path`` and check the contract in the module docstring; raise ``AssertionError`` if broken."""
    tracemalloc.start()
    start = time.process_time()
    imported, error = False, None
    try:
        with _NoOtherFiles(path) as guard:
            try:
                model = bn.import_onnx(path)
                imported = True
            except bn.BarenetError as exc:
                error = str(exc)
            if imported and int(np.prod(model.input_shape)) <= 10**5:
                X = np.random.default_rng(0).integers(0, 2, size=(2, *model.input_shape)).astype(model.dtype)
                try:
                    out = model.predict(X)
                    assert out.shape[0] == 2
                except bn.BarenetError:
                    pass
        elapsed = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert not guard.opened, f"import opened files outside the model's folder: {guard.opened}"
    assert all(n == 1 for n in guard.inside.values()), f"import opened a file more than once: {guard.inside}"
    assert elapsed < seconds, f"import took {elapsed:.2f} s"
    assert peak < megabytes, f"import peaked at {peak:.0f} MB"
    return Outcome(imported, elapsed, peak, error)
