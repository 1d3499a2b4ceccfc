"""The functional API: graphs of layer calls (residual sums, several inputs and outputs, shared layers,
nested models), checked by finite differences, against PyTorch in float64 where it is installed, and
against Sequential on chains."""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, DataError, ShapeError
from barenet.layers import Add, Concatenate, Dense, Maximum, Multiply, Subtract

L = bn.layers
RNG = np.random.default_rng(0)


def _residual(seed=0, dtype="float64"):
    x = bn.Input(shape=(5,), name="x")
    h = Dense(6, activation="tanh", name="h")(x)
    r = Dense(6, name="r")(h)
    s = Add(name="sum")([h, r])
    out = Dense(3, activation="softmax", name="out")(s)
    return bn.Model(x, out, seed=seed, dtype=dtype)


# --------------------------------------------------------------------- merge layers
MERGES = {
    "add": (lambda: Add(), 3), "subtract": (lambda: Subtract(), 2), "multiply": (lambda: Multiply(), 3),
    "average": (lambda: L.Average(), 3), "maximum": (lambda: Maximum(), 3),
    "concatenate-last": (lambda: Concatenate(), 2), "concatenate-axis1": (lambda: Concatenate(axis=1), 2),
}


def test_every_merge_layer_is_in_the_merge_table():
    merges = {name for name in L.__all__ if isinstance(getattr(L, name), type)
              and issubclass(getattr(L, name), L.Merge) and name != "Merge"}
    assert merges <= {type(make()).__name__ for make, _ in MERGES.values()}


@pytest.mark.parametrize("name", sorted(MERGES))
def test_merge_layers_pass_gradcheck_keep_nothing_and_round_trip(name):
    RNG = np.random.default_rng(100)
    make, n = MERGES[name]
    layer = make()
    announced = layer.dry_build([(3, 2)] * n, "float64")
    assert not layer.built
    layer.build([(3, 2)] * n, np.random.default_rng(0), "float64")
    assert announced == ({}, {}, layer.output_shape)
    xs = [RNG.standard_normal((4, 3, 2)) for _ in range(n)]
    before = dict(vars(layer))
    cache = L.Cache()
    y = layer.forward(xs, training=True, cache=cache)
    r = RNG.standard_normal(y.shape)
    grads = layer.backward(r, cache)
    assert vars(layer).keys() == before.keys() and all(vars(layer)[k] is before[k] for k in before)
    h = 1e-6
    for x, g in zip(xs, grads, strict=True):
        numeric = np.zeros_like(x)
        for idx in np.ndindex(*x.shape):
            keep = x[idx]
            x[idx] = keep + h
            up = float(np.sum(layer.forward(xs) * r))
            x[idx] = keep - h
            down = float(np.sum(layer.forward(xs) * r))
            x[idx] = keep
            numeric[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()


# --------------------------------------------------------------------- gradients
def test_a_residual_graph_passes_gradcheck_and_trains():
    RNG = np.random.default_rng(101)
    model = _residual()
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    X, y = RNG.standard_normal((40, 5)), RNG.integers(0, 3, 40)
    assert bn.gradcheck(model, X[:8], y[:8]).max_error < 1e-6
    history = model.fit(X, y, epochs=30, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.predict(X).shape == (40, 3)


def test_fan_out_shared_layers_and_merges_get_summed_gradients_by_finite_differences():
    RNG = np.random.default_rng(102)
    a, b = bn.Input(shape=(4,), name="a"), bn.Input(shape=(4,), name="b")
    shared = Dense(3, activation="tanh", name="shared")
    ha, hb = shared(a), shared(b)  # one layer, two calls: its gradient is the sum over both
    t = Dense(3, activation="sigmoid", name="t")(ha)
    merged = Concatenate()([Multiply()([ha, t]), Subtract()([hb, ha]), Maximum()([ha, hb])])
    out = Dense(2, name="out")(merged)
    model = bn.Model([a, b], out, seed=1, dtype="float64")
    model.compile(loss="mse", optimizer="sgd")
    X = [RNG.standard_normal((6, 4)), RNG.standard_normal((6, 4))]
    y = RNG.standard_normal((6, 2))
    assert bn.gradcheck(model, X, y).max_error < 1e-6
    g = model.compute_gradients(X, y)
    h = 1e-6
    for j in range(2):  # the input gradients, both inputs
        numeric = np.zeros_like(X[j])
        for idx in np.ndindex(*X[j].shape):
            up = [x.copy() for x in X]
            down = [x.copy() for x in X]
            up[j][idx] += h
            down[j][idx] -= h
            numeric[idx] = (model.compute_gradients(up, y).loss - model.compute_gradients(down, y).loss) / (2 * h)
        np.testing.assert_allclose(g.inputs[j], numeric, rtol=1e-6, atol=1e-9)


def test_a_model_called_as_a_layer_shares_its_weights():
    RNG = np.random.default_rng(103)
    inner_in = bn.Input(shape=(3,))
    inner = bn.Model(inner_in, Dense(4, activation="tanh", name="enc")(inner_in), name="encoder", seed=0,
                     dtype="float64")
    a, b = bn.Input(shape=(3,), name="a"), bn.Input(shape=(3,), name="b")
    out = Dense(1, activation="sigmoid", name="head")(Concatenate()([inner(a), inner(b)]))
    model = bn.Model([a, b], out, seed=0, dtype="float64")
    model.compile(loss="binary_crossentropy", optimizer="adam")
    assert "encoder.enc.kernel" in model.named_weights()
    X = [RNG.standard_normal((10, 3)), RNG.standard_normal((10, 3))]
    y = RNG.integers(0, 2, 10)
    assert bn.gradcheck(model, X, y).max_error < 1e-6
    before = inner.layers[0].params["kernel"].copy()
    model.fit(X, y, epochs=2, batch_size=5, verbose=0)
    assert not np.array_equal(inner.layers[0].params["kernel"], before)  # the same arrays are trained
    np.testing.assert_array_equal(model.predict(X), model.predict({"a": X[0], "b": X[1]}))


# --------------------------------------------------------------------- Sequential as a chain
def test_a_chain_model_trains_exactly_as_the_same_sequential():
    RNG = np.random.default_rng(104)
    X, y = RNG.standard_normal((32, 5)), RNG.integers(0, 3, 32)
    seq = bn.Sequential([Dense(6, activation="relu", input_dim=5), L.Dropout(0.2), Dense(3, activation="softmax")],
                        seed=3, dtype="float64")
    x = bn.Input(shape=(5,))
    out = Dense(3, activation="softmax")(L.Dropout(0.2)(Dense(6, activation="relu")(x)))
    graph = bn.Model(x, out, seed=3, dtype="float64")
    for model in (seq, graph):
        model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    for a, b in zip(seq.get_weights(), graph.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    h_seq = seq.fit(X, y, epochs=3, batch_size=8, verbose=0).history
    h_graph = graph.fit(X, y, epochs=3, batch_size=8, verbose=0).history
    assert h_seq == h_graph
    np.testing.assert_array_equal(seq.predict(X), graph.predict(X))


# --------------------------------------------------------------------- several outputs
def test_two_outputs_with_their_own_losses_weights_and_metrics():
    rng = np.random.default_rng(5)
    x = bn.Input(shape=(4,), name="x")
    h = Dense(8, activation="tanh")(x)  # smooth: finite differences see no kink
    cls = Dense(3, activation="softmax", name="class")(h)
    box = Dense(2, name="box")(h)
    model = bn.Model(x, [cls, box], seed=0, dtype="float64")
    model.compile(loss={"class": "categorical_crossentropy", "box": "mse"}, loss_weights={"class": 1.0, "box": 0.5},
                  optimizer="adam", metrics={"class": ["accuracy"], "box": ["mae"]})
    X = rng.standard_normal((24, 4))
    targets = {"class": rng.integers(0, 3, 24), "box": rng.standard_normal((24, 2))}
    assert bn.gradcheck(model, X, [targets["class"], targets["box"]]).max_error < 1e-6
    history = model.fit(X, targets, epochs=2, batch_size=8, verbose=0).history
    assert {"loss", "class_loss", "box_loss", "class_accuracy", "box_mae"} <= set(history)
    scores = model.evaluate(X, [targets["class"], targets["box"]])
    assert scores["loss"] == pytest.approx(scores["class_loss"] + 0.5 * scores["box_loss"], rel=1e-9)
    p_cls, p_box = model.predict(X)
    assert p_cls.shape == (24, 3) and p_box.shape == (24, 2)
    np.testing.assert_allclose(p_cls.sum(axis=1), 1.0)


# --------------------------------------------------------------------- description and config
def test_summary_shows_what_each_call_is_connected_to():
    text = _residual().summary(print_fn=None)
    assert "Connected to" in text
    assert [line.split()[-2:] for line in text.splitlines() if line.startswith("sum ")] == [["h,", "r"]]
    assert "Trainable params: " in text


def test_config_round_trip_rebuilds_the_same_graph():
    RNG = np.random.default_rng(105)
    model = _residual(seed=4)
    again = bn.Model.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    again.set_weights(model.get_weights())
    X = RNG.standard_normal((7, 5))
    np.testing.assert_array_equal(again.predict(X), model.predict(X))


# --------------------------------------------------------------------- errors
def test_graph_errors_name_what_is_wrong():
    x, other = bn.Input(shape=(3,), name="x"), bn.Input(shape=(3,), name="other")
    y = Dense(2)(other)
    with pytest.raises(ConfigError, match=r"depend on input 'other', which is not among the Model's inputs"):
        bn.Model(x, y)
    with pytest.raises(ConfigError, match=r"Model inputs \['x'\] are not used by any output"):
        bn.Model([x, other], y)
    with pytest.raises(ShapeError, match=r"Add\(\) needs inputs of one shape; got \(None, 3\) and \(None, 2\)"):
        Add()([x, y])
    with pytest.raises(ShapeError, match=r"Concatenate.*equal but along axis -1; got \(None, 3, 2\) and "
                                         r"\(None, 4, 2\)"):
        Concatenate()([bn.Input(shape=(3, 2)), bn.Input(shape=(4, 2))])
    shared = Dense(2)
    shared(x)
    shared_model = bn.Model(x, shared(x))
    assert shared_model.built
    with pytest.raises(ShapeError, match=r"built for inputs \(3,\), called on \(5,\); a shared layer takes inputs "
                                         r"of one shape"):
        shared(bn.Input(shape=(5,)))
    with pytest.raises(ConfigError, match=r"two layers of this model are named 'd'"):
        bn.Model(x, Dense(2, name="d")(Dense(2, name="d")(x)))
    with pytest.raises(ShapeError, match=r"Subtract\(\) takes exactly 2 inputs, got 3"):
        Subtract()([x, x, x])
    inner_in = bn.Input(shape=(3,))
    inner = bn.Model(inner_in, Dense(3, name="d")(inner_in), name="p")
    with pytest.raises(ConfigError, match=r"two weights of this model would be named 'p.d.kernel'"):
        bn.Model(x, Dense(3, name="p.d")(inner(x)))


def test_data_for_several_inputs_is_checked_by_name():
    a, b = bn.Input(shape=(2,), name="a"), bn.Input(shape=(3,), name="b")
    model = bn.Model([a, b], Dense(1)(Concatenate()([a, b])))
    with pytest.raises(DataError, match=r"X must be a list of 2 arrays \(inputs \['a', 'b'\]\)"):
        model.predict(np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"X keys must be the input names \['a', 'b'\]; got \['a', 'c'\]"):
        model.predict({"a": np.zeros((4, 2)), "c": np.zeros((4, 3))})
    with pytest.raises(ShapeError, match=r"X\['b'\] has shape \(4, 2\)"):
        model.predict([np.zeros((4, 2)), np.zeros((4, 2))])


# --------------------------------------------------------------------- PyTorch, float64
def test_graphs_match_pytorch_in_float64():
    RNG = np.random.default_rng(106)
    torch = pytest.importorskip("torch")
    a_in, b_in = bn.Input(shape=(4,), name="a"), bn.Input(shape=(4,), name="b")
    shared = Dense(5, activation="tanh", name="shared")
    ha, hb = shared(a_in), shared(b_in)
    res = Add()([ha, Dense(5, name="r")(ha)])
    out = Dense(2, name="out")(Concatenate()([res, Multiply()([ha, hb])]))
    model = bn.Model([a_in, b_in], out, seed=2, dtype="float64")
    model.compile(loss="mse", optimizer="sgd")
    X = [RNG.standard_normal((6, 4)), RNG.standard_normal((6, 4))]
    y = RNG.standard_normal((6, 2))
    got = model.compute_gradients(X, y)

    def linear(layer):
        lin = torch.nn.Linear(*layer.params["kernel"].shape).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer.params["kernel"].T.copy()))
            lin.bias.copy_(torch.from_numpy(layer.params["bias"]))
        return lin

    layer = {layer.name: layer for layer in model.layers}
    t_shared, t_r, t_out = (linear(layer[n]) for n in ("shared", "r", "out"))
    ta, tb = (torch.from_numpy(x).requires_grad_(True) for x in X)
    tha, thb = torch.tanh(t_shared(ta)), torch.tanh(t_shared(tb))
    tout = t_out(torch.cat([tha + t_r(tha), tha * thb], dim=1))
    loss = ((tout - torch.from_numpy(y)) ** 2).mean()
    loss.backward()
    assert got.loss == pytest.approx(loss.item(), rel=1e-12)
    for name, lin in (("shared", t_shared), ("r", t_r), ("out", t_out)):
        i = model.layers.index(layer[name])
        np.testing.assert_allclose(got.parameters[f"layers.{i}.kernel"], lin.weight.grad.numpy().T, rtol=1e-10,
                                   atol=1e-14)
        np.testing.assert_allclose(got.parameters[f"layers.{i}.bias"], lin.bias.grad.numpy(), rtol=1e-10,
                                   atol=1e-14)
    np.testing.assert_allclose(got.inputs[0], ta.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.inputs[1], tb.grad.numpy(), rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------- saving and loading
def test_graph_models_save_and_load_with_their_weights_and_training_state(tmp_path):
    RNG = np.random.default_rng(107)
    inner_in = bn.Input(shape=(3,))
    inner = bn.Model(inner_in, Dense(4, activation="tanh", name="enc")(inner_in), name="encoder", seed=0)
    a, b = bn.Input(shape=(3,), name="a"), bn.Input(shape=(3,), name="b")
    ha, hb = inner(a), inner(b)
    cls = Dense(2, activation="softmax", name="cls")(Concatenate()([ha, hb]))
    reg = Dense(1, name="reg")(Add()([ha, hb]))
    model = bn.Model([a, b], [cls, reg], seed=0)
    model.compile(loss=["categorical_crossentropy", "mse"], loss_weights=[1.0, 0.25], optimizer="adam",
                  metrics=[["accuracy"], []])
    X = [RNG.standard_normal((16, 3)), RNG.standard_normal((16, 3))]
    y = [RNG.integers(0, 2, 16), RNG.standard_normal(16)]
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    bn.save(model, tmp_path / "graph.barenet")
    loaded = bn.load(tmp_path / "graph.barenet")
    assert isinstance(loaded, bn.Model) and loaded.get_config() == model.get_config()
    for p, q in zip(model.predict(X), loaded.predict(X), strict=True):
        np.testing.assert_array_equal(p, q)
    # training resumes identically: the optimizer state and the generator were saved too
    h1 = model.fit(X, y, epochs=1, batch_size=8, verbose=0).history
    h2 = loaded.fit(X, y, epochs=1, batch_size=8, verbose=0).history
    assert h1 == h2


def test_models_nested_three_deep_load_without_a_compile_section(tmp_path):
    RNG = np.random.default_rng(108)
    x = bn.Input(shape=(64,))
    model = bn.Model(x, Dense(64, name="d")(x), name="m0", seed=0)
    for level in range(1, 4):  # the file's arrays are the one Dense's, whatever the depth
        x = bn.Input(shape=(64,))
        model = bn.Model(x, model(x), name=f"m{level}", seed=0)
    bn.save(model, tmp_path / "nested.barenet")
    loaded = bn.load(tmp_path / "nested.barenet")
    X = RNG.standard_normal((3, 64))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_weights_named_twice_in_a_nested_model_are_refused_before_anything_is_built(tmp_path):
    import json
    import zipfile

    p_in, n_in, x = bn.Input(shape=(3,)), bn.Input(shape=(3,)), bn.Input(shape=(3,))
    p = bn.Model(p_in, Dense(3, name="d")(p_in), name="p")
    n = bn.Model(n_in, Dense(3, name="q")(p(n_in)), name="n")
    bn.save(bn.Model(x, n(x)), tmp_path / "good.barenet")
    with zipfile.ZipFile(tmp_path / "good.barenet") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(members["barenet.json"])
    document["model"]["layers"][0]["config"]["layers"][1]["config"]["name"] = "p.d"  # "q" beside "p", holding "d"
    members["barenet.json"] = json.dumps(document).encode()
    members = {name.replace(".q.", ".p.d."): data for name, data in members.items()}  # one member per weight
    with zipfile.ZipFile(tmp_path / "bad.barenet", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(bn.errors.ModelFileError, match=r"two weights of model.layers\[0\] would be named "
                                                      r"'p.d.kernel'"):
        bn.load(tmp_path / "bad.barenet")


@pytest.mark.parametrize("change, message", [
    (lambda c: c["nodes"][0].update(inputs=[["node", 0]]), r"reads node 0, which does not come before it"),
    (lambda c: c["nodes"][1].update(inputs=[["node", 5]]), r"reads node 5, which does not come before it"),
    (lambda c: c["nodes"][0].update(layer=9), r"calls layer 9; there are"),
    (lambda c: c["layers"][1]["config"].update(name="h"), r"needs a name of its own, got 'h'"),
    (lambda c: c["nodes"].extend([{"layer": 3, "inputs": [["node", 3]], "single": True}] * 20_000),
     r"more than 10000 nodes \(inputs and layer calls, nested models' counted\)"),
    (lambda c: c["layers"].extend([{"class": "ReLU", "config": {"name": f"r{i}"}} for i in range(10)]),
     r"has 14 layers but 4 calls; every layer is called at least once"),
    (lambda c: c["layers"].extend([{"class": "ReLU", "config": {"name": f"r{i}"}} for i in range(10**5)]),
     r"the graph has 100004 layers, more than the 10000 nodes barenet loads could call"),
    (lambda c: c.update(outputs=[["node", 3]] * 40_000, single_output=False),
     r"calls and outputs read more than 40000 tensors"),
    (lambda c: c["inputs"][0].update(shape=[4]),
     r"layers.0.kernel.npy has shape \(5, 6\); the saved architecture needs \(4, 6\)"),
    (lambda c: c["nodes"].append({"layer": 3, "inputs": [["node", 2]], "single": True}),
     r"nodes \[4\] are needed by no output"),
    (lambda c: c["inputs"].append({"name": "spare", "shape": [2], "integer": False}),
     r"inputs \[1\] are read by no layer"),
    (lambda c: (c["layers"].insert(0, c["layers"].pop(1)), c["nodes"][0].update(layer=1),
                c["nodes"][1].update(layer=0)), r"calls its layers in the order \[1, 0, 2, 3\]"),
])
def test_a_hostile_graph_description_is_refused_before_anything_is_built(tmp_path, change, message):
    import json
    import zipfile

    bn.save(_residual(), tmp_path / "good.barenet")
    with zipfile.ZipFile(tmp_path / "good.barenet") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(members["barenet.json"])
    change(document["model"])
    members["barenet.json"] = json.dumps(document).encode()
    with zipfile.ZipFile(tmp_path / "bad.barenet", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(bn.errors.ModelFileError, match=message):
        bn.load(tmp_path / "bad.barenet")


# --------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("opset", [13, 17, None])
def test_graph_models_export_to_onnx_and_match_onnxruntime(tmp_path, opset):
    RNG = np.random.default_rng(109)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    inner_in = bn.Input(shape=(6, 6, 2))
    inner = bn.Model(inner_in, L.Conv2D(3, 3, padding="same", activation="relu", name="conv")(inner_in),
                     name="block", seed=0)
    a, b = bn.Input(shape=(6, 6, 2), name="a"), bn.Input(shape=(4,), name="b")
    ha = inner(a)
    res = Add()([ha, L.Conv2D(3, 1, name="proj")(a)])
    flat = L.Flatten()(L.MaxPooling2D(2)(Maximum()([res, ha])))
    hb = Dense(5, activation="tanh", name="hb")(b)
    joined = Concatenate()([flat, hb, Multiply()([hb, hb])])
    cls = Dense(3, activation="softmax", name="cls")(joined)
    reg = Dense(1, name="reg")(L.Average()([hb, Subtract()([hb, hb])]))
    model = bn.Model([a, b], [cls, reg], seed=0)
    bn.export_onnx(model, tmp_path / "graph.onnx", opset=opset)
    X = [RNG.standard_normal((5, 6, 6, 2)).astype(np.float32), RNG.standard_normal((5, 4)).astype(np.float32)]
    session = ort.InferenceSession(str(tmp_path / "graph.onnx"))
    assert [i.name for i in session.get_inputs()] == ["a", "b"]
    assert [o.name for o in session.get_outputs()] == ["cls", "reg"]
    got = session.run(None, {"a": X[0], "b": X[1]})
    for theirs, ours in zip(got, model.predict(X), strict=True):
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)


def test_per_output_sample_weights_and_class_weight_for_one_output_only():
    RNG = np.random.default_rng(110)
    x = bn.Input(shape=(4,), name="x")
    h = Dense(5, activation="tanh")(x)
    a, b = Dense(1, name="a")(h), Dense(1, name="b")(h)
    model = bn.Model(x, [a, b], seed=0, dtype="float64")
    model.compile(loss="mse", optimizer="sgd")
    X, ya, yb = RNG.standard_normal((10, 4)), RNG.standard_normal(10), RNG.standard_normal(10)
    wa = np.zeros(10)
    wa[:5] = 2.0
    weighted = model.evaluate(X, [ya, yb], sample_weight={"a": wa, "b": None})
    plain_a = model.evaluate(X[:5], [ya[:5], yb[:5]])["a_loss"]
    scores = model.compute_gradients(X, [ya, yb], sample_weight=[wa, None]).loss
    assert scores == pytest.approx(weighted["loss"], rel=1e-12)
    pred_a, pred_b = model.predict(X)
    expected = np.sum(wa * (pred_a[:, 0] - ya) ** 2) / 10 + np.mean((pred_b[:, 0] - yb) ** 2)
    assert weighted["loss"] == pytest.approx(expected, rel=1e-12)
    assert plain_a == pytest.approx(np.mean((pred_a[:5, 0] - ya[:5]) ** 2), rel=1e-12)
    with pytest.raises(ConfigError, match=r"class_weight applies to a model with one output"):
        model.fit(X, [ya, yb], class_weight={0: 1.0}, verbose=0)
