"""Reading an ONNX file as untrusted data: every check that runs before anything is built or allocated.

An ONNX file is treated like a ``.barenet`` file: it may be truncated, corrupted or hostile. This module
reads the file it is given, and the external data files it names only where they lie in its own folder
(:func:`read_external_data`), parses it with protobuf, and checks, before a single weight array is made:

* the file size (with its external data) against a cap, and that protobuf can parse it;
* the operator sets it imports (the default domain only, at a version this onnx package knows);
* every initializer and constant: no segmented data, a known dtype, non-negative dims whose element count
  times the item size equals the bytes actually stored, within a budget tied to the bytes read;
* every node: a known domain, an operator in the importer's list, no subgraph attributes;
* the graph: every value defined once, and an order in which every node's inputs exist before it runs (a
  topological order; a cycle or a dangling input is refused).

Every problem raises :class:`~barenet.errors.ModelFileError` saying what was wrong.
"""

from __future__ import annotations

import os
import re
import stat
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError

#: Largest file accepted by default (bytes).
MAX_FILE_BYTES = 1 << 30
#: ONNX ``TensorProto`` data types the importer reads, with their NumPy dtype and the field that holds them
#: when they are not stored as raw bytes.
TENSOR_TYPES: dict[int, tuple[np.dtype, str]] = {
    1: (np.dtype("<f4"), "float_data"),
    2: (np.dtype("u1"), "int32_data"),
    3: (np.dtype("i1"), "int32_data"),
    6: (np.dtype("<i4"), "int32_data"),
    7: (np.dtype("<i8"), "int64_data"),
    9: (np.dtype("?"), "int32_data"),
    10: (np.dtype("<f2"), "int32_data"),
    11: (np.dtype("<f8"), "double_data"),
}
#: The domains a node may use: ONNX's default operator set, under either of its names.
DEFAULT_DOMAINS = ("", "ai.onnx")
#: Oldest default-domain opset accepted (older ones have different Slice/Squeeze/Dropout signatures).
MIN_OPSET = 9
#: The keys of a tensor's ``external_data`` that are read. ``checksum`` (a SHA-1 digest that the ONNX
#: specification leaves loosely defined, and that no writer in use fills) is accepted and not checked.
EXTERNAL_KEYS = ("location", "offset", "length", "checksum")


def bad(message: str) -> ModelFileError:
    """The one error type of the importer."""
    return ModelFileError(message)


def node_label(node: Any) -> str:
    """``'Conv' node 'conv1'`` (the first output's name when the node has no name)."""
    name = node.name or (node.output[0] if len(node.output) else "?")
    return f"{node.op_type!r} node {name!r}"


def read_model(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES):
    """Read and parse ``path`` as an ONNX ``ModelProto``, without following any reference to another file.

    Raises :class:`ModelFileError` when the file is missing, not a regular file, larger than ``max_bytes``,
    or not a parsable ONNX model.
    """
    import onnx

    p = Path(path)
    try:
        if not p.is_file():
            raise bad(f"ONNX file {str(p)!r} does not exist or is not a regular file")
        size = p.stat().st_size
        if size > max_bytes:
            raise bad(f"ONNX file {str(p)!r} is {size} bytes, more than the {max_bytes}-byte limit "
                      f"(pass max_bytes=... to allow larger files)")
        with open(p, "rb") as f:
            # read(n) allocates n bytes up front: ask for the size just measured (+1 to see growth), not the cap.
            data = f.read(size + 1)
    except OSError as exc:
        raise bad(f"cannot read ONNX file {str(p)!r}: {exc}") from None
    if len(data) > size:
        raise bad(f"ONNX file {str(p)!r} grew while it was read; expected {size} bytes")
    if not data:
        raise bad(f"ONNX file {str(p)!r} is empty")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError and friends: all mean "not an ONNX model"
        raise bad(f"{str(p)!r} is not a valid ONNX file (protobuf could not parse it: {exc})") from None
    if not model.HasField("graph"):
        raise bad(f"{str(p)!r} holds no ONNX graph; is it an ONNX model file?")
    return model, len(data)


def read_external_data(model: Any, path: str | os.PathLike, model_bytes: int, *, max_bytes: int = MAX_FILE_BYTES
                       ) -> int:
    """Move the data of every tensor ``model`` stores outside its file (``data_location = EXTERNAL``: the
    initializers, and tensor attributes of the nodes) into the tensor itself; return the bytes read.

    A tensor's ``external_data`` names a ``location`` and optionally an ``offset`` and a ``length`` (decimal
    byte counts). The location must be a relative path that stays in the folder of ``path``: not absolute, no
    ``..`` part, and no symbolic link that leads out of the folder (links are resolved before anything is
    opened). The range must lie inside the file and hold exactly the bytes the tensor's dims and type declare
    (without a length, the rest of the file from the offset). The model file and all the bytes read may add up
    to ``max_bytes`` at most. Each file is opened once, however many tensors it holds. Anything else raises
    :class:`ModelFileError` naming the tensor and the location.
    """
    tensors = [(t, f"initializer {t.name!r}") for t in model.graph.initializer]
    tensors += [(a.t, f"attribute {a.name!r} of {node_label(node)}") for node in model.graph.node
                for a in node.attribute if a.HasField("t")]
    wanted = [(t, what) for t, what in tensors if t.data_location == 1]
    if not wanted:
        return 0
    folder = os.path.realpath(os.path.dirname(os.path.abspath(os.fspath(path))))
    plans: dict[str, list[tuple[Any, str, str, int, int | None, int]]] = {}
    for tensor, what in wanted:
        location, offset, length, expected = _external_entry(tensor, what, max_bytes)
        real = os.path.realpath(os.path.join(folder, location))
        if os.path.commonpath([real, folder]) != folder:
            raise bad(f"{what} names external data {location!r}, which leads out of the model's folder through a "
                      "symbolic link; barenet reads external data only from files in the model's folder")
        plans.setdefault(real, []).append((tensor, what, location, offset, length, expected))
    total = 0
    for real, parts in plans.items():
        location = parts[0][2]
        try:
            with open(real, "rb", opener=_no_follow) as f:
                info = os.fstat(f.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise bad(f"external data {location!r} of {parts[0][1]} is not a regular file")
                size = info.st_size
                for tensor, what, _, offset, length, expected in parts:
                    length = size - offset if length is None else length
                    if offset > size or length < 0 or offset + length > size:
                        raise bad(f"{what} reads bytes {offset} to {offset + max(length, 0)} of external data "
                                  f"{location!r}, which has {size} bytes")
                    if length != expected:
                        raise bad(f"{what} declares dims {list(tensor.dims)} ({expected} bytes) but its external "
                                  f"data {location!r} holds {length} bytes")
                    total += length
                    if model_bytes + total > max_bytes:
                        raise bad(f"the ONNX file and its external data come to more than the {max_bytes}-byte "
                                  "limit (pass max_bytes=... to allow larger models)")
                    f.seek(offset)
                    data = f.read(length)
                    if len(data) != length:
                        raise bad(f"external data {location!r} shrank while it was read")
                    tensor.ClearField("external_data")
                    tensor.data_location = 0
                    tensor.raw_data = data
        except FileNotFoundError:
            raise bad(f"{parts[0][1]} names external data {location!r}, which does not exist in the model's "
                      f"folder {folder!r}") from None
        except OSError as exc:
            raise bad(f"cannot read external data {location!r} of {parts[0][1]}: {exc.strerror or exc}") from None
    return total


def _no_follow(path: str, flags: int) -> int:
    """Open without following a symbolic link in the last component (the path was resolved just before)."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def _external_entry(tensor: Any, what: str, max_bytes: int) -> tuple[str, int, int | None, int]:
    """``(location, offset, length or None, the bytes the tensor declares)`` of an external tensor, checked
    without touching the file system."""
    entries: dict[str, str] = {}
    for entry in tensor.external_data:
        if not isinstance(entry.key, str) or not isinstance(entry.value, str):  # protobuf hands back bad UTF-8 as bytes
            raise bad(f"{what} has an external_data entry that is not UTF-8 text")
        if entry.key not in EXTERNAL_KEYS:
            raise bad(f"{what} has external_data key {entry.key!r}; barenet reads {', '.join(EXTERNAL_KEYS)}")
        if entry.key in entries:
            raise bad(f"{what} gives external_data key {entry.key!r} twice")
        entries[entry.key] = entry.value
    location = entries.get("location", "")
    if tensor.raw_data or any(len(getattr(tensor, name)) for _, name in TENSOR_TYPES.values()):
        raise bad(f"{what} stores data both inside the ONNX file and in external data {location!r}")
    if not location or "\0" in location:
        raise bad(f"{what} is stored externally but names no location (or one with a NUL character)")
    parts = re.split(r"[/\\]", location)
    if os.path.isabs(location) or location.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", location):
        raise bad(f"{what} names external data {location!r}, an absolute path; barenet reads external data only "
                  "from files in the model's folder, named by a relative path")
    if parts[-1] in ("", "."):
        raise bad(f"{what} names external data {location!r}, a folder rather than a file")
    if ".." in parts:
        raise bad(f"{what} names external data {location!r}, which climbs out of the model's folder ('..'); barenet "
                  "reads external data only from files in the model's folder")
    numbers = {}
    for key in ("offset", "length"):
        if key in entries:
            if not re.fullmatch(r"[0-9]{1,20}", entries[key]):
                raise bad(f"{what} has external_data {key} {entries[key]!r}; expected a number of bytes")
            numbers[key] = int(entries[key])
    if tensor.data_type not in TENSOR_TYPES:
        raise bad(f"{what} has ONNX data type {tensor.data_type}; barenet reads "
                  f"{sorted(str(dt) for dt, _ in TENSOR_TYPES.values())}")
    expected = TENSOR_TYPES[tensor.data_type][0].itemsize
    for d in tensor.dims:
        if d < 0:
            raise bad(f"{what} has a negative dimension in {list(tensor.dims)}")
        expected *= d
        if expected > max_bytes:
            raise bad(f"{what} declares dims {list(tensor.dims)}, more than the {max_bytes}-byte limit")
    return location, numbers.get("offset", 0), numbers.get("length"), expected


def check_model(model: Any, file_bytes: int, supported_ops: frozenset[str]) -> list[Any]:
    """Check everything listed in the module docstring; return the nodes in an order where each node's
    inputs are produced before it (:class:`ModelFileError` on any problem)."""
    _check_opsets(model)
    if len(model.functions):
        raise bad(f"the model defines {len(model.functions)} local function(s); barenet does not run "
                  "ONNX functions")
    graph = model.graph
    if len(graph.sparse_initializer):
        raise bad("the graph has sparse initializers; barenet reads dense tensors only")
    budget = element_budget(file_bytes)
    for tensor in graph.initializer:
        check_tensor(tensor, f"initializer {tensor.name!r}", budget)
    for node in graph.node:
        _check_node(node, supported_ops, budget)
    return topological_order(graph)


def element_budget(file_bytes: int) -> int:
    """Most elements any one array may have: proportional to the file's size (at least 2**20)."""
    return max(1 << 20, 4 * file_bytes)


def _check_opsets(model: Any) -> None:
    import onnx.defs

    newest = onnx.defs.onnx_opset_version()
    versions = {}
    for entry in model.opset_import:
        if entry.domain not in DEFAULT_DOMAINS:
            raise bad(f"the model imports operator domain {entry.domain!r}; barenet reads only ONNX's default "
                      "domain ('' / 'ai.onnx')")
        versions[entry.domain] = entry.version
    if not versions:
        raise bad("the model imports no operator set (opset_import is empty)")
    for version in versions.values():
        if not MIN_OPSET <= version <= newest:
            raise bad(f"the model uses ONNX opset {version}; barenet reads opsets {MIN_OPSET} to {newest}")


def opset_version(model: Any) -> int:
    """The default domain's opset version (checked by :func:`check_model`)."""
    return max(e.version for e in model.opset_import if e.domain in DEFAULT_DOMAINS)


def check_tensor(tensor: Any, what: str, budget: int) -> None:
    """Check one ``TensorProto``'s storage before it is turned into an array."""
    if tensor.data_location == 1 or len(tensor.external_data):
        raise bad(f"{what} names external data without data_location EXTERNAL, or where barenet reads none "
                  "(it reads initializers and tensor attributes of the main graph's nodes from external files)")
    if tensor.HasField("segment"):
        raise bad(f"{what} is a segment of a tensor; barenet reads whole tensors only")
    if tensor.data_type not in TENSOR_TYPES:
        raise bad(f"{what} has ONNX data type {tensor.data_type}; barenet reads "
                  f"{sorted(str(dt) for dt, _ in TENSOR_TYPES.values())}")
    count = 1
    for d in tensor.dims:
        if d < 0:
            raise bad(f"{what} has a negative dimension in {list(tensor.dims)}")
        count *= d
        if count > budget:
            raise bad(f"{what} declares dims {list(tensor.dims)}, more than the {budget} elements a file "
                      "of this size may hold")
    dtype, field = TENSOR_TYPES[tensor.data_type]
    if tensor.raw_data:
        stored, expected = len(tensor.raw_data), count * dtype.itemsize
        unit = "bytes"
    else:
        stored, expected = len(getattr(tensor, field)), count
        unit = "values"
    if stored != expected:
        raise bad(f"{what} declares dims {list(tensor.dims)} ({expected} {unit} of {dtype}) but stores {stored}")


def tensor_array(tensor: Any) -> np.ndarray:
    """A fresh NumPy array from a ``TensorProto`` that passed :func:`check_tensor`."""
    dtype, field = TENSOR_TYPES[tensor.data_type]
    shape = tuple(tensor.dims)
    if tensor.raw_data:
        return np.frombuffer(tensor.raw_data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    values = getattr(tensor, field)
    if tensor.data_type == 10:  # float16 values are stored as their bit patterns
        return np.array(values, dtype=np.uint16).view(np.float16).reshape(shape)
    return np.array(values, dtype=dtype.newbyteorder("=")).reshape(shape)


def _check_node(node: Any, supported_ops: frozenset[str], budget: int) -> None:
    if node.domain not in DEFAULT_DOMAINS:
        raise bad(f"{node_label(node)} is in operator domain {node.domain!r}; barenet reads only ONNX's "
                  "default domain")
    if node.op_type not in supported_ops:
        raise bad(f"ONNX operator {node.op_type!r} ({node_label(node)}) has no barenet counterpart; "
                  f"barenet imports {', '.join(sorted(supported_ops))}")
    for attr in node.attribute:
        if attr.HasField("g") or len(attr.graphs):
            raise bad(f"{node_label(node)} carries a subgraph in attribute {attr.name!r}; barenet runs no "
                      "subgraphs")
        if attr.HasField("sparse_tensor") or len(attr.sparse_tensors):
            raise bad(f"{node_label(node)} carries a sparse tensor in attribute {attr.name!r}")
        if attr.HasField("t") or attr.type == 4:  # a TENSOR attribute whose tensor is missing is empty, not valid
            check_tensor(attr.t, f"attribute {attr.name!r} of {node_label(node)}", budget)
        if len(attr.tensors):
            raise bad(f"{node_label(node)} carries a list of tensors in attribute {attr.name!r}")
        if len(attr.ints) > budget or len(attr.floats) > budget:
            raise bad(f"attribute {attr.name!r} of {node_label(node)} is longer than {budget} values")


def topological_order(graph: Any) -> list[Any]:
    """The graph's nodes in an order where every input exists before it is used (Kahn's algorithm).

    Values are defined once (by the graph input, an initializer or one node output); a node input that
    nothing defines, a value defined twice, or a cycle raises :class:`ModelFileError`.
    """
    defined: dict[str, int | None] = {}  # value -> producing node index (None: input or initializer)
    for name in [i.name for i in graph.input] + [t.name for t in graph.initializer]:
        defined[name] = None
    nodes = list(graph.node)
    for k, node in enumerate(nodes):
        for out in node.output:
            if not out:
                continue
            if out in defined:
                raise bad(f"value {out!r} is defined twice (again by {node_label(node)})")
            defined[out] = k
    waiting = [0] * len(nodes)
    users: list[list[int]] = [[] for _ in nodes]
    for k, node in enumerate(nodes):
        for name in node.input:
            if not name:
                continue  # an omitted optional input
            if name not in defined:
                raise bad(f"{node_label(node)} reads value {name!r}, which no input, initializer or node defines")
            producer = defined[name]
            if producer is not None:
                waiting[k] += 1
                users[producer].append(k)
    ready = deque(k for k in range(len(nodes)) if waiting[k] == 0)
    order = []
    while ready:
        k = ready.popleft()
        order.append(nodes[k])
        for user in users[k]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    if len(order) != len(nodes):
        stuck = [node_label(nodes[k]) for k in range(len(nodes)) if waiting[k] > 0][:3]
        raise bad(f"the graph has a cycle (or a node waits on itself): {', '.join(stuck)} never become ready")
    for out in graph.output:
        if out.name not in defined:
            raise bad(f"graph output {out.name!r} is never computed")
    return order
