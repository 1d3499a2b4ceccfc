"""Saving and loading models: one zip file of JSON and ``.npy`` arrays, read without pickle.

The file format (version 1) is a zip archive with

``barenet.json``
    ``{"format": "barenet-model", "version": 1, "barenet_version": ..., "model": <Sequential.get_config()>,
    "compile": null | {"loss": ..., "optimizer": ..., "metrics": [...]}, "rng": null | <generator state>,
    "metadata": {...}}``; ``compile`` also has ``"reduction"`` when it is not ``"batch"``;
``weights/layers.<i>.<name>.npy``
    every parameter and buffer of every layer (``kernel``, ``bias``, ``moving_mean`` ...);
``optimizer/<slot>/layers.<i>.<name>.npy`` and ``optimizer/iterations.npy``
    the optimizer's state, present only when the model was compiled.

Loading is a security boundary. The file is treated as untrusted data: no pickle, no code, no
import by name. Nothing the size of a weight is allocated before the whole file is checked, in this order:

1. the archive: every member's stored bytes lie inside the file, and all members together inflate
   to at most :data:`MAX_INFLATION` times the file's size (zip bombs are refused unread);
2. ``barenet.json``, read with a cap, and its structure, with at most :data:`MAX_LAYERS` layers (a
   Sequential's) or :data:`MAX_GRAPH_NODES` nodes (a graph's);
3. the architecture, *dry-built* (:meth:`barenet.layers.Layer.dry_build`): layers are constructed from
   registered classes only and their parameter shapes computed without allocating them, every
   sample bounded by :data:`MIN_SAMPLE_BYTES` or the file's array bytes, whichever is larger, and the
   weights counted so far compared with the file's array bytes after every layer;
4. the members: exactly the expected ones, and the bytes the architecture needs must not exceed
   what the members declare (a ``Dense(10**7)`` written into a small file's JSON stops here);
5. every ``.npy`` header, parsed by a strict parser of its one dict literal, against the expected
   dtype and shape and the member's declared size; then the metadata's schema (:mod:`barenet.metadata`).

Only then is the model built, with uninitialized weights (nothing is drawn that the file overwrites),
and each array read straight into its place, a bounded chunk at a time and never past its member's
declared size (the zip reader's CRC check runs on the last byte). A missing, extra, mis-shaped,
mis-typed or non-finite array is an error. Any problem raises :class:`~barenet.errors.ModelFileError`
naming it; memory stays proportional to the file's real content.

Weights must be finite: :func:`save` refuses a model holding NaN or infinite weights (a diverged
model is not worth keeping and would silently predict NaN), and :func:`load` rejects such a file.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from ._archive import NpyHeader, check_entry, read_into, read_member, read_npy_header
from ._output import write_file
from .errors import BarenetError, ConfigError, DataError, ModelFileError, NotFittedError
from .layers import Layer, layer_class
from .layers.base import skip_initialization
from .metadata import MetadataError, check_metadata
from .models import Sequential
from .models.graph import call_order, repeated_weight_name

#: The ``"format"`` field of every barenet model file's ``barenet.json``.
FORMAT_NAME = "barenet-model"
#: The newest file format version this module writes and reads.
FORMAT_VERSION = 1

_CONFIG_MEMBER = "barenet.json"
_WEIGHTS_DIR = "weights/"
_OPTIMIZER_DIR = "optimizer/"
_ITERATIONS_MEMBER = "optimizer/iterations.npy"
_TOP_KEYS = {"format", "version", "barenet_version", "model", "compile", "rng", "metadata"}
_MODEL_KEYS = {"name", "dtype", "seed", "input_shape", "layers"}
_GRAPH_KEYS = {"name", "dtype", "seed", "layers", "inputs", "nodes", "outputs", "single_input", "single_output"}
_COMPILE_KEYS = {"loss", "optimizer", "metrics"}
#: A Sequential model file may describe at most this many layers: a description of millions of parameterless
#: layers fits in a small file, and each costs time to construct.
MAX_LAYERS = 10_000
#: A graph model file may describe at most this many nodes (inputs and layer calls, nested models' counted), and
#: its calls and outputs may read at most four times as many tensors: a description of millions of parameterless
#: layers fits in a small file, and each costs time to construct.
MAX_GRAPH_NODES = 10_000
_MAX_JSON_BYTES = 64 * 2**20
#: Suffixes of other formats' model files: a barenet file is never written under them.
_FOREIGN_SUFFIXES = {".keras": "Keras model files", ".h5": "HDF5 files (Keras's legacy format)",
                     ".hdf5": "HDF5 files (Keras's legacy format)", ".onnx": "ONNX graphs"}
#: How barenet's model files are named by convention.
SUFFIX = ".barenet"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: A file's members may inflate to at most this many times the file's size (plus INFLATION_SLACK bytes).
MAX_INFLATION = 32
INFLATION_SLACK = 2**20
#: A loaded model's sample (batch axis excluded) at any layer may take max(MIN_SAMPLE_BYTES, the file's array
#: bytes): building some layers allocates a buffer of one sample's size.
MIN_SAMPLE_BYTES = 2**24
# What constructing, dry-building or compiling a hostile description can raise.
_CONFIG_ERRORS = (BarenetError, TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError,
                  ZeroDivisionError, RecursionError)
# Everything the zip and zlib readers raise on a damaged archive.
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, IndexError,
                   NotImplementedError, RuntimeError, struct.error, OverflowError, UnicodeDecodeError)


# --------------------------------------------------------------------- saving
def save(model: Sequential, path: str | os.PathLike) -> None:
    """Write a built model (architecture, weights, compile settings, optimizer state, metadata) to ``path``.

    Parameters
    ----------
    model : Sequential
        A built model; it need not be compiled.
    path : str or PathLike
        The file to write (by convention ending in ``.barenet``). Its folder must exist. A name ending in
        another format's suffix (``.keras``, ``.h5``, ``.hdf5``, ``.onnx``) is refused: the file would not
        be what its name says.

    Notes
    -----
    The save is atomic: the archive is written to a hidden file in the same folder, fsynced, then
    renamed over ``path`` with :func:`os.replace`. If anything fails on the way, the hidden file is
    removed and a previous file at ``path`` is left as it was. The file gets the permissions a plain
    ``open`` would give it (see :mod:`barenet._output`).

    Raises
    ------
    NotFittedError
        The model is not built (no weights yet).
    DataError
        A weight is NaN or infinite.
    ConfigError
        The metadata, loss or optimizer cannot be written as JSON.
    OutputError
        ``path`` is a folder, its folder does not exist or cannot be written, or writing failed (a full disk).
    ModelFileError
        ``path`` is named as another format's file (``.keras``, ``.h5``, ``.onnx``).
    """
    check_save_path(path)
    if not getattr(model, "built", False):
        raise NotFittedError("cannot save a model that is not built; call fit (or build) first so it has weights")
    document, arrays = _describe(model)
    text = _to_json(document)

    def write(target: Path) -> None:
        with open(target, "wb") as stream, zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(_CONFIG_MEMBER, text)
            for member, array in arrays.items():
                with archive.open(member, "w", force_zip64=array.nbytes > 2**30) as out:
                    np.lib.format.write_array(out, array, allow_pickle=False)

    write_file(path, write, "model file")


def check_save_path(path: str | os.PathLike) -> None:
    """Raise a :class:`ModelFileError` when ``path`` ends in another format's suffix (``.keras``, ``.h5``,
    ``.hdf5``, ``.onnx``), saying what barenet writes and the name to use instead."""
    path = Path(os.fspath(path))
    what = _FOREIGN_SUFFIXES.get(path.suffix.lower())
    if what is None:
        return
    hint = " (bn.export_onnx writes ONNX)" if path.suffix.lower() == ".onnx" else ""
    raise ModelFileError(f"cannot save to {str(path)!r}: {path.suffix!r} is the suffix of {what}, a format barenet "
                         f"does not write. It writes its own (a zip archive of JSON and .npy arrays, read back by "
                         f"bn.load_model), named {SUFFIX!r} by convention: save to "
                         f"{str(path.with_suffix(SUFFIX))!r}{hint}")


def _describe(model: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document and the arrays (by archive member name) that describe ``model``."""
    arrays: dict[str, np.ndarray] = {}
    for key, value in _model_arrays(model).items():
        _require_finite(value, f"weight {key!r}", DataError, "the model has diverged; it is not saved")
        arrays[f"{_WEIGHTS_DIR}{key}.npy"] = value
    compile_section = None
    output_losses = getattr(model, "output_losses", None)
    if output_losses is not None and len(output_losses) > 1 and model.optimizer is not None:
        compile_section = {
            "loss": [losses_mod.serialize(loss) for loss in output_losses],
            "optimizer": optimizers_mod.serialize(model.optimizer),
            "metrics": [list(ms) for ms in model.output_metrics],
            "loss_weights": list(model.loss_weights),
        }
    elif model.loss is not None and model.optimizer is not None:
        compile_section = {
            "loss": losses_mod.serialize(model.loss),
            "optimizer": optimizers_mod.serialize(model.optimizer),
            "metrics": list(model.metric_names),
        }
        if getattr(model, "reduction", "batch") != "batch":  # written only when set: older files stay the same
            compile_section["reduction"] = model.reduction
    if compile_section is not None:
        for flat, value in model.optimizer.get_state().items():
            member = _ITERATIONS_MEMBER if flat == "iterations" else f"{_OPTIMIZER_DIR}{flat}.npy"
            arrays[member] = np.asarray(value)
    metadata = getattr(model, "metadata", None) or {}
    if not isinstance(metadata, dict):
        raise ConfigError(f"model.metadata must be a dict of JSON values, got {type(metadata).__name__}")
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "barenet_version": _barenet_version(),
        "model": model.get_config(),
        "compile": compile_section,
        "rng": _rng_state(model.rng),
        "metadata": metadata,
    }
    return document, arrays


def _model_arrays(model: Any) -> dict[str, np.ndarray]:
    """Every parameter and buffer keyed ``layers.<i>.<name>`` (the live arrays, not copies)."""
    return {f"layers.{i}.{name}": value for i, layer in enumerate(model.layers)
            for name, value in [*layer.params.items(), *layer.buffers.items()]}


def _rng_state(rng: np.random.Generator) -> dict[str, Any] | None:
    """The generator's state when it is JSON data (PCG64, the default); ``None`` otherwise."""
    state = rng.bit_generator.state
    if state.get("bit_generator") != "PCG64":
        return None
    return state


def _to_json(document: dict[str, Any]) -> str:
    try:
        return json.dumps(document, allow_nan=False, indent=1)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the model description is not plain JSON data ({exc}); model.metadata, layer "
                          "configurations, the loss and the optimizer must hold only numbers, strings, "
                          "lists and dicts with finite floats") from None


def _barenet_version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------- loading
def load(path: str | os.PathLike) -> Sequential:
    """Read a model written by :func:`save`.

    Returns a built :class:`~barenet.Sequential` with the saved weights, dtype, metadata and, when
    the model was compiled, its loss, optimizer (with its state, so training resumes where it
    stopped) and metric names. The random generator is restored too, so shuffling and dropout
    continue the same sequence.

    Raises
    ------
    ModelFileError
        For every unusable file: missing, a folder, empty, not a zip archive, a pickle, truncated or
        corrupt, without ``barenet.json``, of an unknown format or newer version, with an unknown layer
        class, or with arrays that are missing, extra, of the wrong shape or dtype, or not finite; an
        architecture that needs more bytes than the file holds; members that inflate past their
        declared size or to more than :data:`MAX_INFLATION` times the file's size.
    MetadataError
        (a ModelFileError) The metadata's known keys do not have their structure
        (see :mod:`barenet.metadata`).
    """
    path = Path(os.fspath(path))
    _check_path(path)
    try:
        with open(path, "rb") as stream, zipfile.ZipFile(stream) as archive:
            return _read_archive(archive, path, os.fstat(stream.fileno()).st_size)
    except ModelFileError:
        raise
    except MemoryError:
        raise ModelFileError(f"{path}: the architecture it describes does not fit in memory") from None
    except _ARCHIVE_ERRORS as exc:
        raise ModelFileError(f"{path} is not a readable barenet model file: corrupt or truncated archive "
                             f"({type(exc).__name__}: {exc})") from None


def load_model(path: str | os.PathLike) -> Sequential:
    """Keras's name for :func:`load`: read a model written by ``model.save`` or :func:`save`."""
    return load(path)


def _check_path(path: Path) -> None:
    if not path.exists():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise ModelFileError(f"{str(path)!r} is a directory; expected a barenet model file")
    if not path.is_file():
        raise ModelFileError(f"{str(path)!r} is not a regular file; expected a barenet model file")
    try:
        with open(path, "rb") as stream:
            head = stream.read(8)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {str(path)!r}: {exc.strerror}") from None
    if not head:
        raise ModelFileError(f"model file {str(path)!r} is empty (0 bytes)")
    if head[:1] == b"\x80":
        raise ModelFileError(f"{str(path)!r} looks like a Python pickle; barenet model files are zip archives "
                             "of JSON and arrays, and pickles are never loaded")
    if head.startswith(_HDF5_SIGNATURE):
        raise ModelFileError(f"{str(path)!r} is an HDF5 file (such as a Keras .h5 model), not a barenet model file; "
                             "barenet reads only the files bn.save and model.save write")
    if head.startswith(b"\x93NUMPY"):
        raise ModelFileError(f"{str(path)!r} is a bare .npy array, not a barenet model file (a zip archive)")
    if not head.startswith(b"PK"):
        raise ModelFileError(f"{str(path)!r} is not a barenet model file: it is not a zip archive "
                             f"(starts with {head[:4]!r})")


def _read_archive(archive: zipfile.ZipFile, path: Path, file_bytes: int) -> Sequential:
    names = archive.namelist()
    if len(names) != len(set(names)):
        raise ModelFileError(f"{path}: the archive holds duplicate member names")
    if _CONFIG_MEMBER not in names and {"config.json", "model.weights.h5"} <= set(names):
        raise ModelFileError(f"{path} is a Keras model file (.keras), not a barenet model file; barenet reads only "
                             "the files bn.save and model.save write")
    if _CONFIG_MEMBER not in names:
        raise ModelFileError(f"{path} is a zip archive without {_CONFIG_MEMBER!r}; not a barenet model file")
    _check_inflation(archive, path, file_bytes)
    document = _read_document(archive, path)
    held = _array_bytes(archive)
    plan = _plan_graph(document["model"], path, held) if "nodes" in document["model"] else _plan(
        document["model"], path, held)
    compile_section = document["compile"]
    settings = _compile_settings(compile_section, path) if compile_section is not None else None

    expected = {f"{_WEIGHTS_DIR}{key}.npy": shape for key, shape in plan.arrays.items()}
    required = set(expected)
    if settings is not None:
        expected.update(_optimizer_members(settings[1], plan.params))
        required.add(_ITERATIONS_MEMBER)
    members = set(names) - {_CONFIG_MEMBER}
    missing = sorted(required - members)
    extra = sorted(members - set(expected))
    if missing:
        raise ModelFileError(f"{path}: arrays missing for the saved architecture: {missing}")
    if extra:
        raise ModelFileError(f"{path}: unexpected members that the saved architecture has no place for: {extra}")
    dtypes = {member: np.dtype(np.int64) if member == _ITERATIONS_MEMBER else plan.dtype for member in members}
    _check_budget(sum(_nbytes(expected[m], dtypes[m]) for m in members), held, path)
    for member in sorted(members):
        _read_header(archive, member, expected[member], dtypes[member], path)
    try:
        check_metadata(document["metadata"], plan.input_shape, plan.output_shape)
    except MetadataError as exc:
        raise MetadataError(f"{path}: {exc}") from None

    # Every member now matches the architecture and the file holds their bytes: allocate and fill.
    model = _build(document["model"], plan, path)
    if settings is not None:
        try:
            extra = {key: compile_section[key] for key in ("loss_weights", "reduction") if key in compile_section}
            model.compile(loss=settings[0], optimizer=settings[1], metrics=settings[2], **extra)
        except (BarenetError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: the saved compile settings are invalid: {exc}") from None
    targets = {f"{_WEIGHTS_DIR}{key}.npy": value for key, value in _model_arrays(model).items()}
    state: dict[str, np.ndarray] = {}
    for member in sorted(members):
        if member.startswith(_WEIGHTS_DIR):
            _read_array(archive, member, targets[member], path)
        else:
            value = np.empty(expected[member], dtype=dtypes[member])
            _read_array(archive, member, value, path)
            state["iterations" if member == _ITERATIONS_MEMBER else member[len(_OPTIMIZER_DIR):-4]] = value
    if settings is not None:
        if int(state["iterations"]) < 0:
            raise ModelFileError(f"{path}: optimizer iterations is {int(state['iterations'])}; expected >= 0")
        model.optimizer.set_state(state)
    if document["rng"] is not None:
        _restore_rng(model, document["rng"], path)
    model.metadata = document["metadata"]
    return model


@dataclass(frozen=True)
class _Plan:
    """What a model description implies, learned without allocating any weight.

    ``layers`` are constructed but unbuilt; ``arrays`` maps ``layers.<i>.<name>`` to the shape of every
    parameter and buffer (``params`` only the parameters), all of dtype ``dtype``.
    """

    layers: list[Layer]
    dtype: np.dtype
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    arrays: dict[str, tuple[int, ...]]
    params: dict[str, tuple[int, ...]]


def _plan(config: dict[str, Any], path: Path, held: int) -> _Plan:
    """Construct the layers of ``config`` and dry-build them: shapes only, no weights allocated.

    ``held`` is what the file's array members declare, in bytes. The weights counted so far are
    checked against it after every layer, so a huge layer stops the plan before the next one is
    looked at, and every layer's input sample is bounded before its dry build (some layers allocate
    a sample-sized buffer there).
    """
    if config["input_shape"] is None:
        raise ModelFileError(f"{path}: the saved architecture has no input_shape, so it has no weights")
    shape = config["input_shape"]
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 8
            or not all(_is_int(n) and n >= 1 for n in shape)):
        raise ModelFileError(f"{path}: 'model.input_shape' must be a list of 1 to 8 positive integers, "
                             f"got {shape!r:.100}")
    if config["dtype"] not in ("float32", "float64"):
        raise ModelFileError(f"{path}: 'model.dtype' is {config['dtype']!r:.60}; expected 'float32' or 'float64'")
    dtype = np.dtype(config["dtype"])
    shape = tuple(shape)
    input_shape = shape
    layers: list[Layer] = []
    arrays: dict[str, tuple[int, ...]] = {}
    params: dict[str, tuple[int, ...]] = {}
    needed = 0
    sample_limit = max(MIN_SAMPLE_BYTES, held)
    for i, spec in enumerate(config["layers"]):
        _check_sample(shape, dtype, sample_limit, f"layer {i}'s input", path)
        if spec["class"] == "Model":
            raise ModelFileError(f"{path}: layer {i} of the Sequential model is a Model; a Sequential holds layers "
                                 "only (a model that calls another is a graph, bn.Model)")
        try:
            layer = layer_class(spec["class"]).from_config(spec["config"])
            layer_params, layer_buffers, shape = layer.dry_build(shape, dtype)
        except _CONFIG_ERRORS as exc:
            raise ModelFileError(f"{path}: the saved architecture cannot be rebuilt: layer {i} "
                                 f"({spec['class']!r:.60}): {exc}") from None
        layers.append(layer)
        params.update({f"layers.{i}.{name}": s for name, s in layer_params.items()})
        arrays.update({f"layers.{i}.{name}": s for name, s in [*layer_params.items(), *layer_buffers.items()]})
        needed += sum(_nbytes(s, dtype) for s in [*layer_params.values(), *layer_buffers.values()])
        _check_budget(needed, held, path)
    _check_sample(shape, dtype, sample_limit, "the model's output", path)
    return _Plan(layers, dtype, input_shape, shape, arrays, params)


def _plan_graph(config: dict[str, Any], path: Path, held: int) -> _Plan:
    """:func:`_plan` for a graph model (:class:`barenet.Model`): every reference, layer index and shape is
    checked, and every layer dry-built, before anything is allocated; nested models are planned the same way."""
    if config["dtype"] not in ("float32", "float64"):
        raise ModelFileError(f"{path}: 'model.dtype' is {config['dtype']!r:.60}; expected 'float32' or 'float64'")
    dtype = np.dtype(config["dtype"])
    budget = {"nodes": 0, "reads": 0, "bytes": 0}
    part = _GraphPlan(config, path, held, dtype, budget, "model")
    arrays, params = {}, {}
    for i, (layer_params, layer_buffers) in enumerate(part.shapes):
        params.update({f"layers.{i}.{name}": s for name, s in layer_params.items()})
        arrays.update({f"layers.{i}.{name}": s for name, s in [*layer_params.items(), *layer_buffers.items()]})
    single_in = part.input_shapes[0] if len(part.input_shapes) == 1 else part.input_shapes
    single_out = part.output_shapes[0] if len(part.output_shapes) == 1 else part.output_shapes
    return _Plan(part.layers, dtype, single_in, single_out, arrays, params)


class _GraphPlan:
    """The checked plan of one graph description: ``layers`` (unbuilt; a nested model as its own plan),
    ``shapes`` (per layer: parameter and buffer shapes by name) and the input and output sample shapes."""

    def __init__(self, config: Any, path: Path, held: int, dtype: np.dtype, budget: dict[str, Any],
                 where: str) -> None:
        if not isinstance(config, dict):
            raise ModelFileError(f"{path}: {where} must be a JSON object")
        _check_keys(config, _GRAPH_KEYS, f"'{where}'", path)
        if config["dtype"] != dtype.name:
            raise ModelFileError(f"{path}: {where} computes in {config['dtype']!r:.20}, its model in {dtype.name}")
        specs, inputs, nodes, outputs = (config[k] for k in ("layers", "inputs", "nodes", "outputs"))
        for key, value in (("layers", specs), ("inputs", inputs), ("nodes", nodes), ("outputs", outputs)):
            if not isinstance(value, list) or not value:
                raise ModelFileError(f"{path}: '{where}.{key}' must be a non-empty list")
        for key in ("single_input", "single_output"):
            if not isinstance(config[key], bool):
                raise ModelFileError(f"{path}: '{where}.{key}' must be true or false")
        budget["nodes"] += len(inputs) + len(nodes)
        if budget["nodes"] > MAX_GRAPH_NODES:
            raise ModelFileError(f"{path}: the graph describes more than {MAX_GRAPH_NODES} nodes (inputs and layer "
                                 f"calls, nested models' counted); barenet loads graphs of at most that many")
        if len(specs) > len(nodes):
            raise ModelFileError(f"{path}: {where} has {len(specs)} layers but {len(nodes)} calls; every layer is "
                                 f"called at least once")
        budget["reads"] += len(outputs)  # checked with the first call's reads below
        sample_limit = max(MIN_SAMPLE_BYTES, held)
        produced: list[Any] = []  # the sample shape of each input, then of each node, in order
        input_shapes = []
        names: set[str] = set()
        for j, spec in enumerate(inputs):
            if not isinstance(spec, dict) or set(spec) != {"name", "shape", "integer"} or not isinstance(
                    spec["name"], str) or not isinstance(spec["integer"], bool):
                raise ModelFileError(f"{path}: '{where}.inputs[{j}]' must be {{'name': str, 'shape': [int], "
                                     f"'integer': bool}}, got {spec!r:.200}")
            shape = spec["shape"]
            if not isinstance(shape, list) or not 1 <= len(shape) <= 8 or not all(_is_int(n) and n >= 1
                                                                                  for n in shape):
                raise ModelFileError(f"{path}: '{where}.inputs[{j}].shape' must be a list of 1 to 8 positive "
                                     f"integers, got {shape!r:.100}")
            if spec["name"] in names:
                raise ModelFileError(f"{path}: {where} has two inputs named {spec['name']!r:.60}")
            names.add(spec["name"])
            _check_sample(tuple(shape), dtype, sample_limit, f"input {j}", path)
            input_shapes.append(tuple(shape))
        self.layers: list[Any] = []
        layer_names: set[str] = set()
        for i, spec in enumerate(specs):
            if (not isinstance(spec, dict) or set(spec) != {"class", "config"} or not isinstance(spec["class"], str)
                    or not isinstance(spec["config"], dict)):
                raise ModelFileError(f"{path}: '{where}.layers[{i}]' must be {{'class': str, 'config': object}}")
            name = spec["config"].get("name")
            if not isinstance(name, str) or name in layer_names:
                raise ModelFileError(f"{path}: '{where}.layers[{i}]' needs a name of its own, got {name!r:.60}")
            layer_names.add(name)
            if spec["class"] == "Model":
                self.layers.append(_GraphPlan(spec["config"], path, held, dtype, budget, f"{where}.layers[{i}]"))
                continue
            try:
                self.layers.append(layer_class(spec["class"]).from_config(spec["config"]))
            except _CONFIG_ERRORS as exc:
                raise ModelFileError(f"{path}: the saved architecture cannot be rebuilt: {where} layer {i} "
                                     f"({spec['class']!r:.60}): {exc}") from None
        self.names = [spec["config"]["name"] for spec in specs]
        self.shapes: list[Any] = [None] * len(specs)
        called_on: list[Any] = [None] * len(specs)
        for k, node in enumerate(nodes):
            if not isinstance(node, dict) or not {"layer", "inputs", "single"} <= set(node) <= {
                    "layer", "inputs", "single", "options"} or not isinstance(node["single"], bool) or not isinstance(
                    node["inputs"], list) or not node["inputs"] or not isinstance(node.get("options", {}), dict):
                raise ModelFileError(f"{path}: '{where}.nodes[{k}]' must be {{'layer': int, 'inputs': [refs], "
                                     f"'single': bool[, 'options': object]}}, got {node!r:.200}")
            i = node["layer"]
            if not _is_int(i) or not 0 <= i < len(specs):
                raise ModelFileError(f"{path}: '{where}.nodes[{k}]' calls layer {i!r:.30}; there are {len(specs)}")
            budget["reads"] += len(node["inputs"])
            if budget["reads"] > 4 * MAX_GRAPH_NODES:
                raise ModelFileError(f"{path}: the graph's calls and outputs read more than {4 * MAX_GRAPH_NODES} "
                                     f"tensors (nested models' counted)")
            shapes = [self._resolve(ref, k, produced, input_shapes, path, where) for ref in node["inputs"]]
            if node["single"] and len(shapes) != 1:
                raise ModelFileError(f"{path}: '{where}.nodes[{k}]' is a one-input call with {len(shapes)} inputs")
            shape = shapes[0] if node["single"] else shapes
            layer = self.layers[i]
            if not self._takes_own_input(layer, node.get("options", {}), shape, produced, sample_limit, dtype,
                                         (path, where, k, i, specs[i]["class"])):
                continue
            if called_on[i] is not None:
                if called_on[i][0] != shape:
                    raise ModelFileError(f"{path}: {where} layer {i} is called on {called_on[i][0]} and on {shape}; "
                                         f"a shared layer takes inputs of one shape")
                produced.append(called_on[i][1])
                continue
            try:
                if isinstance(layer, _GraphPlan):
                    given = layer.input_shapes[0] if len(layer.input_shapes) == 1 else layer.input_shapes
                    if shape != given or len(layer.output_shapes) != 1:
                        raise ModelFileError(f"{path}: nested model {where} layer {i} takes {given} with one "
                                             f"output; called on {shape}")
                    layer_params = {f"{n}.{p}": s for n, (ps, _) in zip(layer.names, layer.shapes, strict=True)
                                    for p, s in ps.items()}
                    layer_buffers = {f"{n}.{p}": s for n, (_, bs) in zip(layer.names, layer.shapes, strict=True)
                                     for p, s in bs.items()}
                    out = layer.output_shapes[0]
                else:
                    layer_params, layer_buffers, out = layer.dry_build(shape, dtype)
            except ModelFileError:
                raise
            except _CONFIG_ERRORS as exc:
                raise ModelFileError(f"{path}: the saved architecture cannot be rebuilt: {where} node {k} (layer "
                                     f"{i}, {specs[i]['class']!r:.60}): {exc}") from None
            _check_sample(tuple(out), dtype, sample_limit, f"{where} node {k}'s output", path)
            self.shapes[i] = (layer_params, layer_buffers)
            if not isinstance(layer, _GraphPlan):  # a nested model's plan counted its layers' arrays
                budget["bytes"] += sum(_nbytes(s, dtype) for s in [*layer_params.values(), *layer_buffers.values()])
                _check_budget(budget["bytes"], held, path)
            called_on[i] = (shape, tuple(out))
            produced.append(tuple(out))
        unused = [i for i, c in enumerate(called_on) if c is None]
        if unused:
            raise ModelFileError(f"{path}: {where} layers {unused[:5]} are never called on their own input (an "
                                 f"Embedding on ids), which builds them")
        twice = repeated_weight_name((name, [*ps, *bs]) for name, (ps, bs) in zip(self.names, self.shapes, strict=True))
        if twice is not None:
            raise ModelFileError(f"{path}: two weights of {where} would be named {twice!r}: a layer's name is "
                                 f"another's followed by a dot")
        self.input_shapes = input_shapes
        self.output_shapes = [self._resolve(ref, len(nodes), produced, input_shapes, path, where) for ref in outputs]
        self._check_order(nodes, outputs, len(inputs), path, where)
        self.config = config

    @staticmethod
    def _takes_own_input(layer: Any, options: dict[str, Any], shape: Any, produced: list[Any], sample_limit: int,
                         dtype: np.dtype, at: tuple[Path, str, int, int, str]) -> bool:
        """Whether node ``k`` calls ``layer`` on its own input (:meth:`~barenet.layers.Layer.takes_own_input`).
        A call that takes another input (``Embedding``'s ``reverse=True``) has its shape checked by the layer's
        ``compute_output_shape`` here, and its output shape appended to ``produced``."""
        path, where, k, i, cls = at
        try:
            if isinstance(layer, _GraphPlan):
                if options:
                    raise ConfigError(f"a nested model takes no call options, got {options!r:.100}")
                return True
            if layer.takes_own_input(options):
                return True
            out = layer.compute_output_shape(shape, **options)
        except _CONFIG_ERRORS as exc:
            raise ModelFileError(f"{path}: the saved architecture cannot be rebuilt: {where} node {k} (layer {i}, "
                                 f"{cls!r:.60}): {exc}") from None
        _check_sample(tuple(out), dtype, sample_limit, f"{where} node {k}'s output", path)
        produced.append(tuple(out))
        return False

    @staticmethod
    def _check_order(nodes: list[Any], outputs: list[Any], n_inputs: int, path: Path, where: str) -> None:
        """Refuse calls no output needs, inputs nothing reads, and layers numbered otherwise than in the order the
        model will call them (:func:`barenet.models.graph.call_order`): the model would drop the first two, and
        its weights are keyed by that order."""
        order = call_order([tuple(ref) for ref in outputs], lambda ref: [tuple(r) for r in nodes[ref[1]]["inputs"]],
                           lambda ref: ref[0] == "input", lambda ref: ref)
        needed = {k for _, k in order}
        dead = [k for k in range(len(nodes)) if k not in needed]
        if dead:
            raise ModelFileError(f"{path}: {where} nodes {dead[:5]} are needed by no output; a saved graph holds "
                                 f"only the calls its outputs depend on")
        read = {ref[1] for k in needed for ref in nodes[k]["inputs"] if ref[0] == "input"}
        read.update(ref[1] for ref in outputs if ref[0] == "input")
        unread = [j for j in range(n_inputs) if j not in read]
        if unread:
            raise ModelFileError(f"{path}: {where} inputs {unread[:5]} are read by no layer and are no output")
        numbering = list(dict.fromkeys(nodes[k]["layer"] for _, k in order))
        if numbering != sorted(numbering):
            raise ModelFileError(f"{path}: {where} calls its layers in the order {numbering[:8]}; a saved graph "
                                 f"numbers its layers in the order the model calls them")

    @staticmethod
    def _resolve(ref: Any, k: int, produced: list[Any], input_shapes: list[Any], path: Path, where: str) -> Any:
        if not (isinstance(ref, list) and len(ref) == 2 and ref[0] in ("input", "node") and _is_int(ref[1])):
            raise ModelFileError(f"{path}: {where} node {k} reads {ref!r:.60}; expected ['input', i] or ['node', j]")
        pool = input_shapes if ref[0] == "input" else produced
        if not 0 <= ref[1] < len(pool):
            raise ModelFileError(f"{path}: {where} node {k} reads {ref[0]} {ref[1]}, which does not come before it "
                                 f"(a missing tensor, or a cycle)")
        return pool[ref[1]]


def _build_graph(config: dict[str, Any], layers: list[Any]) -> Any:
    """The graph model of a checked plan, its layers built with uninitialized weights."""
    from .models.graph import graph_from_config

    built = [_build_graph(part.config, part.layers) if isinstance(part, _GraphPlan) else part for part in layers]
    plain = [layer for layer in built if isinstance(layer, Layer)]
    with skip_initialization(plain):
        return graph_from_config(config, built)


def _check_sample(shape: tuple[int, ...], dtype: np.dtype, limit: int, what: str, path: Path) -> None:
    if not all(_is_int(n) and n >= 1 for n in shape):
        raise ModelFileError(f"{path}: {what} has sample shape {shape}; expected positive sizes")
    if math.prod(shape) * dtype.itemsize > limit:
        raise ModelFileError(f"{path}: {what} has sample shape {shape}, {math.prod(shape) * dtype.itemsize} bytes "
                             f"per sample; a file whose arrays hold {limit} bytes or less may describe samples of "
                             f"at most max({MIN_SAMPLE_BYTES}, its array bytes)")


def _build(config: dict[str, Any], plan: _Plan, path: Path) -> Sequential:
    """The model of ``plan``, built with uninitialized weights (the file's arrays overwrite them)."""
    try:
        if "nodes" in config:
            model = _build_graph(config, plan.layers)
        else:
            with skip_initialization(plan.layers):
                model = Sequential(plan.layers, seed=config["seed"], dtype=plan.dtype, name=config["name"])
                if not model.built:
                    model.build(plan.input_shape)
    except _CONFIG_ERRORS as exc:
        raise ModelFileError(f"{path}: the saved architecture cannot be rebuilt: {exc}") from None
    built = {key: value.shape for key, value in _model_arrays(model).items()}
    if built != plan.arrays:
        raise ModelFileError(f"{path}: the layers built other arrays than their dry build announced: "
                             f"{built} instead of {plan.arrays}")
    return model


def _check_inflation(archive: zipfile.ZipFile, path: Path, file_bytes: int) -> None:
    """Refuse an archive whose members claim more bytes than the file can hold (zip bombs), before reading any."""
    stored = sum(info.compress_size for info in archive.infolist())
    inflated = sum(info.file_size for info in archive.infolist())
    if stored > file_bytes:
        raise ModelFileError(f"{path}: its members claim {stored} stored bytes, but the file has {file_bytes}: "
                             "truncated, corrupt or overlapping members")
    limit = MAX_INFLATION * file_bytes + INFLATION_SLACK
    if inflated > limit:
        raise ModelFileError(f"{path}: its members claim {inflated} bytes once inflated, more than "
                             f"{MAX_INFLATION} times the file's {file_bytes} bytes; refusing a possible zip bomb")


def _array_bytes(archive: zipfile.ZipFile) -> int:
    """What the archive's array members declare they hold once inflated (bounded by :func:`_check_inflation`)."""
    return sum(info.file_size for info in archive.infolist() if info.filename != _CONFIG_MEMBER)


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _check_budget(needed: int, held: int, path: Path) -> None:
    """Refuse an architecture whose arrays need ``needed`` bytes, more than the file's members declare, before
    any read."""
    if needed > held:
        raise ModelFileError(f"{path}: the saved architecture needs at least {needed} bytes of arrays, but the "
                             f"file's array members hold only {held} bytes; the description does not match the "
                             "arrays")


def _read_document(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        raw = read_member(archive, archive.getinfo(_CONFIG_MEMBER), _MAX_JSON_BYTES)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"{path}: {_CONFIG_MEMBER} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ModelFileError(f"{path}: {_CONFIG_MEMBER} holds a JSON {type(document).__name__}; expected an object")
    _check_keys(document, _TOP_KEYS, _CONFIG_MEMBER, path)
    if document["format"] != FORMAT_NAME:
        raise ModelFileError(f"{path}: format is {document['format']!r}; expected {FORMAT_NAME!r}")
    version = document["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path}: format version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{path} was written in format version {version}, newer than this barenet reads "
                             f"(up to {FORMAT_VERSION}); upgrade barenet to load it")
    model = document["model"]
    if not isinstance(model, dict):
        raise ModelFileError(f"{path}: 'model' must be a JSON object, got {type(model).__name__}")
    _check_keys(model, _GRAPH_KEYS if "nodes" in model else _MODEL_KEYS, "'model'", path)
    layers = model["layers"]
    if not isinstance(layers, list) or not layers:
        raise ModelFileError(f"{path}: 'model.layers' must be a non-empty list of layer descriptions")
    if "nodes" not in model and len(layers) > MAX_LAYERS:
        raise ModelFileError(f"{path}: the model has {len(layers)} layers; barenet loads Sequential models of at "
                             f"most {MAX_LAYERS} layers")
    if "nodes" in model and len(layers) > MAX_GRAPH_NODES:
        raise ModelFileError(f"{path}: the graph has {len(layers)} layers, more than the {MAX_GRAPH_NODES} nodes "
                             f"barenet loads could call")
    for i, spec in enumerate(layers):
        if (not isinstance(spec, dict) or set(spec) != {"class", "config"} or not isinstance(spec["class"], str)
                or not isinstance(spec["config"], dict)):
            raise ModelFileError(f"{path}: 'model.layers[{i}]' must be {{'class': str, 'config': object}}, "
                                 f"got {spec!r:.200}")
    if document["compile"] is not None:
        section = document["compile"]
        if not isinstance(section, dict):
            raise ModelFileError(f"{path}: 'compile' must be null or a JSON object")
        _check_keys(section, _COMPILE_KEYS | ({"loss_weights", "reduction"} & set(section)), "'compile'", path)
    if not isinstance(document["metadata"], dict):
        raise ModelFileError(f"{path}: 'metadata' must be a JSON object, got {type(document['metadata']).__name__}")
    if document["rng"] is not None and not isinstance(document["rng"], dict):
        raise ModelFileError(f"{path}: 'rng' must be null or a JSON object")
    return document


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in a barenet model file")


def _check_keys(obj: dict[str, Any], keys: set[str], where: str, path: Path) -> None:
    missing, unknown = sorted(keys - set(obj)), sorted(set(obj) - keys)
    if missing:
        raise ModelFileError(f"{path}: {where} lacks the keys {missing}")
    if unknown:
        raise ModelFileError(f"{path}: {where} has unknown keys {unknown}; expected only {sorted(keys)}")


def _compile_settings(section: dict[str, Any], path: Path) -> tuple[Any, Any, list[str]]:
    """The saved ``(loss, optimizer, metrics)``, checked and rebuilt (small objects, no weights); a model with
    several outputs has a list of losses, a list of metric lists and ``loss_weights``."""
    metrics = section["metrics"]
    several = isinstance(section["loss"], list)
    names = [m for ms in metrics for m in ms] if several and isinstance(metrics, list) and all(
        isinstance(ms, list) for ms in metrics) else metrics
    if not isinstance(names, list) or not all(isinstance(m, str) for m in names):
        raise ModelFileError(f"{path}: 'compile.metrics' must be a list of metric names, got {metrics!r:.200}")
    losses = section["loss"] if several else [section["loss"]]
    if not losses or len(losses) > MAX_GRAPH_NODES or not all(isinstance(loss, dict) for loss in losses):
        raise ModelFileError(f"{path}: 'compile.loss' must be a JSON object or a list of them, got "
                             f"{section['loss']!r:.200}")
    if not isinstance(section["optimizer"], dict):
        raise ModelFileError(f"{path}: 'compile.optimizer' must be a JSON object, got {section['optimizer']!r:.200}")
    weights = section.get("loss_weights")
    if weights is not None and (not several or not isinstance(weights, list) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights)):
        raise ModelFileError(f"{path}: 'compile.loss_weights' must be a list of numbers, got {weights!r:.200}")
    try:
        for name in names:
            metrics_mod.get(name)
        loss = [losses_mod.deserialize(item) for item in losses] if several else losses_mod.deserialize(losses[0])
        return loss, optimizers_mod.deserialize(section["optimizer"]), metrics
    except _CONFIG_ERRORS as exc:
        raise ModelFileError(f"{path}: the saved compile settings are invalid: {exc}") from None


def _optimizer_members(optimizer: Any, params: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The shape of every optimizer state member the archive may hold.

    Slots are created on an optimizer's first update, so only ``iterations`` is required; a slot
    member is read when present.
    """
    shapes: dict[str, tuple[int, ...]] = {_ITERATIONS_MEMBER: ()}
    for slot in (*optimizer.slot_names, *optimizer.legacy_slots()):
        for key, shape in params.items():
            shapes[f"{_OPTIMIZER_DIR}{slot}/{key}.npy"] = shape
    return shapes


def _open_npy(archive: zipfile.ZipFile, member: str, shape: tuple[int, ...], dtype: np.dtype,
              path: Path) -> tuple[IO[bytes], NpyHeader]:
    """Open ``member`` and read its ``.npy`` header, checked against ``shape``/``dtype`` and the entry's size."""
    info = archive.getinfo(member)
    try:
        check_entry(info)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    stream = archive.open(info)
    try:
        header = read_npy_header(stream, info.file_size, member)
        if header.dtype.hasobject:
            raise ModelFileError(f"{member} holds Python objects (dtype {header.dtype}), which would need "
                                 "unpickling; refusing to load it")
        if header.dtype != dtype:
            raise ModelFileError(f"{member} has dtype {header.dtype.str}; the saved architecture needs {dtype.str}")
        if header.shape != shape:
            raise ModelFileError(f"{member} has shape {header.shape}; the saved architecture needs {shape}")
        data_bytes = info.file_size - header.data_offset
        if data_bytes != header.nbytes:
            raise ModelFileError(f"{member} holds {data_bytes} data bytes; an array of shape {shape} and dtype "
                                 f"{dtype} has {header.nbytes}")
    except ModelFileError as exc:
        stream.close()
        raise ModelFileError(f"{path}: {exc}") from None
    except BaseException:
        stream.close()
        raise
    return stream, header


def _read_header(archive: zipfile.ZipFile, member: str, shape: tuple[int, ...], dtype: np.dtype,
                 path: Path) -> None:
    """Check ``member``'s header without reading its data."""
    stream, _ = _open_npy(archive, member, shape, dtype, path)
    stream.close()


def _read_array(archive: zipfile.ZipFile, member: str, target: np.ndarray, path: Path) -> None:
    """Fill ``target`` in place from the ``.npy`` member, reading exactly the bytes its entry declares.

    Reading the last declared byte makes the zip reader check the member's CRC, so a member whose
    content was altered fails here; one that holds more than it declares is never read past that.
    """
    stream, header = _open_npy(archive, member, target.shape, target.dtype, path)
    with stream:
        try:
            if header.fortran_order and target.ndim > 1:
                inverse = np.empty(target.shape[::-1], dtype=target.dtype)
                read_into(stream, memoryview(inverse.reshape(-1).view(np.uint8)), member)
                target[...] = inverse.T
            elif target.flags.c_contiguous:
                read_into(stream, memoryview(target.reshape(-1).view(np.uint8)), member)
            else:
                flat = np.empty(target.shape, dtype=target.dtype)
                read_into(stream, memoryview(flat.reshape(-1).view(np.uint8)), member)
                target[...] = flat
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
    _require_finite(target, member, ModelFileError, f"{path} is damaged or holds a diverged model")


def _require_finite(value: np.ndarray, what: str, error: type[BarenetError], why: str) -> None:
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        bad = int(np.count_nonzero(~np.isfinite(value)))
        raise error(f"{what} holds {bad} NaN or infinite values; {why}")


def _restore_rng(model: Any, state: dict[str, Any], path: Path) -> None:
    """Put the saved generator state into the model's generator (shared with its layers)."""
    if state.get("bit_generator") != type(model.rng.bit_generator).__name__:
        raise ModelFileError(f"{path}: 'rng' is for bit generator {state.get('bit_generator')!r}; the model "
                             f"uses {type(model.rng.bit_generator).__name__}")
    inner = state.get("state")
    if (set(state) != {"bit_generator", "state", "has_uint32", "uinteger"} or not isinstance(inner, dict)
            or set(inner) != {"state", "inc"}
            or not all(_is_int(v) and 0 <= v < 2**128 for v in inner.values())
            or not all(_is_int(state[k]) and 0 <= state[k] < 2**32 for k in ("has_uint32", "uinteger"))):
        raise ModelFileError(f"{path}: 'rng' is not a valid PCG64 state: {json.dumps(state)[:200]}")
    try:
        model.rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ModelFileError(f"{path}: 'rng' cannot be restored: {exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SUFFIX", "check_save_path", "load", "load_model", "save"]
