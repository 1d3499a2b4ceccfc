"""Property test: any mutation of a real model file loads, or fails with barenet's own error, quickly and in
bounded memory.

Real files of eleven architectures, five Sequential (Dense with table metadata, Conv+BatchNormalization, LSTM,
GRU+Embedding, Bidirectional) and six graphs (a residual block, two inputs and two outputs with a loss each,
a layer called twice, a model called as a layer, attention over a padding mask, tied input and output
embeddings), are mutated the ways a damaged or hostile file differs from a good one: byte flips, truncations,
insertions, edits of
``barenet.json`` fields (the architecture, compile settings, random state and metadata), another file's
layer (or a whole graph) in place of a layer, member replacement and renaming, and edits of the zip headers'
fields. A graph's description also gets the edits of
:data:`GRAPH_MUTATIONS`: bad references, layer indices, names, fan-out, node counts, ``single`` flags and input
shapes, in the graph itself or in a nested model's. ``bn.load`` must either return a model or raise a
:class:`~barenet.errors.BarenetError`; every case is timed and its memory traced against :func:`memory_bound`.

The test suite runs a fixed, derandomized sample; ``scripts/fuzz_model_files.py`` runs thousands of
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
             "zip_header", "foreign_layer")
#: Edits of a graph model's description (``barenet.json``'s ``model``), drawn for graph files only. Each edits the
#: top graph or, in a file holding a nested model, a nested one.
GRAPH_MUTATIONS = ("graph_reference", "graph_layer_index", "graph_names", "graph_fan_out", "graph_many_nodes",
                   "graph_single", "graph_input_shape", "graph_nested")
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


def architectures() -> dict[str, tuple[bn.Sequential, Any, Any, dict[str, Any]]]:
    """Small models, the data to train them one step on, and how each is compiled: five Sequential
    ones and six graphs (a residual block, two inputs and two outputs with their own losses, a layer
    called twice, a model called as a layer, attention over a padding mask, and tied input and output
    embeddings)."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 12, (8, 5))
    sequences = rng.normal(size=(8, 5, 3))
    mse = {"loss": "mse"}
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
        "dense": (dense, rng.normal(size=(8, 5)), np.arange(8) % 3, {"loss": "sparse_categorical_crossentropy"}),
        "conv_bn": (conv, rng.normal(size=(8, 6, 6, 1)), rng.normal(size=(8, 2)), mse),
        "lstm": (lstm, sequences, rng.normal(size=(8, 2)), mse),
        "gru_embedding": (gru, tokens, rng.normal(size=(8, 2)), mse),
        "bidirectional": (bidirectional, sequences, rng.normal(size=(8, 2)), mse),
        **_graph_architectures(rng),
    }


def _graph_architectures(rng: np.random.Generator) -> dict[str, tuple[bn.Model, Any, Any, dict[str, Any]]]:
    L = bn.layers
    x = bn.Input(shape=(5,), name="x")
    h = L.Dense(6, activation="relu", name="h")(x)
    residual = bn.Model(x, L.Dense(3, activation="softmax", name="out")(L.Add(name="sum")([h, L.Dense(6)(h)])),
                        seed=5)

    a, b = bn.Input(shape=(4,), name="a"), bn.Input(shape=(3,), name="b")
    ha, hb = L.Dense(5, activation="tanh", name="ha")(a), L.Dense(5, name="hb")(b)
    cls = L.Dense(3, activation="softmax", name="cls")(L.Concatenate()([ha, hb]))
    reg = L.Dense(1, name="reg")(L.Multiply()([ha, hb]))
    two_by_two = bn.Model([a, b], [cls, reg], seed=6)

    x = bn.Input(shape=(4,), name="x")
    shared = L.Dense(4, activation="tanh", name="shared")
    h1 = shared(x)
    h2 = shared(L.Dropout(0.1)(h1))
    shared_model = bn.Model(x, L.Dense(2, name="out")(L.Add()([h1, h2])), seed=7)

    inner_in = bn.Input(shape=(3,), name="inner_in")
    encoder = bn.Model(inner_in, L.BatchNormalization(name="bn")(L.Dense(4, activation="relu", name="enc")(inner_in)),
                       name="encoder", seed=8)
    a, b = bn.Input(shape=(3,), name="a"), bn.Input(shape=(3,), name="b")
    nested = bn.Model([a, b], L.Dense(1, activation="sigmoid", name="head")(L.Concatenate()([encoder(a), encoder(b)])),
                      seed=9)

    ids = bn.Input(shape=(5,), dtype="int64", name="ids")
    e = L.Embedding(12, 4, mask_zero=True, name="embed")(ids)
    pooled = L.GlobalAveragePooling1D(name="pool")(L.MultiHeadAttention(2, 2, name="attend")(e, e))
    masked = bn.Model(ids, L.Dense(2, name="out")(pooled), seed=10)

    ids = bn.Input(shape=(5,), dtype="int64", name="ids")
    table = L.TokenAndPositionEmbedding(12, 5, 4, mask_zero=True, name="table")
    logits = table(L.Dense(4, activation="tanh", name="hidden")(table(ids)), reverse=True)
    tied = bn.Model(ids, L.Activation("softmax", name="probs")(logits), seed=11)
    return {
        "graph_residual": (residual, rng.normal(size=(8, 5)), np.arange(8) % 3,
                           {"loss": "categorical_crossentropy"}),
        "graph_two_by_two": (two_by_two, [rng.normal(size=(8, 4)), rng.normal(size=(8, 3))],
                             [np.arange(8) % 3, rng.normal(size=8)],
                             {"loss": ["categorical_crossentropy", "mse"], "loss_weights": [1.0, 0.5],
                              "metrics": [["accuracy"], ["mae"]]}),
        "graph_shared": (shared_model, rng.normal(size=(8, 4)), rng.normal(size=(8, 2)), {"loss": "mse"}),
        "graph_nested": (nested, [rng.normal(size=(8, 3)), rng.normal(size=(8, 3))], np.arange(8) % 2,
                         {"loss": "binary_crossentropy"}),
        "graph_masked": (masked, rng.integers(0, 12, (8, 5)), rng.normal(size=(8, 2)), {"loss": "mse"}),
        "graph_tied": (tied, rng.integers(0, 12, (8, 5)), rng.integers(0, 12, (8, 5)),
                       {"loss": "sparse_categorical_crossentropy"}),
    }


def real_files(folder: Path) -> dict[str, bytes]:
    """The bytes of each architecture's model file, trained one epoch (so optimizer slots exist)."""
    out = {}
    for name, (model, X, y, compile_args) in architectures().items():
        model.compile(optimizer="adam", **compile_args)
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


def _bad_reference(k: int, n_nodes: int, n_inputs: int, data: st.DataObject) -> Any:
    """A reference, for node ``k``, to no tensor made before it: itself, a later node, out of range, malformed."""
    return data.draw(st.sampled_from([
        ["node", k], ["node", min(k + 1, n_nodes)], ["node", n_nodes], ["node", -1], ["node", 10**12],
        ["input", n_inputs], ["input", -1], ["input", True], ["node", 0.0], ["nodes", 0], ["node"], ["node", 0, 0],
        "node", None, ["input", "0"], [["input", 0]],
    ]))


def _graph_configs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """``config`` and every nested model's config in it, outermost first."""
    found = [config]
    for spec in config.get("layers", []):
        if isinstance(spec, dict) and spec.get("class") == "Model" and isinstance(spec.get("config"), dict):
            found += _graph_configs(spec["config"])
    return found


def _valid_reference(graph: dict[str, Any], k: int, data: st.DataObject) -> list[Any]:
    """A reference to a tensor that exists before node ``k``."""
    refs = [["input", j] for j in range(len(graph["inputs"]))] + [["node", j] for j in range(k)]
    return data.draw(st.sampled_from(refs))


def _edit_graph(graph: dict[str, Any], kind: str, data: st.DataObject) -> None:
    """Damage one graph description in place the way ``kind`` names."""
    nodes, layers, inputs = graph["nodes"], graph["layers"], graph["inputs"]
    k = data.draw(st.integers(0, len(nodes) - 1))
    node = nodes[k]
    if kind == "graph_reference":
        if data.draw(st.booleans()):
            node["inputs"][data.draw(st.integers(0, len(node["inputs"]) - 1))] = _bad_reference(
                k, len(nodes), len(inputs), data)
        else:
            graph["outputs"][data.draw(st.integers(0, len(graph["outputs"]) - 1))] = _bad_reference(
                len(nodes), len(nodes), len(inputs), data)
    elif kind == "graph_layer_index":
        node["layer"] = data.draw(st.integers(0, len(layers) - 1) | st.sampled_from(
            [-1, len(layers), 10**12, True, "0", 0.5, None, [0]]))
    elif kind == "graph_names":
        i, j = data.draw(st.integers(0, len(layers) - 1)), data.draw(st.integers(0, len(layers) - 1))
        config, other = layers[i]["config"], layers[j]["config"].get("name")
        edit = data.draw(st.sampled_from(["same_as_other", "missing", "not_a_string", "dotted", "input_clash",
                                          "input_twice"]))
        if edit == "same_as_other":
            config["name"] = other
        elif edit == "missing":
            config.pop("name", None)
        elif edit == "not_a_string":
            config["name"] = data.draw(st.sampled_from([None, 1, ["a"], {"a": 1}, ""]))
        elif edit == "dotted":  # "encoder.enc" beside a nested model "encoder" holding a layer "enc"
            inner = next((spec["config"] for spec in layers if spec["class"] == "Model"), None)
            sub = inner["layers"][0]["config"].get("name") if inner else "kernel"
            config["name"] = f"{other}.{sub}"
        elif edit == "input_clash":
            inputs[0]["name"] = other
        else:
            inputs[-1]["name"] = inputs[0]["name"] if len(inputs) > 1 else None
    elif kind == "graph_fan_out":
        count = data.draw(st.sampled_from([2, 3, 50, 4000, 10**5]))
        ref = _valid_reference(graph, k, data)
        if data.draw(st.integers(0, 3)):
            node["inputs"] = [ref] * count
            node["single"] = data.draw(st.sampled_from([False, False, False, True]))
        else:
            graph["outputs"] = [ref] * count
            graph["single_output"] = False
    elif kind == "graph_many_nodes":
        count = data.draw(st.sampled_from([10, 1000, 4990, 5000, 5001, 9990, 10**5]) | st.integers(1, 12000))
        out = graph["outputs"][0]
        edit = data.draw(st.sampled_from(["shared_chain", "own_layers", "repeated_node"]))
        if edit == "shared_chain":  # one ReLU called ``count`` times in a chain after the first output
            layers.append({"class": "ReLU", "config": {"name": "many_relu"}})
            first = len(nodes)
            nodes.append({"layer": len(layers) - 1, "inputs": [out], "single": True})
            nodes.extend({"layer": len(layers) - 1, "inputs": [["node", first + c]], "single": True}
                         for c in range(count - 1))
            graph["outputs"][0] = ["node", len(nodes) - 1]
        elif edit == "own_layers":  # ``count`` Linear layers, each called once
            first = len(nodes)
            for c in range(count):
                layers.append({"class": "Linear", "config": {"name": f"linear_{c}"}})
                nodes.append({"layer": len(layers) - 1, "inputs": [out if c == 0 else ["node", first + c - 1]],
                              "single": True})
            graph["outputs"][0] = ["node", len(nodes) - 1]
        else:  # the same call again and again, its outputs unused
            nodes.extend(dict(node) for _ in range(count))
    elif kind == "graph_single":
        where = data.draw(st.sampled_from(["node", "single_input", "single_output"]))
        target, key = (node, "single") if where == "node" else (graph, where)
        target[key] = data.draw(st.sampled_from([not target[key], None, 0, 1, "true"]))
    elif kind == "graph_input_shape":
        spec = inputs[data.draw(st.integers(0, len(inputs) - 1))]
        shape = spec["shape"]
        edit = data.draw(st.sampled_from(["size", "add_axis", "drop_axis", "integer", "not_a_list"]))
        if edit == "size":
            shape[data.draw(st.integers(0, len(shape) - 1))] = data.draw(
                st.integers(1, 9) | st.sampled_from([0, -1, 10**6, 10**9, 2**63, True, 2.0]))
        elif edit == "add_axis":
            shape.insert(data.draw(st.integers(0, len(shape))), data.draw(st.sampled_from([1, 2, 7, 10**5])))
        elif edit == "drop_axis":
            shape.pop(data.draw(st.integers(0, len(shape) - 1)))
        elif edit == "integer":
            spec["integer"] = not spec["integer"]
        else:
            spec["shape"] = data.draw(st.sampled_from([[], None, 3, "3", [[3]], [3] * 9]))
    else:  # graph_nested: a field edit anywhere in the graph, or the graph nested in itself
        if data.draw(st.booleans()):
            where = data.draw(st.sampled_from(list(_paths(graph))[1:]))
            target = graph
            for key in where[:-1]:
                target = target[key]
            if data.draw(st.booleans()) and isinstance(target, dict):
                del target[where[-1]]
            else:
                target[where[-1]] = data.draw(json_values)
        else:  # its first layer replaced by a model of this graph, whose first layer is one again, ``depth`` deep
            depth = data.draw(st.sampled_from([1, 2, 30, 200]))
            base = json.loads(json.dumps(graph))
            inner = base
            for level in range(depth):
                outer = json.loads(json.dumps(base))
                outer["name"] = f"nest_{level}"
                outer["layers"][0] = {"class": "Model", "config": inner}
                inner = outer
            graph["layers"][0] = {"class": "Model", "config": inner}


def layer_donors(files: dict[str, bytes]) -> list[dict[str, Any]]:
    """Every layer description of ``files`` (nested models' and wrapped layers' included), and each graph as the
    description of a model used as a layer: what :func:`mutate`'s ``foreign_layer`` puts where it does not
    belong."""
    donors = []
    for raw in files.values():
        model = json.loads(_members(raw)["barenet.json"])["model"]
        if "nodes" in model:
            donors.append({"class": "Model", "config": model})
        for slot, key in _layer_slots(model):
            donors.append(slot[key])
    return donors


def _layer_slots(model: dict[str, Any]) -> list[tuple[Any, Any]]:
    """``(container, key)`` of every layer description in a model's description, nested ones included."""
    slots = []
    for config in _graph_configs(model):
        for i, spec in enumerate(config.get("layers", [])):
            slots.append((config["layers"], i))
            if isinstance(spec, dict) and spec.get("class") == "Bidirectional":
                slots.append((spec["config"], "layer"))
    return slots


def _inflate(value: Any, size: int) -> None:
    """Set every layer width (``units``, ``filters``) and every graph input's sizes in ``value`` to ``size``."""
    if isinstance(value, dict):
        for key in ("units", "filters"):
            if key in value:
                value[key] = size
        if isinstance(value.get("shape"), list) and "integer" in value:
            value["shape"] = [size] * len(value["shape"])
        for item in value.values():
            _inflate(item, size)
    elif isinstance(value, list):
        for item in value:
            _inflate(item, size)


def _foreign_layer(raw: bytes, data: st.DataObject, donors: list[dict[str, Any]]) -> bytes:
    """A layer description of another file, or a whole graph, in place of a layer or inserted among them; half the
    time with its widths and input sizes made large (what it describes, built, would not fit the file)."""
    members = _members(raw)
    document = json.loads(members["barenet.json"])
    container, key = data.draw(st.sampled_from(_layer_slots(document["model"])))
    donor = json.loads(json.dumps(data.draw(st.sampled_from(donors))))
    if data.draw(st.booleans()):
        _inflate(donor, data.draw(st.sampled_from([64, 4000, 20000])))
    if isinstance(key, int) and data.draw(st.booleans()):
        container.insert(key, donor)
    else:
        container[key] = donor
    members["barenet.json"] = json.dumps(document).encode()
    return _archive(list(members.items()), data.draw(st.booleans()))


def _mutate_graph(raw: bytes, kind: str, data: st.DataObject) -> bytes:
    members = _members(raw)
    document = json.loads(members["barenet.json"])
    graphs = _graph_configs(document["model"])
    _edit_graph(graphs[data.draw(st.integers(0, len(graphs) - 1))], kind, data)
    members["barenet.json"] = json.dumps(document).encode()
    return _archive(list(members.items()), data.draw(st.booleans()))


def mutate(raw: bytes, kind: str, data: st.DataObject, donors: list[dict[str, Any]] | None = None) -> bytes:
    """``raw`` (a model file's bytes) damaged the way ``kind`` names; ``foreign_layer`` takes a layer description
    from ``donors`` (:func:`layer_donors`)."""
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
    if kind in GRAPH_MUTATIONS:
        return _mutate_graph(raw, kind, data)
    if kind == "foreign_layer":
        return _foreign_layer(raw, data, donors or layer_donors({"": raw}))
    if kind == "rename_member":
        return _rename_member(raw, data)
    return _zip_header(raw, data)


# --------------------------------------------------------------------- the property
def _outcome(path: Path) -> str:
    try:
        bn.load(path)
    except BarenetError as exc:
        return type(exc).__name__
    return "loaded"


def check_load(path: Path) -> tuple[str, float, int]:
    """Load ``path``; returns ``("loaded" or the BarenetError's class name, seconds, peak traced bytes)``.

    Any other exception escapes; a case past its time or memory bound raises AssertionError. The load runs with
    its memory traced, which makes many small allocations several times slower: a load that takes longer than
    the time bound so is timed again untraced, and that time is the one bounded (and returned)."""
    size = path.stat().st_size
    tracemalloc.start()
    start = time.process_time()
    try:
        outcome = _outcome(path)
    finally:
        seconds = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < memory_bound(size), f"loading traced {peak} bytes for a {size}-byte file"
    if seconds >= SECONDS_PER_CASE:
        start = time.process_time()
        again = _outcome(path)
        seconds = time.process_time() - start
        assert again == outcome, f"loading gave {outcome}, then {again}"
    assert seconds < SECONDS_PER_CASE, f"loading took {seconds:.1f} s"
    return outcome, seconds, peak


def fuzz(files: dict[str, bytes], path: Path, outcomes: Counter, *, max_examples: int, derandomize: bool,
         seed: int | None = None, failures: list | None = None, worst: dict | None = None,
         kinds: tuple[str, ...] = MUTATIONS + GRAPH_MUTATIONS) -> Callable[[], None]:
    """A hypothesis test over mutations of ``files``, counting ``(architecture, mutation, outcome)`` in ``outcomes``.

    ``kinds`` are the mutations to draw from (those of :data:`GRAPH_MUTATIONS` for graph files only). With
    ``failures`` given, a failing case is recorded there (mutation, error) instead of stopping the run; ``worst``
    collects the slowest load's seconds and the highest peak memory as a multiple of the file's size.
    """
    graphs = {name for name, raw in files.items() if "nodes" in json.loads(_members(raw)["barenet.json"])["model"]}
    donors = layer_donors(files)
    names = sorted(files) if set(kinds) & set(MUTATIONS) else sorted(graphs)

    @settings(max_examples=max_examples, derandomize=derandomize, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(architecture=st.sampled_from(names), data=st.data())
    def run(architecture: str, data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from([k for k in kinds if k in MUTATIONS or architecture in graphs]))
        try:
            mutated = mutate(files[architecture], kind, data, donors)
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


#: Cases per mutation in the suite's sample (the long run draws mutations at random). A file of thousands of
#: calls takes seconds to load with its memory traced, so the suite takes few of them; tests/test_io.py loads
#: the largest files barenet accepts.
EXAMPLES_PER_MUTATION = {**dict.fromkeys(MUTATIONS + GRAPH_MUTATIONS, 20), "graph_many_nodes": 6}


def test_mutated_model_files_load_or_raise_barenet_errors_in_bounded_time_and_memory(tmp_path):
    files = real_files(tmp_path)
    assert all(check_load(tmp_path / f"{name}.barenet")[0] == "loaded" for name in files)
    outcomes: Counter = Counter()
    for kind in MUTATIONS + GRAPH_MUTATIONS:  # one derandomized sample per mutation: every one is reached
        fuzz(files, tmp_path / "mutated.barenet", outcomes, max_examples=EXAMPLES_PER_MUTATION[kind],
             derandomize=True, kinds=(kind,))()
    by_outcome = Counter()
    for (_, _, outcome), count in outcomes.items():
        by_outcome[outcome] += count
    # The sample reaches both sides of the property.
    assert by_outcome["loaded"] > 0 and by_outcome["ModelFileError"] > 0


def test_zip_header_fields_of_the_fuzzer_are_where_the_format_puts_them(tmp_path):
    """The header-field table above addresses real fields: the local header's size fields read back."""
    raw = real_files(tmp_path)["lstm"]
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        first = archive.infolist()[0]
    assert struct.unpack_from("<II", raw, 18) == (first.compress_size, first.file_size)
