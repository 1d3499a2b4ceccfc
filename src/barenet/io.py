"""Saving and loading models: one zip file of JSON and ``.npy`` arrays, read without pickle.

The file format (version 1) is a zip archive with

``barenet.json``
    ``{"format": "barenet-model", "version": 1, "barenet_version": ..., "model": <Sequential.get_config()>,
    "compile": null | {"loss": ..., "optimizer": ..., "metrics": [...]}, "rng": null | <generator state>,
    "metadata": {...}}``;
``weights/layers.<i>.<name>.npy``
    every parameter and buffer of every layer (``kernel``, ``bias``, ``moving_mean`` ...);
``optimizer/<slot>/layers.<i>.<name>.npy`` and ``optimizer/iterations.npy``
    the optimizer's state, present only when the model was compiled.

Loading is a security boundary. The file is treated as untrusted data: no pickle, no code, no
import by name. The architecture is rebuilt only from registered layer classes, every array's
header is checked (dtype, shape, byte count) against the rebuilt model before its data is used,
and every member of the archive must be expected: a missing, extra, mis-shaped, mis-typed or
non-finite array is an error. Any problem raises :class:`~barenet.errors.ModelFileError` naming it.

Weights must be finite: :func:`save` refuses a model holding NaN or infinite weights (a diverged
model is not worth keeping and would silently predict NaN), and :func:`load` rejects such a file.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import losses as losses_mod
from . import optimizers as optimizers_mod
from .errors import BarenetError, ConfigError, DataError, ModelFileError, NotFittedError
from .models import Sequential

FORMAT_NAME = "barenet-model"
#: The newest file format version this module writes and reads.
FORMAT_VERSION = 1

_CONFIG_MEMBER = "barenet.json"
_WEIGHTS_DIR = "weights/"
_OPTIMIZER_DIR = "optimizer/"
_ITERATIONS_MEMBER = "optimizer/iterations.npy"
_TOP_KEYS = {"format", "version", "barenet_version", "model", "compile", "rng", "metadata"}
_MODEL_KEYS = {"name", "dtype", "seed", "input_shape", "layers"}
_COMPILE_KEYS = {"loss", "optimizer", "metrics"}
_MAX_JSON_BYTES = 64 * 2**20
_MAX_NPY_HEADER = 2**16
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
        The file to write (by convention ending in ``.barenet``). Its folder must exist.

    Notes
    -----
    The save is atomic: the archive is written to a temporary file in the same folder, flushed and
    fsynced, then renamed over ``path`` with :func:`os.replace`. If anything fails on the way, the
    temporary file is removed and a previous file at ``path`` is left as it was.

    Raises
    ------
    NotFittedError
        The model is not built (no weights yet).
    DataError
        A weight is NaN or infinite.
    ConfigError
        The metadata, loss or optimizer cannot be written as JSON.
    """
    if not getattr(model, "built", False):
        raise NotFittedError("cannot save a model that is not built; call fit (or build) first so it has weights")
    document, arrays = _describe(model)
    text = _to_json(document)
    path = Path(os.fspath(path))
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ModelFileError(f"cannot save to {str(path)!r}: it is a directory; give a file name")
    if not folder.is_dir():
        raise ModelFileError(f"cannot save to {str(path)!r}: the folder {str(folder)!r} does not exist")
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(_CONFIG_MEMBER, text)
                for member, array in arrays.items():
                    with archive.open(member, "w", force_zip64=array.nbytes > 2**30) as out:
                        np.lib.format.write_array(out, array, allow_pickle=False)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _describe(model: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON document and the arrays (by archive member name) that describe ``model``."""
    arrays: dict[str, np.ndarray] = {}
    for key, value in _model_arrays(model).items():
        _require_finite(value, f"weight {key!r}", DataError, "the model has diverged; it is not saved")
        arrays[f"{_WEIGHTS_DIR}{key}.npy"] = value
    compile_section = None
    if model.loss is not None and model.optimizer is not None:
        compile_section = {
            "loss": losses_mod.serialize(model.loss),
            "optimizer": optimizers_mod.serialize(model.optimizer),
            "metrics": list(model.metric_names),
        }
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


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable where the platform allows opening folders."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        class, or with arrays that are missing, extra, of the wrong shape or dtype, or not finite.
    """
    path = Path(os.fspath(path))
    _check_path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_archive(archive, path)
    except ModelFileError:
        raise
    except MemoryError:
        raise ModelFileError(f"{path}: the architecture it describes does not fit in memory") from None
    except _ARCHIVE_ERRORS as exc:
        raise ModelFileError(f"{path} is not a readable barenet model file: corrupt or truncated archive "
                             f"({type(exc).__name__}: {exc})") from None


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
    if head.startswith(b"\x93NUMPY"):
        raise ModelFileError(f"{str(path)!r} is a bare .npy array, not a barenet model file (a zip archive)")
    if not head.startswith(b"PK"):
        raise ModelFileError(f"{str(path)!r} is not a barenet model file: it is not a zip archive "
                             f"(starts with {head[:4]!r})")


def _read_archive(archive: zipfile.ZipFile, path: Path) -> Sequential:
    names = archive.namelist()
    if len(names) != len(set(names)):
        raise ModelFileError(f"{path}: the archive holds duplicate member names")
    if _CONFIG_MEMBER not in names:
        raise ModelFileError(f"{path} is a zip archive without {_CONFIG_MEMBER!r}; not a barenet model file")
    document = _read_document(archive, path)
    try:
        model = Sequential.from_config(document["model"])
    except (BarenetError, TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise ModelFileError(f"{path}: the saved architecture cannot be rebuilt: {exc}") from None
    if not model.built:
        raise ModelFileError(f"{path}: the saved architecture has no input_shape, so it has no weights")

    allowed = {f"{_WEIGHTS_DIR}{key}.npy": value for key, value in _model_arrays(model).items()}
    required = set(allowed)
    compile_section = document["compile"]
    if compile_section is not None:
        _compile(model, compile_section, path)
        allowed.update(_optimizer_members(model))
        required.add(_ITERATIONS_MEMBER)
    members = set(names) - {_CONFIG_MEMBER}
    missing = sorted(required - members)
    extra = sorted(members - set(allowed))
    if missing:
        raise ModelFileError(f"{path}: arrays missing for the saved architecture: {missing}")
    if extra:
        raise ModelFileError(f"{path}: unexpected members that the saved architecture has no place for: {extra}")

    state: dict[str, np.ndarray] = {}
    for member in sorted(members):
        target = allowed[member]
        value = _read_array(archive, member, target, path)
        if member.startswith(_WEIGHTS_DIR):
            target[...] = value
        else:
            state["iterations" if member == _ITERATIONS_MEMBER else member[len(_OPTIMIZER_DIR):-4]] = value
    if compile_section is not None:
        if int(state["iterations"]) < 0:
            raise ModelFileError(f"{path}: optimizer iterations is {int(state['iterations'])}; expected >= 0")
        model.optimizer.set_state(state)
    if document["rng"] is not None:
        _restore_rng(model, document["rng"], path)
    model.metadata = document["metadata"]
    return model


def _read_document(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    info = archive.getinfo(_CONFIG_MEMBER)
    if info.file_size > _MAX_JSON_BYTES:
        raise ModelFileError(f"{path}: {_CONFIG_MEMBER} is {info.file_size} bytes; at most {_MAX_JSON_BYTES} allowed")
    raw = archive.read(_CONFIG_MEMBER)
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
    _check_keys(model, _MODEL_KEYS, "'model'", path)
    layers = model["layers"]
    if not isinstance(layers, list) or not layers:
        raise ModelFileError(f"{path}: 'model.layers' must be a non-empty list of layer descriptions")
    for i, spec in enumerate(layers):
        if (not isinstance(spec, dict) or set(spec) != {"class", "config"} or not isinstance(spec["class"], str)
                or not isinstance(spec["config"], dict)):
            raise ModelFileError(f"{path}: 'model.layers[{i}]' must be {{'class': str, 'config': object}}, "
                                 f"got {spec!r:.200}")
    if document["compile"] is not None:
        section = document["compile"]
        if not isinstance(section, dict):
            raise ModelFileError(f"{path}: 'compile' must be null or a JSON object")
        _check_keys(section, _COMPILE_KEYS, "'compile'", path)
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


def _compile(model: Any, section: dict[str, Any], path: Path) -> None:
    metrics = section["metrics"]
    if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
        raise ModelFileError(f"{path}: 'compile.metrics' must be a list of metric names, got {metrics!r:.200}")
    for what in ("loss", "optimizer"):
        if not isinstance(section[what], dict):
            raise ModelFileError(f"{path}: 'compile.{what}' must be a JSON object, got {section[what]!r:.200}")
    try:
        loss = losses_mod.deserialize(section["loss"])
        optimizer = optimizers_mod.deserialize(section["optimizer"])
        model.compile(loss=loss, optimizer=optimizer, metrics=metrics)
    except (BarenetError, TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise ModelFileError(f"{path}: the saved compile settings are invalid: {exc}") from None


def _optimizer_members(model: Any) -> dict[str, np.ndarray]:
    """Every optimizer state member the archive may hold, with a template of its dtype and shape.

    Slots are created on an optimizer's first update, so only ``iterations`` is required; a slot
    member is read when present.
    """
    templates: dict[str, np.ndarray] = {_ITERATIONS_MEMBER: np.zeros((), dtype=np.int64)}
    for slot in (*model.optimizer.slot_names, *model.optimizer.legacy_slots()):
        for key, param in model.parameters().items():
            templates[f"{_OPTIMIZER_DIR}{slot}/{key}.npy"] = param
    return templates


def _read_array(archive: zipfile.ZipFile, member: str, target: np.ndarray, path: Path) -> np.ndarray:
    """Read ``member`` as a ``.npy`` array of exactly ``target``'s dtype and shape, never unpickling."""
    info = archive.getinfo(member)
    if info.file_size > target.nbytes + _MAX_NPY_HEADER:
        raise ModelFileError(f"{path}: {member} is {info.file_size} bytes, too large for an array of shape "
                             f"{target.shape} and dtype {target.dtype}")
    raw = archive.read(member)
    buffer = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(buffer)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(buffer)
        else:
            raise ValueError(f".npy format version {version} is not supported")
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ModelFileError(f"{path}: {member} is not a valid .npy array: {exc}") from None
    if dtype.hasobject:
        raise ModelFileError(f"{path}: {member} holds Python objects (dtype {dtype}), which would need unpickling; "
                             "refusing to load it")
    if dtype != target.dtype:
        raise ModelFileError(f"{path}: {member} has dtype {dtype.str}; the saved architecture needs "
                             f"{target.dtype.str}")
    if tuple(shape) != target.shape:
        raise ModelFileError(f"{path}: {member} has shape {tuple(shape)}; the saved architecture needs {target.shape}")
    if len(raw) - buffer.tell() != target.nbytes:
        raise ModelFileError(f"{path}: {member} holds {len(raw) - buffer.tell()} data bytes; an array of shape "
                             f"{target.shape} and dtype {target.dtype} has {target.nbytes}")
    try:
        value = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        raise ModelFileError(f"{path}: {member} cannot be read: {exc}") from None
    if value.dtype.kind == "f":
        _require_finite(value, member, ModelFileError, f"{path} is damaged or holds a diverged model")
    return value


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


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load", "save"]
