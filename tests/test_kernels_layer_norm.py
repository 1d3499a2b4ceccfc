"""The compiled layer-normalization kernels against LayerNormalization's NumPy form."""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet import threads
from barenet.kernels import layer_norm
from barenet.layers.base import Cache

pytestmark = pytest.mark.skipif(layer_norm.forward is None, reason="needs numba")


def _run(layer, x, grad):
    cache = Cache()
    y = layer.forward(x, cache=cache, training=True)
    dx = layer.backward(grad, cache)
    return y, dx, {name: g.copy() for name, g in layer.grads.items()}


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("engine", [False, True])
def test_compiled_layer_norm_matches_the_numpy_form(dtype, rtol, center, scale, engine, monkeypatch):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5, 9, 24)) * 3 + 1).astype(dtype)
    grad = rng.standard_normal(x.shape).astype(dtype)
    layer = bn.layers.LayerNormalization(center=center, scale=scale, gamma_initializer="normal",
                                         beta_initializer="normal")
    layer.build(x.shape[1:], np.random.default_rng(1), dtype)
    calls = []
    forward = layer_norm.forward
    monkeypatch.setattr(layer_norm, "forward", lambda *a: (calls.append(1), forward(*a))[1])
    with threads.engine(engine):
        got = _run(layer, x, grad)
    assert calls, "the compiled kernel was not used"
    monkeypatch.setattr(layer_norm, "forward", None)
    want = _run(layer, x, grad)
    for a, b in zip(got[:2], want[:2], strict=True):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 10)
    assert got[2].keys() == want[2].keys() == ({"gamma"} if scale else set()) | ({"beta"} if center else set())
    for name in got[2]:
        np.testing.assert_allclose(got[2][name], want[2][name], rtol=rtol, atol=rtol * 10)


def test_other_axes_and_strided_inputs_keep_the_numpy_form(monkeypatch):
    monkeypatch.setattr(layer_norm, "forward", lambda *a: pytest.fail("compiled kernel used"))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 6, 8))
    layer = bn.layers.LayerNormalization(axis=[1, 2])
    layer.build(x.shape[1:], rng, "float64")
    y = layer.forward(x)
    np.testing.assert_allclose(y.reshape(4, -1).mean(axis=1), 0, atol=1e-12)
    last = bn.layers.LayerNormalization()
    last.build((6, 8), rng, "float64")
    strided = np.asfortranarray(x)
    np.testing.assert_allclose(last.forward(strided).mean(axis=-1), 0, atol=1e-12)


def test_constant_rows_normalize_to_beta():
    """A row with no spread: x_hat is 0 (epsilon keeps the scale finite), the output beta, no NaN."""
    layer = bn.layers.LayerNormalization(beta_initializer="ones")
    layer.build((5,), np.random.default_rng(0), "float32")
    y = layer.forward(np.full((3, 5), 2.5, np.float32))
    np.testing.assert_array_equal(y, np.ones((3, 5), np.float32))
