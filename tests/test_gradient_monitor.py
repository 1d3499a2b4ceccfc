"""GradientMonitor on real training runs: the figures against an independent computation, and the warnings on
a deep sigmoid network (gradients vanish) and the same network with ReLU and batch normalization (they don't)."""

import math
import warnings

import numpy as np
import pytest

import barenet as bn
from barenet.callbacks import GradientMonitor, GradientWarning
from barenet.errors import ConfigError


def _blobs(seed=0, n=128, features=8):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def _deep(kind, depth=8, width=24, features=8, seed=0):
    """``depth`` hidden layers: Dense(sigmoid), or Dense -> BatchNormalization -> ReLU (He initialization)."""
    stack = []
    for i in range(depth):
        first = {"input_dim": features} if i == 0 else {}
        if kind == "sigmoid":
            stack.append(bn.layers.Dense(width, "sigmoid", **first))
        else:
            stack += [bn.layers.Dense(width, None, kernel_initializer="he_normal", **first),
                      bn.layers.BatchNormalization(), bn.layers.activations.get("relu")]
    model = bn.Sequential([*stack, bn.layers.Dense(2, "softmax")], seed=seed)
    model.compile("categorical_crossentropy", "adam", ["accuracy"])
    return model


def _fit_watched(model, X, y, epochs=2, **monitor_args):
    monitor = GradientMonitor(**monitor_args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[monitor])
    return monitor, [w for w in caught if issubclass(w.category, GradientWarning)]


def test_deep_sigmoid_gradients_vanish_and_the_warning_names_the_first_layers():
    X, y = _blobs()
    monitor, caught = _fit_watched(_deep("sigmoid"), X, y)
    norms = {name: values[0] for name, values in monitor.gradient_norm.items()}
    assert list(norms) == [f"dense_{i}" for i in range(9)]
    # each sigmoid layer passes back about a quarter of its gradient: the first layer's is the smallest
    assert norms["dense_0"] < 1e-3 * norms["dense_8"]
    assert all(norms[f"dense_{i}"] < norms[f"dense_{i + 1}"] for i in range(8))
    named = [w for w in caught if "layer 'dense_0'" in str(w.message)]
    assert len(named) == 1 and "gradients vanish" in str(named[0].message)
    assert "at epoch 1" in str(named[0].message)
    vanished = {text.split("'")[1] for text in monitor.warnings}
    assert vanished == {name for name, value in norms.items() if value < 1e-3 * max(norms.values())}
    assert len(caught) == len(monitor.warnings)  # once per layer, not once per epoch


def test_relu_with_batch_normalization_keeps_every_layer_s_gradient_alive():
    X, y = _blobs()
    monitor, caught = _fit_watched(_deep("relu"), X, y)
    assert caught == [] and monitor.warnings == []
    norms = [values[0] for values in monitor.gradient_norm.values()]
    assert len(norms) == 17  # 8 Dense + 8 BatchNormalization + the output layer; activations have no parameters
    assert min(norms) > 0.05 * max(norms)


def test_figures_match_an_sgd_step_computed_independently():
    """One full-batch SGD step per epoch: W' = W - lr g, so the update ratio is lr ||g|| / ||W||."""
    X, y = _blobs(n=40)
    model = bn.Sequential([bn.layers.Dense(6, "tanh", input_dim=8), bn.layers.Dense(2, "softmax")], seed=3,
                          dtype="float64")
    lr = 0.1
    model.compile("categorical_crossentropy", bn.optimizers.SGD(lr))
    expected_norm, expected_ratio = {}, {}
    for _ in range(2):  # the two epochs' single steps
        weights = model.named_weights()
        grads = model.compute_gradients(X, y).parameters
        for i, name in enumerate(["dense_0", "dense_1"]):
            g = math.sqrt(sum(float(np.sum(grads[f"layers.{i}.{p}"] ** 2)) for p in ("kernel", "bias")))
            w = math.sqrt(sum(float(np.sum(weights[f"layers.{i}.{p}"] ** 2)) for p in ("kernel", "bias")))
            expected_norm.setdefault(name, []).append(g)
            expected_ratio.setdefault(name, []).append(lr * g / w)
        model.optimizer.step(model.parameters(), model.gradients())
    fresh = bn.Sequential([bn.layers.Dense(6, "tanh", input_dim=8), bn.layers.Dense(2, "softmax")], seed=3,
                          dtype="float64")
    fresh.compile("categorical_crossentropy", bn.optimizers.SGD(lr))
    monitor = GradientMonitor()
    fresh.fit(X, y, epochs=2, batch_size=None, shuffle=False, verbose=0, callbacks=[monitor])
    assert monitor.epochs == [0, 1]
    for name in expected_norm:
        np.testing.assert_allclose(monitor.gradient_norm[name], expected_norm[name], rtol=1e-10)
        np.testing.assert_allclose(monitor.update_ratio[name], expected_ratio[name], rtol=1e-8)
    assert monitor.records() == {"gradient_norm": monitor.gradient_norm, "update_ratio": monitor.update_ratio}


def test_exploding_gradients_are_named():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((32, 4)) * 100.0
    y = X @ rng.standard_normal(4) * 1000.0
    model = bn.Sequential([bn.layers.Dense(8, input_dim=4), bn.layers.Dense(1)], seed=0, dtype="float64")
    model.compile("mse", bn.optimizers.SGD(1e-12))
    monitor, caught = _fit_watched(model, X, y, epochs=1)
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("gradients explode in layer 'dense_1' at epoch 1") for m in messages), messages
    assert all("exploding=1000" in m for m in messages if "explode" in m)


def test_warn_false_records_without_warning_and_the_layers_keep_no_new_state():
    X, y = _blobs()
    model = _deep("sigmoid", depth=6)
    before = [sorted(vars(layer)) for layer in model.layers]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monitor, _ = _fit_watched(model, X, y, epochs=1, warn=False)
    assert monitor.warnings and all("gradients vanish" in text for text in monitor.warnings)
    assert [sorted(vars(layer)) for layer in model.layers] == before


@pytest.mark.parametrize("kwargs, fragment", [
    ({"vanishing": 0}, "vanishing must be a positive finite number"),
    ({"vanishing": 1.5}, "must be below 1"),
    ({"exploding": float("inf")}, "exploding must be a positive finite number"),
    ({"exploding": True}, "exploding must be a positive finite number"),
])
def test_thresholds_are_checked(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        GradientMonitor(**kwargs)
