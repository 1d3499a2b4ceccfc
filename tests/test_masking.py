"""Padding masks from ``Embedding(mask_zero=True)`` carried through a graph and a stack, as Keras 3 carries them.

Keras 3 (torch backend, float64) is the reference: the same networks built in both frameworks with copied weights
(barenet's layers use Keras's weight layouts and ``get_weights`` order), on token ids padded with zeros. The
classifier is self-attention, a residual sum and layer normalization, then a masked mean over the steps; the
sequence-to-sequence model is causal self-attention over the target, cross-attention to the source, and a
per-step softmax whose loss counts only the target's real steps. Keras's outputs at padded query steps are not
compared: there a query attends to no key, and Keras's two attention paths give such rows different values
(barenet gives the output bias); no masked layer or masked loss reads them.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError
from barenet.gradcheck import numerical_gradient

# Keras's torch backend converts its tensors with np.array(x, copy=False), which NumPy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")

L = bn.layers
VOCAB, T, S, D, HEADS, CLASSES, B = 9, 6, 5, 8, 2, 3, 5


def _ids(rng: np.random.Generator, length: int) -> np.ndarray:
    """Ids ``(B, length)`` in ``1..VOCAB-1``, padded with zeros at the end to lengths from 1 to ``length``."""
    ids = rng.integers(1, VOCAB, (B, length))
    lengths = np.r_[1, length, rng.integers(1, length + 1, B - 2)]
    ids[np.arange(length) >= lengths[:, None]] = 0
    return ids


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    src, tgt = _ids(rng, S), _ids(rng, T)
    return src, tgt, rng.integers(0, CLASSES, B), rng.integers(0, CLASSES, (B, T))


# ----------------------------------------------------------------- the two networks, written once for both
def _classifier(lib, dtype=None, t=T, s=S):
    """ids -> Embedding(mask_zero) -> self-attention -> Add -> LayerNormalization -> masked mean -> softmax."""
    kw = {} if dtype is None else {"dtype": dtype}
    ids = lib.Input((t,), dtype="int64", name="ids")
    x = lib.layers.Embedding(VOCAB, D, mask_zero=True, name="embed")(ids)
    a = lib.layers.MultiHeadAttention(HEADS, D // HEADS, name="attend")(x, x)
    h = lib.layers.LayerNormalization(name="norm")(lib.layers.Add(name="residual")([x, a]))
    out = lib.layers.Dense(CLASSES, activation="softmax", name="classify")(lib.layers.GlobalAveragePooling1D(
        name="pool")(h))
    return lib.Model(ids, out, **kw)


def _seq2seq(lib, dtype=None, t=T, s=S):
    """Causal self-attention over the target, cross-attention to the source, a softmax per target step."""
    kw = {} if dtype is None else {"dtype": dtype}
    src, tgt = lib.Input((s,), dtype="int64", name="src"), lib.Input((t,), dtype="int64", name="tgt")
    memory = lib.layers.Embedding(VOCAB, D, mask_zero=True, name="embed_src")(src)
    x = lib.layers.Embedding(VOCAB, D, mask_zero=True, name="embed_tgt")(tgt)
    x = lib.layers.MultiHeadAttention(HEADS, D // HEADS, name="self_attend")(x, x, use_causal_mask=True)
    x = lib.layers.MultiHeadAttention(HEADS, 3, value_dim=2, name="cross_attend")(x, memory)
    out = lib.layers.Dense(CLASSES, activation="softmax", name="predict")(lib.layers.Dense(D, activation="relu",
                                                                                          name="hidden")(x))
    return lib.Model([src, tgt], out, **kw)


def _ours(build, seed=1):
    """barenet's model, float64, with weights large enough for the attention's gradients to be far from zero
    (the default initial embeddings, within 0.05, leave them near 1e-8) and small enough that no probability of
    a label comes near Keras's clipping at 1e-7 (barenet's loss is computed from the logits, unclipped)."""
    model = build(bn, dtype="float64")
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(w.shape) * (0.4 if w.ndim > 1 else 0.3) for w in model.get_weights()])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    return model


# ----------------------------------------------------------------- Keras 3 as the reference
@pytest.fixture
def keras(monkeypatch):
    """Keras 3 on torch in float64 throughout (see tests/test_keras_reference.py for the dtype table)."""
    pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", minversion="3")
    if keras.backend.backend() != "torch":
        pytest.skip("the Keras reference runs on Keras's torch backend")
    dtypes = pytest.importorskip("keras.src.backend.common.dtypes")
    if "float64" not in getattr(dtypes, "BIT64_TO_BIT32_DTYPE", {}):
        pytest.skip("this Keras promotes float64 in another way; the float64 comparison needs updating")
    monkeypatch.setitem(dtypes.BIT64_TO_BIT32_DTYPE, "float64", "float64")
    before, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")  # the global policy, fixed at Keras's first layer in the process
    yield keras
    keras.config.set_floatx(before)
    keras.config.set_dtype_policy(policy)


def _keras_twin(keras, build, ours):
    """The Keras model of ``build`` with ``ours``'s weights, layer by layer (by name)."""
    model = build(keras)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    for layer in ours.layers:
        model.get_layer(layer.name).set_weights(layer.get_weights())
    return model


def _keras_loss_and_gradients(keras, model, xs, y):
    """Keras's predictions, loss (the output's mask weighting it) and every trainable weight's gradient, by
    name ``"<layer>.<index in the layer's weights>"``."""
    import torch

    tensors = [torch.from_numpy(x) for x in xs]
    y_pred = model(tensors if len(tensors) > 1 else tensors[0], training=False)
    loss = model.compute_loss(x=tensors, y=torch.from_numpy(y), y_pred=y_pred)
    loss.backward()
    grads = {f"{layer.name}.{i}": w.value.grad.numpy() for layer in model.layers
             for i, w in enumerate(layer.trainable_weights)}
    return y_pred.detach().numpy(), float(loss.detach()), grads


def _our_gradients(model, xs, y):
    got = model.compute_gradients(xs if len(xs) > 1 else xs[0], y, training=False)
    by_layer = {}
    for k, layer in enumerate(model.layers):
        for i, name in enumerate(layer.params):
            by_layer[f"{layer.name}.{i}"] = got.parameters[f"layers.{k}.{name}"]
    return got.loss, by_layer


@pytest.mark.parametrize("build, seq", [(_classifier, False), (_seq2seq, True)], ids=["classifier", "seq2seq"])
def test_predictions_loss_and_every_gradient_match_keras(keras, build, seq):
    src, tgt, y_class, y_steps = _data()
    xs, y = ([src, tgt], y_steps) if seq else ([tgt], y_class)
    ours = _ours(build)
    theirs = _keras_twin(keras, build, ours)
    pred, loss, grads = _keras_loss_and_gradients(keras, theirs, xs, y)
    got = ours.predict(xs if seq else xs[0])
    real = tgt != 0 if seq else np.ones(B, bool)
    np.testing.assert_allclose(got[real], pred[real], rtol=1e-10, atol=1e-13)
    assert np.take_along_axis(got, y[..., None], axis=-1)[real].min() > 1e-4  # far from Keras's clipping
    our_loss, our_grads = _our_gradients(ours, xs, y)
    assert our_loss == pytest.approx(loss, rel=1e-11)
    assert sorted(our_grads) == sorted(grads)
    scale = max(np.abs(g).max() for g in grads.values())  # the key bias's gradient is 0 up to rounding
    for key, g in grads.items():
        np.testing.assert_allclose(our_grads[key], g, rtol=1e-10, atol=1e-13 * scale, err_msg=key)


def _stack(lib, dtype=None):
    """A Sequential model with a per-step output: the mask reaches the loss through a stack."""
    kw = {} if dtype is None else {"dtype": dtype}
    first = [lib.Input((T,), dtype="int64")] if lib is not bn else []
    embed = (lib.layers.Embedding(VOCAB, D, mask_zero=True, name="embed") if lib is not bn else
             lib.layers.Embedding(VOCAB, D, mask_zero=True, input_length=T, name="embed"))
    return lib.Sequential([*first, embed, lib.layers.Dense(D, activation="tanh", name="hidden"),
                           lib.layers.LayerNormalization(name="norm"), lib.layers.Dropout(0.25, name="drop"),
                           lib.layers.Dense(CLASSES, activation="softmax", name="predict")], **kw)


def test_a_stack_weighs_its_loss_and_gradients_by_the_mask_as_keras(keras):
    _, tgt, _, y = _data(2)
    ours = _ours(_stack)
    theirs = _keras_twin(keras, _stack, ours)
    pred, loss, grads = _keras_loss_and_gradients(keras, theirs, [tgt], y)
    np.testing.assert_allclose(ours.predict(tgt), pred, rtol=1e-10, atol=1e-13)  # no attention: every step
    our_loss, our_grads = _our_gradients(ours, [tgt], y)
    assert our_loss == pytest.approx(loss, rel=1e-11)
    for key, g in grads.items():
        np.testing.assert_allclose(our_grads[key], g, rtol=1e-10, atol=1e-13, err_msg=key)


def test_evaluate_counts_real_steps_in_the_loss_and_the_metrics_as_keras(keras):
    src, tgt, _, y = _data(3)
    ours = _ours(_seq2seq)
    theirs = _keras_twin(keras, _seq2seq, ours)
    got, expected = ours.evaluate([src, tgt], y), theirs.evaluate([src, tgt], y, verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-11)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-12)
    # per-sample weights weigh each step of the sample; Keras takes them per step
    w = np.random.default_rng(4).uniform(0.5, 2.0, B)
    weighted = theirs.evaluate([src, tgt], y, sample_weight=np.repeat(w[:, None], T, axis=1), verbose=0,
                               return_dict=True)
    assert ours.evaluate([src, tgt], y, sample_weight=w)["loss"] == pytest.approx(weighted["loss"], rel=1e-11)


# ----------------------------------------------------------------- what a mask means, without a reference
def _trimmed(model, build, t, s):
    """The model's twin for targets of ``t`` and sources of ``s`` steps (its weights do not depend on them)."""
    twin = build(bn, dtype="float64", t=t, s=s)
    twin.set_weights(model.get_weights())
    return twin


def test_each_sequence_gives_what_it_gives_alone_without_its_padding():
    src, tgt, _, _ = _data(5)
    classifier, seq2seq = _ours(_classifier), _ours(_seq2seq)
    pooled, steps = classifier.predict(tgt), seq2seq.predict([src, tgt])
    for b in range(B):
        n, m = int((tgt[b] != 0).sum()), int((src[b] != 0).sum())
        alone = _trimmed(classifier, _classifier, n, S).predict(tgt[b:b + 1, :n])
        np.testing.assert_allclose(pooled[b:b + 1], alone, rtol=1e-12, atol=1e-15)
        alone = _trimmed(seq2seq, _seq2seq, n, m).predict([src[b:b + 1, :m], tgt[b:b + 1, :n]])
        np.testing.assert_allclose(steps[b:b + 1, :n], alone, rtol=1e-12, atol=1e-15)


def test_the_padding_vector_and_the_padded_labels_change_nothing_that_counts():
    src, tgt, _, y = _data(6)
    model = _ours(_seq2seq)
    real = tgt != 0
    before, grads = model.predict([src, tgt]), model.compute_gradients([src, tgt], y, training=False)
    for layer in model.layers:
        if isinstance(layer, L.Embedding):
            layer.params["embeddings"][0] += 10.0  # the vector of id 0, which only padding reads
    y_other = np.where(real, y, (y + 1) % CLASSES)
    after = model.compute_gradients([src, tgt], y_other, training=False)
    np.testing.assert_allclose(model.predict([src, tgt])[real], before[real], rtol=1e-12, atol=1e-15)
    assert after.loss == pytest.approx(grads.loss, rel=1e-12)
    for key, g in grads.parameters.items():
        if key.endswith("embeddings"):
            np.testing.assert_array_equal(after.parameters[key][0], 0.0)  # padding passes no gradient
        np.testing.assert_allclose(after.parameters[key], g, rtol=1e-9, atol=1e-14, err_msg=key)


@pytest.mark.parametrize("build", [_classifier, _seq2seq, _stack], ids=["classifier", "seq2seq", "stack"])
def test_gradients_through_the_mask_path_match_finite_differences(build):
    src, tgt, y_class, y_steps = _data(7)
    model = _ours(build)
    x, y = {_classifier: (tgt, y_class), _seq2seq: ([src, tgt], y_steps), _stack: (tgt, y_steps)}[build]
    x, y = model.check_inputs(x), model.check_targets(y, B)
    model.loss_and_gradients(x, y, None, training=False)
    analytic = {k: g.copy() for k, g in model.gradients().items()}
    scale = max(np.abs(g).max() for g in analytic.values())
    for key, param in model.parameters().items():
        numeric = numerical_gradient(lambda: model.loss_and_gradients(x, y, None, training=False,
                                                                      need_grad=False)[0], param, 1e-5)
        # measured against the largest gradient: entries near 0 (a key bias's are exactly 0) carry rounding only
        np.testing.assert_allclose(analytic[key], numeric, rtol=0, atol=1e-8 * scale, err_msg=key)


def test_masks_live_in_the_call_not_on_the_layers():
    src, tgt, _, y = _data(8)
    model = _ours(_seq2seq)
    before = [dict(vars(layer)) for layer in model.layers]
    model.predict([src, tgt])
    model.fit([src, tgt], y, epochs=1, batch_size=2, verbose=0)
    for layer, attrs in zip(model.layers, before, strict=True):
        assert set(vars(layer)) == set(attrs), layer


# ----------------------------------------------------------------- merges, persistence and refusals
def test_merges_combine_masks_as_keras(keras):
    import torch

    a, b = np.array([[True, False, False]]), np.array([[True, True, False]])
    x = np.zeros((1, 3, 2))
    for ours, theirs, masks in [(L.Add(), keras.layers.Add(), [a, b]), (L.Add(), keras.layers.Add(), [a, None]),
                                (L.Concatenate(), keras.layers.Concatenate(), [a, None]),
                                (L.Concatenate(axis=1), keras.layers.Concatenate(axis=1), [a, None]),
                                (L.Concatenate(axis=1), keras.layers.Concatenate(axis=1), [None, None])]:
        expected = theirs.compute_mask([torch.from_numpy(x)] * 2,
                                       [None if m is None else torch.from_numpy(m) for m in masks])
        got = ours.compute_mask([x, x], masks)
        if expected is None:
            assert got is None
        else:
            np.testing.assert_array_equal(got, expected.numpy())


def test_config_and_file_round_trip_keep_the_masks(tmp_path):
    src, tgt, _, y = _data(9)
    for model, x in [(_ours(_seq2seq), [src, tgt]), (_ours(_stack), tgt)]:
        bn.save(model, tmp_path / "masked.barenet")
        loaded = bn.load(tmp_path / "masked.barenet")
        loaded.compile(loss="sparse_categorical_crossentropy", optimizer="sgd")
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
        assert loaded.compute_gradients(x, y).loss == model.compute_gradients(x, y).loss
    layer = L.Embedding(VOCAB, D, mask_zero=True)
    assert L.Embedding.from_config(layer.get_config()).mask_zero
    assert "mask_zero" not in L.Embedding(VOCAB, D).get_config()  # files of unmasked models stay as they were
    with pytest.raises(ConfigError, match=r"^Embedding mask_zero must be True or False, got 1$"):
        L.Embedding(VOCAB, D, mask_zero=1)


@pytest.mark.parametrize("graph", [False, True], ids=["stack", "graph"])
def test_a_file_whose_mask_reaches_a_layer_that_cannot_honour_it_is_refused(tmp_path, graph):
    import json
    import zipfile

    if graph:
        ids = bn.Input((T,), dtype="int64", name="ids")
        model = bn.Model(ids, L.GRU(3, name="rnn")(L.Embedding(VOCAB, D, name="embed")(ids)))
    else:
        model = bn.Sequential([L.Embedding(VOCAB, D, input_length=T), L.GRU(3)])
    bn.save(model, tmp_path / "plain.barenet")
    with zipfile.ZipFile(tmp_path / "plain.barenet") as src, \
            zipfile.ZipFile(tmp_path / "masked.barenet", "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "barenet.json":
                document = json.loads(data)
                document["model"]["layers"][0]["config"]["mask_zero"] = True
                data = json.dumps(document).encode()
            dst.writestr(info, data)
    with pytest.raises(bn.errors.ModelFileError, match=r"cannot honour the padding mask that Embedding\(9, 8, "
                                                       r"mask_zero=True\)"):
        bn.load(tmp_path / "masked.barenet")


def test_a_layer_that_cannot_honour_a_mask_is_refused_by_name():
    ids = bn.Input((T,), dtype="int64")
    x = L.Embedding(VOCAB, D, mask_zero=True, name="embed")(ids)
    for layer in (L.Flatten(name="flat"), L.LSTM(4, name="rnn"), L.GlobalMaxPooling1D(name="maxpool"),
                  L.Conv1D(4, 3, name="conv")):
        with pytest.raises(ConfigError, match=rf"^{type(layer).__name__}\(.*\) '{layer.name}' cannot honour the "
                                              r"padding mask that Embedding\(9, 8, mask_zero=True\) 'embed' puts "
                                              r"on its input\. Layers that use or pass on a mask: Dense, "):
            layer(x)
    with pytest.raises(ConfigError, match=r"^LSTM\(4\) cannot honour the padding mask that Embedding\(9, 8, "
                                          r"mask_zero=True\) puts on its input"):
        bn.Sequential([L.Embedding(VOCAB, D, mask_zero=True, input_length=T), L.Dense(3), L.LSTM(4)])
    inner = bn.Model(ids, L.Dense(3)(x), name="encoder")
    with pytest.raises(ConfigError, match=r"^Model 'encoder' is called as a layer of another model, but its output "
                                          r"carries the padding mask of Embedding\(9, 8, mask_zero=True\) 'embed'"):
        inner(bn.Input((T,), dtype="int64"))
    unmasked = L.Embedding(VOCAB, D)(ids)
    L.Flatten()(unmasked)  # without mask_zero nothing changes
    L.Flatten()(L.GlobalAveragePooling1D()(x))  # the mean over the real steps carries no mask


def test_onnx_export_refuses_a_model_whose_outputs_depend_on_a_mask():
    pytest.importorskip("onnx")
    from barenet.onnx import to_onnx
    from barenet.onnx.graph import OnnxExportError

    with pytest.raises(OnnxExportError, match=r"^MultiHeadAttention\(num_heads=2, key_dim=4\) 'attend' uses a "
                                              r"padding mask"):
        to_onnx(_ours(_classifier))
    to_onnx(_ours(_stack))  # the mask only weighs the loss there: the predictions are the same without it
