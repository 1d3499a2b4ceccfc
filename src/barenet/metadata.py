"""The schema of a saved model's ``metadata``: checked when a file is loaded, so its users never trip on it.

``model.metadata`` is free JSON for library users, except three keys the ``barenet`` command writes
and reads back, whose structure is fixed:

``preprocessing``
    null, or :meth:`barenet.preprocessing.TablePreprocessor.to_json`'s output::

        {"version": 1, "target": str, "task": "classification" | "regression",
         "scale": "standard" | "minmax" | "none",
         "columns": [{"name": str, "kind": "numeric", "center": number, "scale": number > 0}
                     | {"name": str, "kind": "categorical", "categories": [str, ...]}, ...],   # at least one
         "classes": null (regression) | [2 or more distinct strings, numbers or booleans],
         "target_center": number, "target_scale": number > 0}

    Its encoded features (one per numeric column, one per category) must match the model's input
    width, and its classes the model's output width.
``history``
    ``{name: [number or null, ...]}``, every list of one length (one entry per epoch; null where
    the value was not finite).
``training``
    an object (the command-line settings of the run).

:func:`check_metadata` raises :class:`MetadataError` (a :class:`~barenet.errors.ModelFileError`) naming
the first thing wrong.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ModelFileError
from .preprocessing import FORMAT_VERSION, SCALERS

_PREPROCESSING_KEYS = {"version", "target", "task", "scale", "columns", "classes", "target_center", "target_scale"}
_COLUMN_KEYS = {"numeric": {"name", "kind", "center", "scale"}, "categorical": {"name", "kind", "categories"}}


class MetadataError(ModelFileError):
    """A model file's metadata does not have the structure its known keys require."""


def check_metadata(metadata: Any, input_shape: tuple[int, ...] | None = None,
                   output_shape: tuple[int, ...] | None = None) -> None:
    """Check ``metadata`` against the schema in the module docstring.

    ``input_shape``/``output_shape`` (one sample's, batch axis excluded) are the model's; when they are
    vectors the preprocessing's feature count and class count must fit them.
    """
    if not isinstance(metadata, dict):
        raise MetadataError(f"metadata must be a JSON object, got {_kind(metadata)}")
    if metadata.get("preprocessing") is not None:
        _check_preprocessing(metadata["preprocessing"], input_shape, output_shape)
    if "history" in metadata:
        _check_history(metadata["history"])
    if "training" in metadata and not isinstance(metadata["training"], dict):
        raise MetadataError(f"metadata.training must be a JSON object, got {_kind(metadata['training'])}")


def _check_preprocessing(prep: Any, input_shape, output_shape) -> None:
    where = "metadata.preprocessing"
    if not isinstance(prep, dict):
        raise MetadataError(f"{where} must be a JSON object, got {_kind(prep)}")
    missing, unknown = sorted(_PREPROCESSING_KEYS - set(prep)), sorted(set(prep) - _PREPROCESSING_KEYS)
    if missing or unknown:
        raise MetadataError(f"{where} " + (f"lacks the keys {missing}" if missing else f"has unknown keys {unknown}"))
    if prep["version"] != FORMAT_VERSION or isinstance(prep["version"], bool):
        raise MetadataError(f"{where}.version is {prep['version']!r:.60}; expected {FORMAT_VERSION}")
    if not isinstance(prep["target"], str):
        raise MetadataError(f"{where}.target must be a column name (a string), got {_kind(prep['target'])}")
    if prep["task"] not in ("classification", "regression"):
        raise MetadataError(f"{where}.task is {prep['task']!r:.60}; expected 'classification' or 'regression'")
    if prep["scale"] not in SCALERS:
        raise MetadataError(f"{where}.scale is {prep['scale']!r:.60}; expected one of {list(SCALERS)}")
    features = _check_columns(prep["columns"], f"{where}.columns")
    _check_number(prep["target_center"], f"{where}.target_center")
    _check_number(prep["target_scale"], f"{where}.target_scale", positive=True)
    classes = prep["classes"]
    if prep["task"] == "regression":
        if classes is not None:
            raise MetadataError(f"{where}.classes must be null for a regression model, got {_kind(classes)}")
        outputs = 1
    else:
        _check_classes(classes, f"{where}.classes")
        outputs = len(classes)
    if input_shape is not None and len(input_shape) == 1 and input_shape[0] != features:
        raise MetadataError(f"{where}.columns encode {features} features, but the model takes {input_shape[0]} inputs")
    if output_shape is not None and len(output_shape) == 1 and output_shape[0] != outputs:
        what = f"{outputs} classes" if classes is not None else "a regression target (1 output)"
        raise MetadataError(f"{where} describes {what}, but the model has {output_shape[0]} outputs")


def _check_columns(columns: Any, where: str) -> int:
    """Check the feature columns; returns the number of encoded features they give."""
    if not isinstance(columns, list) or not columns:
        raise MetadataError(f"{where} must be a non-empty list of column descriptions, got {_kind(columns)}")
    features, names = 0, set()
    for i, col in enumerate(columns):
        at = f"{where}[{i}]"
        if not isinstance(col, dict):
            raise MetadataError(f"{at} must be a JSON object, got {_kind(col)}")
        if not isinstance(col.get("name"), str):
            raise MetadataError(f"{at} needs a 'name' that is a string, got {_kind(col.get('name'))}")
        if col["name"] in names:
            raise MetadataError(f"{at} repeats the column name {col['name']!r:.60}")
        names.add(col["name"])
        kind = col.get("kind")
        if not isinstance(kind, str) or kind not in _COLUMN_KEYS:
            raise MetadataError(f"{at} ({col['name']!r:.60}) needs a 'kind' of 'numeric' or 'categorical', "
                                f"got {kind!r:.60}")
        if set(col) != _COLUMN_KEYS[kind]:
            raise MetadataError(f"{at} ({col['name']!r:.60}) has keys {sorted(col)}; a {kind} column has "
                                f"{sorted(_COLUMN_KEYS[kind])}")
        if kind == "numeric":
            _check_number(col["center"], f"{at}.center")
            _check_number(col["scale"], f"{at}.scale", positive=True)
            features += 1
        else:
            categories = col["categories"]
            if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
                raise MetadataError(f"{at}.categories must be a list of strings, got {_kind(categories)}")
            if len(set(categories)) != len(categories):
                raise MetadataError(f"{at}.categories holds repeated categories")
            features += len(categories)
    return features


def _check_classes(classes: Any, where: str) -> None:
    if not isinstance(classes, list) or len(classes) < 2:
        raise MetadataError(f"{where} must list at least two classes for a classification model, got "
                            f"{classes!r:.60}")
    for c in classes:
        if not (isinstance(c, (str, bool)) or _is_number(c)):
            raise MetadataError(f"{where} holds {_kind(c)}; classes are strings, numbers or booleans")
    if len({(type(c), c) for c in classes}) != len(classes):
        raise MetadataError(f"{where} holds repeated classes")


def _check_history(history: Any) -> None:
    where = "metadata.history"
    if not isinstance(history, dict):
        raise MetadataError(f"{where} must be an object of per-epoch lists, got {_kind(history)}")
    lengths = set()
    for name, values in history.items():
        if not isinstance(values, list):
            raise MetadataError(f"{where}.{name:.60} must be a list of numbers, got {_kind(values)}")
        bad = next((v for v in values if v is not None and not _is_number(v)), _NONE)
        if bad is not _NONE:
            raise MetadataError(f"{where}.{name:.60} holds {_kind(bad)}; expected numbers (null where not finite)")
        lengths.add(len(values))
    if len(lengths) > 1:
        raise MetadataError(f"{where} lists have different lengths {sorted(lengths)}; expected one entry per epoch")


_NONE = object()


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_number(value: Any, where: str, positive: bool = False) -> None:
    if not _is_number(value) or (positive and value <= 0):
        expected = "a finite number > 0" if positive else "a finite number"
        raise MetadataError(f"{where} must be {expected}, got {value!r:.60}")


def _kind(value: Any) -> str:
    """``value`` named for an error message: its JSON type and a short excerpt."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return f"{names.get(type(value), type(value).__name__)} {str(value)[:40]!r}" if value is not None else "null"


__all__ = ["MetadataError", "check_metadata"]
