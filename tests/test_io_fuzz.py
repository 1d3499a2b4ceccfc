"""Property test: any mutation of a real model file loads, or fails with barenet's own error, quickly and in
bounded memory.

Real files of five architectures (Dense with table metadata, Conv+BatchNormalization, LSTM,
GRU+Embedding, Bidirectional) are mutated the ways a damaged or hostile file differs from a good one:
byte flips, truncations, insertions, edits of ``barenet.json`` fields (the architecture, compile
settings, random state and metadata), member replacement and renaming, and edits of the zip headers'
fields. ``bn.load`` must either return a model or raise a :class:`~barenet.errors.BarenetError`; every
case is timed and its memory traced against :func:`memory_bound`.

The test suite runs a fixed, derandomized sample; ``bench/fuzz_model_files.py`` runs thousands of
cases through :func:`fuzz` and prints the outcome counts.
"""

from __future__ import annotations

import io
import json
import struct
import time
import tracemalloc
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

import barenet as bn
from barenet.errors import BarenetError

MUTATIONS = ("flip", "truncate", "insert", "json_field", "metadata_field", "replace_member", "rename_member",
             "zip_header")
#: Seconds one load may take (generous: the machine running the suite may be busy).
SECONDS_PER_CASE = 10.0


def memory_bound(file_size: int) -> int:
    """Peak traced bytes allowed for loading a file of ``file_size`` bytes: a multiple of its size plus the
    fixed floor below which samples are never refused (see ``barenet.io.MIN_SAMPLE_BYTES``)."""
    return 64 * file_size + 6 * bn.io.MIN_SAMPLE_BYTES


# --------------------------------------------------------------------- real files
def _table_metadata(features: int, classes: int) -> dict[str, Any]:
    """Metadata as ``barenet train`` writes it, for ``features`` numeric columns and ``classes`` classes."""
    columns = [{"name": f"x{i}", "kind": "numeric", "center": 0.5 * i, "scale": 1.0 + i} for i in range(features - 2)]
    columns.append({"name": "soil", "kind": "categorical", "categories": ["clay", "sand"]})
    return {"preprocessing": {"version": 1, "target": "kind", "task": "classification", "scale": "standard",
                              "columns": columns, "classes": [f"c{i}" for i in range(classes)],
                              "target_center": 0.0, "target_scale": 1.0},
            "history": {"loss": [1.0, None], "val_loss": [1.1, 0.9]}, "training": {"epochs": 2}}


def architectures() -> dict[str, tuple[bn.Sequential, np.ndarray, np.ndarray]]:
    """Five small compiled models and data to train them one step on."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 12, (8, 5))
    sequences = rng.normal(size=(8, 5, 3))
    dense = bn.Sequential([bn.layers.Dense(6, activation="relu", input_dim=5), bn.layers.Dropout(0.2),
                           bn.layers.Dense(3, activation="softmax")], seed=0)
    dense.metadata = _table_metadata(5, 3)
    conv = bn.Sequential([bn.layers.Conv2D(2, 3, input_shape=(6, 6, 1)), bn.layers.BatchNormalization(),
                          bn.layers.MaxPooling2D(2), bn.layers.Flatten(), bn.layers.Dense(2)], seed=1)
    lstm = bn.Sequential([bn.layers.LSTM(4, input_shape=(5, 3)), bn.layers.Dense(2)], seed=2)
    gru = bn.Sequential([bn.layers.Embedding(12, 3, input_length=5), bn.layers.GRU(4), bn.layers.Dense(2)], seed=3)
    bidirectional = bn.Sequential([bn.layers.Bidirectional(bn.layers.SimpleRNN(3), input_shape=(5, 3)),
                                   bn.layers.Dense(2)], seed=4)
    return {
        "dense": (dense, rng.normal(size=(8, 5)), np.arange(8) % 3),
        "conv_bn": (conv, rng.normal(size=(8, 6, 6, 1)), rng.normal(size=(8, 2))),
        "lstm": (lstm, sequences, rng.normal(size=(8, 2))),
        "gru_embedding": (gru, tokens, rng.normal(size=(8, 2))),
        "bidirectional": (bidirectional, sequences, rng.normal(size=(8, 2))),
    }


def real_files(folder: Path) -> dict[str, bytes]:
    """The bytes of each architecture's model file, trained one epoch (so optimizer slots exist)."""
    out = {}
    for name, (model, X, y) in architectures().items():
        loss = "sparse_categorical_crossentropy" if name == "dense" else "mse"
        model.compile(loss, "adam")
        model.fit(X, y, epochs=1, batch_size=4, verbose=0)
        path = folder / f"{name}.barenet"
        bn.save(model, path)
        out[name] = path.read_bytes()
    return out


# --------------------------------------------------------------------- mutations
json_values = st.recursive(
    st.none() | st.booleans() | st.sampled_from([0, -1, 1, 2, 3, 4000, 10**7, 2**31, 2**64, 10**40])
    | st.integers(-5, 70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple = ()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _members(raw: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _archive(members: list[tuple[str, bytes]], deflate: bool) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(
            buffer, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as archive:
        warnings.simplefilter("ignore", UserWarning)  # duplicate names are one of the mutations
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _edit_json(raw: bytes, data: st.DataObject, under: tuple) -> bytes:
    members = _members(raw)
    document = json.loads(members["barenet.json"])
    root = document
    for key in under:
        root = root[key]
    where = data.draw(st.sampled_from(list(_paths(root))))
    value = data.draw(json_values)
    if not where:
        if under:
            parent = document
            for key in under[:-1]:
                parent = parent[key]
            parent[under[-1]] = value
        else:
            document = value
    else:
        target = root
        for key in where[:-1]:
            target = target[key]
        if data.draw(st.booleans()) and isinstance(target, dict):
            del target[where[-1]]
        else:
            target[where[-1]] = value
    members["barenet.json"] = json.dumps(document).encode()
    return _archive(list(members.items()), data.draw(st.booleans()))


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _replace_member(raw: bytes, data: st.DataObject) -> bytes:
    members = _members(raw)
    names = sorted(members)
    name = data.draw(st.sampled_from(names))
    kind = data.draw(st.sampled_from(["other", "array", "bytes", "npy_header"]))
    if kind == "other":
        members[name] = members[data.draw(st.sampled_from(names))]
    elif kind == "array":
        shape = tuple(data.draw(st.lists(st.integers(0, 9), max_size=3)))
        dtype = data.draw(st.sampled_from(["<f4", "<f8", "<i8", ">f4", "<f2", "|b1"]))
        members[name] = _npy(np.ones(shape, dtype=dtype))
    elif kind == "bytes":
        members[name] = data.draw(st.binary(max_size=300))
    else:
        text = data.draw(st.text(alphabet="{}()[]',: 0123456789descrfortan_ohpTFu<f", max_size=120))
        body = text.encode() + b"\n"
        members[name] = b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body + bytes(data.draw(
            st.integers(0, 64)))
    return _archive(list(members.items()), data.draw(st.booleans()))


def _rename_member(raw: bytes, data: st.DataObject) -> bytes:
    members = list(_members(raw).items())
    i = data.draw(st.integers(0, len(members) - 1))
    other = [name for name, _ in members]
    names = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=30)  # zip names end at NUL
    new = data.draw(st.sampled_from(other) | names | st.sampled_from(
        ["weights/layers.9.kernel.npy", "../x.npy", "optimizer/velocity/layers.0.kernel.npy", "barenet.json"]))
    members[i] = (new, members[i][1])
    return _archive(members, data.draw(st.booleans()))


# Field offsets (start, width) in a local file header (PK\3\4) and a central directory entry (PK\1\2).
_LOCAL_FIELDS = [(4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)]
_CENTRAL_FIELDS = [(6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2), (42, 4)]
_END_FIELDS = [(8, 2), (10, 2), (12, 4), (16, 4), (20, 2)]


def _zip_header(raw: bytes, data: st.DataObject) -> bytes:
    out = bytearray(raw)
    signature, fields = data.draw(st.sampled_from([(b"PK\x03\x04", _LOCAL_FIELDS), (b"PK\x01\x02", _CENTRAL_FIELDS),
                                                    (b"PK\x05\x06", _END_FIELDS)]))
    starts = [i for i in range(len(raw)) if raw.startswith(signature, i)]
    at = data.draw(st.sampled_from(starts))
    offset, width = data.draw(st.sampled_from(fields))
    value = data.draw(st.integers(0, 2 ** (8 * width) - 1) | st.sampled_from([0, 1, 8, 12, 2 ** (8 * width) - 1]))
    out[at + offset:at + offset + width] = value.to_bytes(width, "little")
    return bytes(out)


def mutate(raw: bytes, kind: str, data: st.DataObject) -> bytes:
    """``raw`` (a model file's bytes) damaged the way ``kind`` names."""
    if kind == "flip":
        out = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 8))):
            out[data.draw(st.integers(0, len(out) - 1))] = data.draw(st.integers(0, 255))
        return bytes(out)
    if kind == "truncate":
        return raw[:data.draw(st.integers(0, len(raw) - 1))]
    if kind == "insert":
        at = data.draw(st.integers(0, len(raw)))
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=64)) + raw[at:]
    if kind == "json_field":
        return _edit_json(raw, data, ())
    if kind == "metadata_field":
        return _edit_json(raw, data, ("metadata",))
    if kind == "replace_member":
        return _replace_member(raw, data)
    if kind == "rename_member":
        return _rename_member(raw, data)
    return _zip_header(raw, data)


# --------------------------------------------------------------------- the property
def check_load(path: Path) -> tuple[str, float, int]:
    """Load ``path``; returns ``("loaded" or the BarenetError's class name, seconds, peak traced bytes)``.

    Any other exception escapes; a case past its time or memory bound raises AssertionError."""
    size = path.stat().st_size
    tracemalloc.start()
    start = time.perf_counter()
    try:
        bn.load(path)
        outcome = "loaded"
    except BarenetError as exc:
        outcome = type(exc).__name__
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < SECONDS_PER_CASE, f"loading took {seconds:.1f} s"
    assert peak < memory_bound(size), f"loading traced {peak} bytes for a {size}-byte file"
    return outcome, seconds, peak


def fuzz(files: dict[str, bytes], path: Path, outcomes: Counter, *, max_examples: int, derandomize: bool,
         seed: int | None = None, failures: list | None = None, worst: dict | None = None) -> Callable[[], None]:
    """A hypothesis test over mutations of ``files``, counting ``(architecture, mutation, outcome)`` in ``outcomes``.

    With ``failures`` given, a failing case is recorded there (mutation, error) instead of stopping the run;
    ``worst`` collects the slowest load's seconds and the highest peak memory as a multiple of the file's size.
    """
    @settings(max_examples=max_examples, derandomize=derandomize, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(architecture=st.sampled_from(sorted(files)), kind=st.sampled_from(MUTATIONS), data=st.data())
    def run(architecture: str, kind: str, data: st.DataObject) -> None:
        try:
            mutated = mutate(files[architecture], kind, data)
        except (ValueError, IndexError, UnicodeEncodeError):  # a name zipfile itself cannot write
            reject()
        path.write_bytes(mutated)
        try:
            outcome, seconds, peak = check_load(path)
            if worst is not None:
                worst["seconds"] = max(worst.get("seconds", 0.0), seconds)
                worst["peak_bytes"] = max(worst.get("peak_bytes", 0), peak)
                ratio = peak / max(path.stat().st_size, 1)
                worst["peak_per_file_byte"] = max(worst.get("peak_per_file_byte", 0.0), ratio)
        except BaseException as exc:  # noqa: BLE001 - every escape is what the property forbids
            if failures is None:
                raise
            outcome = "FAILURE"
            failures.append((architecture, kind, f"{type(exc).__name__}: {exc}"[:300]))
        outcomes[architecture, kind, outcome] += 1

    if seed is not None:
        from hypothesis import seed as fixed_seed

        run = fixed_seed(seed)(run)
    return run


def test_mutated_model_files_load_or_raise_barenet_errors_in_bounded_time_and_memory(tmp_path):
    files = real_files(tmp_path)
    assert all(check_load(tmp_path / f"{name}.barenet")[0] == "loaded" for name in files)
    outcomes: Counter = Counter()
    fuzz(files, tmp_path / "mutated.barenet", outcomes, max_examples=600, derandomize=True)()
    by_outcome = Counter()
    for (_, _, outcome), count in outcomes.items():
        by_outcome[outcome] += count
    # The sample reaches both sides of the property and every mutation.
    assert by_outcome["loaded"] > 0 and by_outcome["ModelFileError"] > 0
    assert {kind for _, kind, _ in outcomes} == set(MUTATIONS)


def test_zip_header_fields_of_the_fuzzer_are_where_the_format_puts_them(tmp_path):
    """The header-field table above addresses real fields: the local header's size fields read back."""
    raw = real_files(tmp_path)["lstm"]
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        first = archive.infolist()[0]
    assert struct.unpack_from("<II", raw, 18) == (first.compress_size, first.file_size)
