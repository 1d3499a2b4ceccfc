"""Tied input and output embeddings: ``emb(ids)`` looks tokens up, ``emb(h, reverse=True)`` projects hidden states
onto the same table (GPT-2's output layer, Keras-Hub's ``ReversibleEmbedding``).

The reference is PyTorch in float64 with copied weights: ``nn.Embedding`` whose ``weight`` is also the output
projection ``F.linear(h, emb.weight)``. Layouts: torch's ``nn.Linear.weight`` is ``(out, in)``, barenet's Dense
``kernel`` its transpose; the embedding table is ``(vocabulary, dim)`` in both. The tied table's gradient is
checked against torch's tied gradient and against the sum of the two uses computed apart (two untied copies).
"""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barenet as bn
from barenet.errors import BarenetError, ConfigError, DataError, ModelFileError, ShapeError

L = bn.layers
VOCAB, DIM, TIME, BATCH = 11, 6, 5, 4


def tied_model(kind: str, *, seed: int = 0) -> tuple[bn.Model, L.Layer]:
    """ids (batch, TIME) -> table lookup -> Dense(DIM, tanh) -> the table's reverse call -> softmax."""
    ids = bn.Input((TIME,), dtype="int64", name="ids")
    if kind == "embedding":
        emb = L.Embedding(VOCAB, DIM, name="emb")
    else:  # token and position tables, id 0 padding
        emb = L.TokenAndPositionEmbedding(VOCAB, TIME, DIM, mask_zero=True, name="emb")
    h = L.Dense(DIM, activation="tanh", name="hidden")(emb(ids))
    out = L.Activation("softmax", name="probs")(emb(h, reverse=True))
    model = bn.Model(ids, out, seed=seed, dtype="float64")
    model.compile(loss="sparse_categorical_crossentropy", optimizer=bn.optimizers.SGD(learning_rate=0.1))
    return model, emb


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(1, VOCAB, (BATCH, TIME))
    X[0, 3:] = 0  # padding (a real token for the plain Embedding, masked for mask_zero)
    X[2, 4:] = 0
    return X, rng.integers(0, VOCAB, (BATCH, TIME))


def torch_reference(model: bn.Model, X: np.ndarray, y: np.ndarray, *, tied: bool, masked: bool) -> dict:
    """Probabilities, loss and gradients of the same network in torch. With ``tied=False`` the head gets its own
    copy of the table, so the two uses' gradients come back apart (``table_lookup``, ``table_head``)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    w = model.named_weights()
    table_key = "emb.embeddings" if "emb.embeddings" in w else "emb.token_embeddings"
    emb = torch.nn.Embedding(VOCAB, DIM, dtype=torch.float64)
    dense = torch.nn.Linear(DIM, DIM, dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(w[table_key]))
        dense.weight.copy_(torch.from_numpy(w["hidden.kernel"].T))
        dense.bias.copy_(torch.from_numpy(w["hidden.bias"]))
    head = emb.weight if tied else torch.nn.Parameter(emb.weight.detach().clone())
    positions = None
    ids = torch.from_numpy(X)
    e = emb(ids)
    if "emb.position_embeddings" in w:
        positions = torch.nn.Parameter(torch.from_numpy(w["emb.position_embeddings"].copy()))
        e = e + positions[:TIME]
    logits = F.linear(torch.tanh(dense(e)), head)
    per_step = F.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(y).reshape(-1), reduction="none")
    real = torch.from_numpy((X != 0).reshape(-1).astype(np.float64)) if masked else torch.ones_like(per_step)
    loss = (per_step * real).sum() / real.sum()
    loss.backward()
    grads = {"hidden.kernel": dense.weight.grad.numpy().T, "hidden.bias": dense.bias.grad.numpy()}
    if positions is not None:
        grads["emb.position_embeddings"] = positions.grad.numpy()
    if tied:
        grads[table_key] = emb.weight.grad.numpy()
    else:
        grads["table_lookup"], grads["table_head"] = emb.weight.grad.numpy(), head.grad.numpy()
    return {"probs": torch.softmax(logits, -1).detach().numpy(), "loss": float(loss.detach()), "grads": grads,
            "table_key": table_key}


@pytest.mark.parametrize("kind", ["embedding", "token_and_position"])
def test_tied_model_matches_torch(kind):
    model, _ = tied_model(kind)
    X, y = data()
    masked = kind == "token_and_position"
    ref = torch_reference(model, X, y, tied=True, masked=masked)
    np.testing.assert_allclose(model.predict(X), ref["probs"], rtol=0, atol=1e-12)
    got = model.compute_gradients(X, y)
    assert got.loss == pytest.approx(ref["loss"], rel=1e-12)
    grads = {k.replace("layers.0.", "emb.").replace("layers.1.", "hidden."): g for k, g in got.parameters.items()}
    assert set(grads) == set(ref["grads"])  # one table, no weight of the head's own
    for key, g in ref["grads"].items():
        np.testing.assert_allclose(grads[key], g, rtol=0, atol=1e-10, err_msg=key)
    # the table's gradient is the sum of its two uses, each of them non-zero
    apart = torch_reference(model, X, y, tied=False, masked=masked)["grads"]
    assert np.abs(apart["table_lookup"]).max() > 1e-3 and np.abs(apart["table_head"]).max() > 1e-3
    np.testing.assert_allclose(grads[ref["table_key"]], apart["table_lookup"] + apart["table_head"], rtol=0,
                               atol=1e-10)


@pytest.mark.parametrize("kind", ["embedding", "token_and_position"])
def test_gradcheck(kind):
    model, emb = tied_model(kind, seed=1)
    for table in emb.params.values():  # gradients well above the central differences' rounding noise
        table *= 20
    X, y = data(1)
    assert bn.gradcheck(model, X, y).max_error < 1e-6


def test_the_final_softmax_is_fused_with_the_loss_and_a_loss_from_logits_works():
    model, _ = tied_model("embedding")
    assert model._fused_outputs() == [True]
    X, y = data()
    ids = bn.Input((TIME,), dtype="int64")
    emb = L.Embedding(VOCAB, DIM)
    logits = emb(L.Dense(DIM, activation="tanh")(emb(ids)), reverse=True)
    raw = bn.Model(ids, logits, seed=0, dtype="float64")
    raw.set_weights(model.get_weights())
    raw.compile(loss=bn.losses.CategoricalCrossentropy(from_logits=True), optimizer="sgd")
    np.testing.assert_allclose(bn.functional.softmax(raw.predict(X)), model.predict(X), rtol=0, atol=1e-14)
    assert raw.compute_gradients(X, y).loss == pytest.approx(model.compute_gradients(X, y).loss, rel=1e-12)


def test_one_step_moves_the_one_shared_table():
    model, emb = tied_model("embedding")
    X, y = data()
    before = emb.params["embeddings"].copy()
    grad = model.compute_gradients(X, y).parameters["layers.0.embeddings"]
    model.fit(X, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    np.testing.assert_allclose(emb.params["embeddings"], before - 0.1 * grad, rtol=0, atol=1e-14)
    assert [k for k in model.named_weights() if "embeddings" in k] == ["emb.embeddings"]
    # both calls read the moved table: the lookup and the projection
    h = np.random.default_rng(3).normal(size=(2, DIM))
    np.testing.assert_allclose(emb(h, reverse=True), h @ emb.params["embeddings"].T, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(emb(X[:1]), emb.params["embeddings"][X[:1]])


@pytest.mark.parametrize("kind", ["embedding", "token_and_position"])
def test_save_load_round_trip(kind, tmp_path):
    model, _ = tied_model(kind)
    X, y = data()
    model.fit(X, y, epochs=1, batch_size=2, verbose=0)
    bn.save(model, tmp_path / "tied.barenet")
    loaded = bn.load(tmp_path / "tied.barenet")
    assert [n.options for n in loaded.nodes] == [{}, {}, {"reverse": True}, {}]
    assert loaded.layers[0] is loaded.nodes[2].layer
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    for m in (model, loaded):  # training goes on alike
        m.fit(X, y, epochs=1, batch_size=2, shuffle=False, verbose=0)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    again = bn.Model.from_config(model.get_config())
    assert again.get_config() == model.get_config()


def _saved_document(tmp_path, kind="embedding"):
    model, _ = tied_model(kind)
    path = tmp_path / "tied.barenet"
    bn.save(model, path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    return path, members, json.loads(members["barenet.json"])


def _write(path, members, document):
    with zipfile.ZipFile(path, "w") as archive:
        for name, raw in members.items():
            archive.writestr(name, json.dumps(document) if name == "barenet.json" else raw)


def _reverse_call_only(model):
    """The model's input made hidden states (batch, 5, 6) read by the Dense, the table called only reversed."""
    model["inputs"][0].update(shape=[TIME, DIM], integer=False)
    model["layers"][:2] = model["layers"][1::-1]
    model["nodes"] = [{"layer": 0, "inputs": [["input", 0]], "single": True},
                      {"layer": 1, "inputs": [["node", 0]], "single": True, "options": {"reverse": True}},
                      {"layer": 2, "inputs": [["node", 1]], "single": True}]
    model["outputs"] = [["node", 2]]


@pytest.mark.parametrize(("edit", "message"), [
    # the reverse call reads the ids (batch, 5): its last axis is not the table's width 6
    (lambda model: model["nodes"][2].update(inputs=[["input", 0]]),
     r"node 2 \(layer 0, 'Embedding'\): Embedding\(11, 6\) 'emb' called with reverse=True projects hidden states "
     r"\(batch, \.\.\., 6\) onto its 11 x 6 table; got a tensor of shape \(None, 5\)"),
    (lambda model: model["nodes"][2].update(options={"reverse": "yes"}), r"call option reverse must be True or False"),
    (lambda model: model["nodes"][2].update(options={"reverse": True, "scale": 2}),
     r"takes the call option 'reverse' only"),
    (lambda model: model["nodes"][1].update(options={"reverse": True}),
     r"node 1 \(layer 1, 'Dense'\): Dense\(6, activation='tanh'\) 'hidden' takes no call option 'reverse'; its "
     r"calls take no options"),
    (_reverse_call_only, r"layers \[1\] are never called on their own input"),
])
def test_graph_file_refuses_a_bad_reverse_call(tmp_path, edit, message):
    path, members, document = _saved_document(tmp_path)
    edit(document["model"])
    _write(path, members, document)
    with pytest.raises(ModelFileError, match=message):
        bn.load(path)


@settings(max_examples=30, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.sampled_from([{}, {"reverse": True}, {"reverse": False}]) | st.dictionaries(
           st.sampled_from(["reverse", "mask", "training", ""]),
           st.none() | st.booleans() | st.integers(-2, 2) | st.text(max_size=3), max_size=2),
       node=st.integers(0, 3), source=st.none() | st.sampled_from([["input", 0], ["node", 0], ["node", 1]]))
def test_mutated_call_options_and_inputs_load_or_raise_barenet_errors(tmp_path, options, node, source):
    """A tied model's file with other call options and inputs: it loads and predicts, or raises barenet's error."""
    path, members, document = _saved_document(tmp_path, "token_and_position")
    nodes = document["model"]["nodes"]
    nodes[node]["options"] = options
    if source is not None:  # the node after it reads another tensor
        nodes[min(node + 1, 3)]["inputs"] = [source]
    _write(path, members, document)
    try:
        model = bn.load(path)
    except BarenetError:
        return
    X, _ = data()
    try:
        out = model.predict(X)
    except BarenetError:
        return
    assert np.isfinite(out).all()


def test_errors_name_what_the_reverse_call_expected():
    emb = L.Embedding(VOCAB, DIM, name="emb")
    with pytest.raises(ShapeError, match=r"Embedding\(11, 6\) 'emb' called with reverse=True projects hidden states "
                                         r"\(batch, \.\.\., 6\) onto its 11 x 6 table; got a tensor of shape "
                                         r"\(None, 5, 7\)"):
        emb(bn.Input((TIME, DIM + 1)), reverse=True)
    with pytest.raises(ConfigError, match=r"reverse must be True or False, got 'yes'"):
        emb(bn.Input((TIME, DIM)), reverse="yes")
    ids = bn.Input((TIME,), dtype="int64")
    with pytest.raises(ConfigError, match=r"is called only with options that take another input than its own "
                                          r"\(\{'reverse': True\}\), so nothing builds it"):
        bn.Model(ids, L.Embedding(VOCAB, DIM)(L.Embedding(VOCAB, DIM)(ids), reverse=True))
    model, emb = tied_model("embedding")
    with pytest.raises(ShapeError, match=r"Embedding\(11, 6\) 'emb' called with reverse=True expected hidden states "
                                         r"of shape \(batch, \.\.\., 6\), got \(2, 7\)"):
        emb(np.zeros((2, DIM + 1)), reverse=True)
    with pytest.raises(DataError, match=r"reverse=True expects float hidden states, got an array of dtype int64"):
        emb(np.zeros((2, DIM), dtype=np.int64), reverse=True)
    # the lookup is unchanged: ids only, of the built shape
    with pytest.raises(ShapeError, match=r"expected input of shape \(batch, 5\)"):
        emb(np.zeros((2, DIM), dtype=np.int64))


def test_a_masked_input_passes_its_mask_on_and_the_lookup_refuses_one():
    model, _ = tied_model("token_and_position")
    assert model.outputs[0].masked  # the loss counts the real steps only (checked against torch above)
    ids = bn.Input((TIME,), dtype="int64")
    masked = L.Embedding(VOCAB, DIM, mask_zero=True)(ids)
    with pytest.raises(ConfigError, match=r"looks up ids, which cannot carry a padding mask"):
        L.Embedding(VOCAB, DIM)(masked)


def test_summary_config_and_sequential():
    model, emb = tied_model("embedding")
    text = model.summary(print_fn=None)
    assert "emb (Embedding, reverse=True)  (None, 5, 11)" in text
    assert f"Total params: {VOCAB * DIM + DIM * DIM + DIM}" in text  # the table counted once
    assert emb.get_config() == {"name": "emb", "input_dim": VOCAB, "output_dim": DIM,
                                "embeddings_initializer": emb.get_config()["embeddings_initializer"]}
    seq = bn.Sequential([L.Embedding(VOCAB, DIM, input_length=TIME), L.Dense(3)], seed=0)
    assert seq.predict(data()[0]).shape == (BATCH, TIME, 3)


@pytest.mark.parametrize("kind", ["embedding", "token_and_position"])
def test_onnx_export_of_the_reverse_call(kind):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, emb = tied_model(kind)
    X, _ = data()
    proto = bn.onnx.to_onnx(model)
    assert "MatMul" in [n.op_type for n in proto.graph.node]
    table = {i.name: i for i in proto.graph.initializer}[f"{emb.table}_transposed"]
    assert tuple(table.dims) == (DIM, VOCAB)
    session = ort.InferenceSession(proto.SerializeToString())
    (probs,) = session.run(None, {session.get_inputs()[0].name: X})
    np.testing.assert_allclose(probs, model.predict(X), rtol=0, atol=1e-12)


def test_the_character_transformer_example_ties_its_output_layer(capsys):
    path = Path(__file__).resolve().parents[1] / "examples" / "char_transformer.py"
    spec = importlib.util.spec_from_file_location("char_transformer_tied", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    tied = example.build_model(1, 16, 2, 16, tie=True)
    untied = example.build_model(1, 16, 2, 16)
    assert untied.n_params - tied.n_params == 16 * example.VOCABULARY + example.VOCABULARY  # no Dense head
    example.main(["--minutes", "0.05", "--steps", "2", "--layers", "1", "--width", "16", "--heads", "2",
                  "--context", "16", "--batch", "4", "--generate", "12", "--tie"])
    out = capsys.readouterr().out
    assert "(output layer tied to the token embeddings)" in out
    same = re.search(r"same characters both ways: (\d+)/12", out)  # the cached generator's tied head agrees
    assert same and int(same.group(1)) == 12, out
