"""MultiHeadAttention: Keras's call signature and weight layout, checked against PyTorch's
``nn.MultiheadAttention`` in float64 (outputs, every weight's gradient, the inputs' gradients) and by finite
differences, in graphs (self- and cross-attention, a mask given as a model input, causal masking)."""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, ShapeError

L = bn.layers
RNG = np.random.default_rng(0)
B, T, S, E, H = 3, 5, 4, 8, 2


def _model(cross: bool, masked: bool, causal: bool = False, dtype="float64", **kwargs):
    x = bn.Input(shape=(T, E), name="x")
    inputs = [x]
    value = x
    if cross:
        value = bn.Input(shape=(S, E), name="memory")
        inputs.append(value)
    mask = None
    if masked:
        mask = bn.Input(shape=(T, S if cross else T), name="mask")
        inputs.append(mask)
    y = L.MultiHeadAttention(H, E // H, name="mha", **kwargs)(x, value, attention_mask=mask, use_causal_mask=causal)
    model = bn.Model(inputs if len(inputs) > 1 else x, y, seed=0, dtype=dtype)
    model.compile(loss="mse", optimizer="sgd")
    return model


def _data(cross: bool, masked: bool):
    RNG = np.random.default_rng(200)
    X = [RNG.standard_normal((B, T, E))]
    if cross:
        X.append(RNG.standard_normal((B, S, E)))
    if masked:
        mask = RNG.random((B, T, S if cross else T)) < 0.7
        mask[:, :, 0] = True  # every query attends to something (a fully masked one: see its own test)
        X.append(mask.astype(np.float64))
    return X, RNG.standard_normal((B, T, E))


CASES = [(False, False, False), (True, False, False), (False, True, False), (True, True, False),
         (False, False, True), (False, True, True)]


@pytest.mark.parametrize("cross, masked, causal", CASES)
def test_matches_pytorch_multihead_attention_in_float64(cross, masked, causal):
    torch = pytest.importorskip("torch")
    model = _model(cross, masked, causal)
    X, Y = _data(cross, masked)
    got = model.compute_gradients(X if len(X) > 1 else X[0], Y)
    p = model.layers[0].params
    t = torch.nn.MultiheadAttention(E, H, batch_first=True, dtype=torch.float64)
    with torch.no_grad():
        t.in_proj_weight.copy_(torch.from_numpy(np.concatenate(
            [p[f"{n}_kernel"].reshape(E, E).T for n in ("query", "key", "value")])))
        t.in_proj_bias.copy_(torch.from_numpy(np.concatenate([p[f"{n}_bias"].reshape(-1)
                                                              for n in ("query", "key", "value")])))
        t.out_proj.weight.copy_(torch.from_numpy(p["output_kernel"].reshape(E, E).T))
        t.out_proj.bias.copy_(torch.from_numpy(p["output_bias"]))
    tx = [torch.from_numpy(a).requires_grad_(True) for a in X[:2 if cross else 1]]
    memory = tx[1] if cross else tx[0]
    allowed = np.ones((B, T, S if cross else T), bool)
    if masked:
        allowed &= X[-1] != 0
    if causal:
        allowed &= np.tri(T, S if cross else T, dtype=bool)
    attn_mask = torch.from_numpy(np.repeat(np.where(allowed, 0.0, -np.inf), H, axis=0))
    out, _ = t(tx[0], memory, memory, attn_mask=attn_mask, need_weights=False)
    loss = ((out - torch.from_numpy(Y)) ** 2).mean()
    loss.backward()
    assert got.loss == pytest.approx(loss.item(), rel=1e-12)
    inputs = got.inputs if isinstance(got.inputs, list) else [got.inputs]
    for ours, theirs in zip(inputs, tx, strict=False):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-13)
    w = t.in_proj_weight.grad.numpy()
    for j, n in enumerate(("query", "key", "value")):
        np.testing.assert_allclose(got.parameters[f"layers.0.{n}_kernel"].reshape(E, E).T, w[j * E:(j + 1) * E],
                                   rtol=1e-10, atol=1e-13, err_msg=n)
    np.testing.assert_allclose(got.parameters["layers.0.output_kernel"].reshape(E, E).T,
                               t.out_proj.weight.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got.parameters["layers.0.output_bias"], t.out_proj.bias.grad.numpy(), rtol=1e-10,
                               atol=1e-13)


@pytest.mark.parametrize("cross, masked, causal", CASES[:4])
def test_gradients_match_finite_differences(cross, masked, causal):
    RNG = np.random.default_rng(201)
    model = _model(cross, masked, causal, value_dim=3, output_shape=5)
    X, _ = _data(cross, masked)
    X = X if len(X) > 1 else X[0]
    Y = RNG.standard_normal((B, T, 5))
    errors = bn.gradcheck(model, X, Y).errors
    # The key bias adds the same amount to every score of a query, which the softmax cancels: its gradient
    # is exactly zero, and finite differences see only rounding noise there.
    # (the key kernel's gradient is small where the softmax saturates, so its finite differences carry ~1e-6)
    assert max(e for k, e in errors.items() if not k.endswith("key_bias")) < 1e-5, errors
    assert np.abs(model.compute_gradients(X, Y).parameters["layers.0.key_bias"]).max() < 1e-14


def test_keras_weight_layout_names_and_eager_scores():
    model = _model(True, False, value_dim=3, output_shape=6)
    shapes = {k: v.shape for k, v in model.named_weights().items()}
    assert shapes == {"mha.query_kernel": (E, H, E // H), "mha.query_bias": (H, E // H),
                      "mha.key_kernel": (E, H, E // H), "mha.key_bias": (H, E // H),
                      "mha.value_kernel": (E, H, 3), "mha.value_bias": (H, 3),
                      "mha.output_kernel": (H, 3, 6), "mha.output_bias": (6,)}
    layer = model.layers[0]
    X, _ = _data(True, False)
    y, scores = layer(X[0], X[1], return_attention_scores=True)
    assert y.shape == (B, T, 6) and scores.shape == (B, H, T, S)
    np.testing.assert_allclose(scores.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(y, model.predict(X))


def test_dropout_on_the_weights_in_training_only_and_config_round_trip(tmp_path):
    model = _model(False, False, dropout=0.5, dtype="float32")
    X, Y = _data(False, False)
    np.testing.assert_array_equal(model.predict(X[0]), model.predict(X[0]))
    before = model.get_weights()
    model.fit(X[0], Y, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    bn.save(model, tmp_path / "mha.barenet")
    loaded = bn.load(tmp_path / "mha.barenet")
    np.testing.assert_array_equal(loaded.predict(X[0]), model.predict(X[0]))
    assert loaded.layers[0].get_config() == model.layers[0].get_config()


def test_a_query_with_no_allowed_key_gets_zero_weights_and_the_output_bias():
    model = _model(True, True)
    X, Y = _data(True, True)
    X[-1][0, 1] = 0.0
    layer = model.layers[0]
    y, scores = layer(X[0], X[1], attention_mask=X[2], return_attention_scores=True)
    assert np.all(scores[0, :, 1] == 0) and np.isfinite(y).all()
    np.testing.assert_array_equal(y[0, 1], layer.params["output_bias"])
    assert all(np.isfinite(g).all() for g in model.compute_gradients(X, Y).parameters.values())


def test_bad_calls_say_what_is_expected():
    x = bn.Input(shape=(T, E))
    with pytest.raises(ConfigError, match=r"for self-attention pass the same tensor twice: layer\(x, x\)"):
        L.MultiHeadAttention(2, 4)(x)
    with pytest.raises(ShapeError, match=r"expects attention_mask of shape \(batch, 5, 5\), got \(None, 5, 4\)"):
        L.MultiHeadAttention(2, 4)(x, x, attention_mask=bn.Input(shape=(T, S)))
    with pytest.raises(ConfigError, match=r"return_attention_scores is available on arrays"):
        L.MultiHeadAttention(2, 4)(x, x, return_attention_scores=True)
    with pytest.raises(ConfigError, match=r"num_heads must be a positive integer, got 0"):
        L.MultiHeadAttention(0, 4)


@pytest.mark.parametrize("opset", [13, 17, None])
@pytest.mark.parametrize("cross, masked, causal", CASES)
def test_onnx_export_matches_onnxruntime(tmp_path, cross, masked, causal, opset):
    """At opset 13 and 17 the mask's ReduceMax takes its axes as an attribute, from 18 as an input."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = _model(cross, masked, causal, dtype="float32", value_dim=3, output_shape=6)
    X, _ = _data(cross, masked)
    if masked:
        X[-1][0, 1] = 0.0  # a query with no allowed key
    X = [a.astype(np.float32) for a in X]
    bn.export_onnx(model, tmp_path / "mha.onnx", opset=opset)
    session = ort.InferenceSession(str(tmp_path / "mha.onnx"))
    got = session.run(None, dict(zip(model.input_names, X, strict=True)))[0]
    np.testing.assert_allclose(got, model.predict(X if len(X) > 1 else X[0]), rtol=1e-5, atol=1e-6)


def test_projections_of_one_array_in_one_product_equal_separate_arrays():
    """Self-attention projects its one input three ways in one product, ``layer(q, v)`` its value twice: the
    outputs, every weight's gradient and each input's gradient equal those of equal but distinct arrays."""
    rng = np.random.default_rng(5)
    layer = L.MultiHeadAttention(H, 3, value_dim=5, output_shape=6)
    layer.build([(T, E), (T, E), (T, E)], rng, "float64")
    x = rng.standard_normal((B, T, E))
    grad = rng.standard_normal((B, T, 6))

    def run(*xs):
        cache = bn.layers.base.Cache()
        y = layer.forward(list(xs), cache=cache)
        dxs = layer.backward(grad, cache)
        return y, dxs, {name: g.copy() for name, g in layer.grads.items()}

    for shared, separate in (((x, x, x), (x, x.copy(), x.copy())), ((x, x.copy()), (x, x.copy(), x.copy()))):
        shared = list(shared) + [shared[1]] * (3 - len(shared))
        y1, d1, g1 = run(*shared)
        y2, d2, g2 = run(*separate)
        np.testing.assert_allclose(y1, y2, rtol=1e-13, atol=1e-14)
        assert len(d1) == len(d2) == 3 and all(d is not None for d in d1)
        for a, b in zip(d1, d2, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
        for name in g2:
            np.testing.assert_allclose(g1[name], g2[name], rtol=1e-12, atol=1e-13)


def test_inputs_a_graph_adds_up_get_one_summed_gradient():
    """With ``cache.shared_inputs`` (a graph calling ``layer(x, x)``) the gradients of the positions holding
    one tensor come back as their sum at the first position (one product), ``None`` at the others; in a
    model the input's gradient is the same as with per-position gradients."""
    rng = np.random.default_rng(6)
    layer = L.MultiHeadAttention(H, 3, value_dim=5, output_shape=6)
    layer.build([(T, E), (T, E), (T, E)], rng, "float64")
    x, grad = rng.standard_normal((B, T, E)), rng.standard_normal((B, T, 6))
    for shared_inputs, xs in (((0, 0, 0), [x, x, x]), ((0, 1, 1), [x, x.copy() + 1, None])):
        xs[2] = xs[1] if xs[2] is None else xs[2]
        per_input = bn.layers.base.Cache()
        layer.forward(xs, cache=per_input)
        expected = layer.backward(grad, per_input)
        summed = bn.layers.base.Cache()
        summed.shared_inputs = shared_inputs
        layer.forward(xs, cache=summed)
        got = layer.backward(grad, summed)
        for first in sorted(set(shared_inputs)):
            together = [p for p, f in enumerate(shared_inputs) if f == first]
            np.testing.assert_allclose(got[first], sum(expected[p] for p in together), rtol=1e-12, atol=1e-13)
            assert all(got[p] is None for p in together[1:])

    inputs = bn.Input(shape=(T, E))
    model = bn.Model(inputs, L.MultiHeadAttention(H, 3, name="attention")(inputs, inputs), seed=1, dtype="float64")
    model.compile(loss="mse", optimizer="sgd")
    target = rng.standard_normal((B, T, E))
    got = model.compute_gradients(x, target)
    reference = model.layers[-1]
    cache = bn.layers.base.Cache()
    y = reference.forward([x, x, x], cache=cache)
    dy = 2 * (y - target) / y.size
    np.testing.assert_allclose(got.inputs, sum(reference.backward(dy, cache)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("use_bias", [True, False])
def test_threads_give_the_one_thread_results(use_bias, monkeypatch):
    """Split by blocks of the batch (projections with the head moves, the output product, the gradients'
    moves with their bias sums and the input products): the same results as on one thread."""
    monkeypatch.setattr(bn.threads, "MIN_WORK", 1)
    rng = np.random.default_rng(7)
    layer = L.MultiHeadAttention(H, 3, value_dim=5, output_shape=6, use_bias=use_bias)
    layer.build([(T, E), (S, E), (S, E)], rng, "float64")
    if use_bias:
        for name in layer.params:
            if name.endswith("bias"):
                layer.params[name][...] = rng.standard_normal(layer.params[name].shape)
    q, kv = rng.standard_normal((6, T, E)), rng.standard_normal((6, S, E))
    grad = rng.standard_normal((6, T, 6))

    def run():
        cache = bn.layers.base.Cache()
        y = layer.forward([q, kv, kv], cache=cache)
        return [y, *layer.backward(grad, cache), *(g.copy() for g in layer.grads.values())]

    previous = bn.threads.get_num_threads()
    try:
        one = run()
        bn.threads.set_num_threads(3)
        with bn.threads.engine():
            assert len(bn.threads.parts(6, 100)) == 3
            many = run()
    finally:
        bn.threads.set_num_threads(previous)
    assert len(one) == len(many)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-13, atol=1e-14)
