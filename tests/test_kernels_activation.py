"""Bias + ReLU kernels against their NumPy references, and the Dense layer that uses them."""

import numpy as np
import pytest

import barenet as bn
from barenet.kernels import activation
from barenet.layers import Cache

numba = pytest.importorskip("numba")
BIAS_RELU = numba.njit(error_model="numpy")(activation._bias_relu)
RELU_BIAS_BACKWARD = numba.njit(error_model="numpy")(activation._relu_bias_backward)
SHAPES = [(128, 256), (128, 128), (128, 10), (7, 3), (1, 1)]  # the benchmark MLP's hidden layers, odd ones


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("shape", SHAPES)
def test_compiled_bias_relu_matches_reference(dtype, rtol, shape):
    rng = np.random.default_rng(0)
    z = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    z.flat[0] = np.nan  # propagates, as in np.maximum
    ref, fast = z.copy(), z.copy()
    activation.bias_relu_reference(ref, b)
    BIAS_RELU(fast, b)
    np.testing.assert_array_equal(ref, fast)
    outs, dbs = [np.empty_like(grad) for _ in range(2)], [np.full(shape[1], 7, dtype) for _ in range(2)]
    ref[np.isnan(ref)] = 1.0
    activation.relu_bias_backward_reference(grad, ref, outs[0], dbs[0])
    RELU_BIAS_BACKWARD(grad, ref, outs[1], dbs[1])
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(dbs[0], dbs[1], rtol=rtol, atol=rtol * shape[0])
    np.testing.assert_allclose(dbs[0], (grad * (ref > 0)).sum(axis=0), rtol=rtol, atol=rtol * shape[0])


@pytest.mark.parametrize("sample_shape", [(6,), (4, 6)], ids=["vectors", "sequences"])
def test_dense_relu_fused_equals_dense_then_relu(sample_shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, *sample_shape))
    fused = bn.layers.Dense(8, activation="relu", bias_initializer="uniform_fan_in")
    split = bn.layers.Dense(8, bias_initializer="uniform_fan_in")
    relu = bn.layers.ReLU()
    for layer in (fused, split):
        layer.build(sample_shape, np.random.default_rng(2), "float64")
    relu.build(split.output_shape, np.random.default_rng(2), "float64")
    np.testing.assert_array_equal(fused.params["bias"], split.params["bias"])
    c_fused, c_split, c_relu = Cache(), Cache(), Cache()
    y = fused.forward(x, training=True, cache=c_fused)
    np.testing.assert_allclose(y, relu.forward(split.forward(x, cache=c_split), cache=c_relu), rtol=1e-15)
    grad = rng.standard_normal(y.shape)
    np.testing.assert_allclose(fused.backward(grad, c_fused), split.backward(relu.backward(grad, c_relu), c_split),
                               rtol=1e-13)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(fused.grads[name], split.grads[name], rtol=1e-13)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-5), (np.float64, 1e-13)])
def test_compiled_exact_gelu_matches_the_numpy_form_both_ways(dtype, rtol):
    """The compiled kernels against barenet.functional's erfc-based forms, over the lower tail (where Phi is
    tiny and relative accuracy is hardest), zero, and large values; non-finite inputs give what NumPy gives."""
    rng = np.random.default_rng(2)
    z = np.concatenate([np.linspace(-12, 12, 481), rng.standard_normal(519) * 3]).astype(dtype).reshape(40, 25)
    grad = rng.standard_normal(z.shape).astype(dtype)
    y, dz = np.empty_like(z), np.empty_like(z)
    forward, backward = activation.gelu_kernels(dtype)
    forward(z, y)
    backward(grad, z, y, dz)
    want_y, want_dz = bn.functional.gelu(z), grad * bn.functional.gelu_grad(z)
    tiny = np.finfo(dtype).tiny
    assert np.max(np.abs(y - want_y) / np.maximum(np.abs(want_y), tiny)) <= rtol
    # the derivative crosses zero near z = -0.75 (a cancellation in both forms): absolute there
    np.testing.assert_allclose(dz, want_dz, rtol=rtol, atol=rtol * float(np.abs(grad).max()))
    special = np.array([[np.nan, np.inf, 0.0, -0.0]], dtype)
    out = np.empty_like(special)
    forward(special, out)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(out, bn.functional.gelu(special))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_gelu_layer_uses_the_compiled_kernels_and_agrees_with_the_numpy_form(dtype, monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5, 7)).astype(dtype)
    grad = rng.standard_normal(x.shape).astype(dtype)
    layer = bn.layers.GELU()
    layer.build(x.shape[1:], rng, dtype)
    cache = Cache()
    y = layer.forward(x, cache=cache)
    dx = layer.backward(grad, cache)
    calls = []
    monkeypatch.setattr(activation, "gelu_kernels", lambda dtype: (lambda *a: calls.append("forward"),) * 2)
    layer.forward(x)
    assert calls == ["forward"]
    rtol = 2e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(y, bn.functional.gelu(x), rtol=rtol, atol=1e-30)
    np.testing.assert_allclose(dx, grad * bn.functional.gelu_grad(x), rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-6), (np.float64, 1e-14)])
@pytest.mark.parametrize("shape", [(40, 600), (7, 3), (1, 1)])  # rows longer than a chunk, odd, one value
def test_bias_gelu_kernels_are_the_bias_then_the_gelu_kernels(dtype, rtol, shape):
    """The fused kernels give what adding the bias and then the plain GELU kernels give (to the float64 sum of
    the bias gradient), over the lower tail, zero and large values."""
    rng = np.random.default_rng(5)
    z = (rng.standard_normal(shape) * 4).astype(dtype)
    z.flat[:3] = [-12.0, 0.0, 9.0][: z.size]
    b = rng.standard_normal(shape[1]).astype(dtype)
    grad = rng.standard_normal(shape).astype(dtype)
    bias_gelu, gelu_bias_backward = activation.bias_gelu_kernels(dtype)
    gelu, gelu_backward = activation.gelu_kernels(dtype)
    fused_z, fused_y = z.copy(), np.empty_like(z)
    bias_gelu(fused_z, b, fused_y)
    plain_z, plain_y = z + b, np.empty_like(z)
    gelu(plain_z, plain_y)
    np.testing.assert_array_equal(fused_z, plain_z)
    np.testing.assert_array_equal(fused_y, plain_y)
    fused_dz, plain_dz, db = np.empty_like(z), np.empty_like(z), np.full(shape[1], 7, dtype)
    gelu_bias_backward(grad, fused_z, fused_y, fused_dz, db)
    gelu_backward(grad, plain_z, plain_y, plain_dz)
    np.testing.assert_array_equal(fused_dz, plain_dz)
    np.testing.assert_allclose(db, plain_dz.sum(axis=0, dtype=np.float64), rtol=rtol, atol=rtol)
    assert activation.bias_gelu_kernels(np.float16) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sample_shape", [(6,), (4, 6)], ids=["vectors", "sequences"])
def test_dense_gelu_fused_equals_dense_then_gelu(dtype, sample_shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, *sample_shape)).astype(dtype)
    fused = bn.layers.Dense(8, activation="gelu", bias_initializer="uniform_fan_in")
    split = bn.layers.Dense(8, bias_initializer="uniform_fan_in")
    gelu = bn.layers.GELU()
    for layer in (fused, split):
        layer.build(sample_shape, np.random.default_rng(2), dtype)
    gelu.build(split.output_shape, np.random.default_rng(2), dtype)
    c_fused, c_split, c_gelu = Cache(), Cache(), Cache()
    y = fused.forward(x, training=True, cache=c_fused)
    assert c_fused["fused"] == "gelu"
    rtol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(y, gelu.forward(split.forward(x, cache=c_split), cache=c_gelu), rtol=rtol)
    np.testing.assert_allclose(fused.forward(x), y, rtol=0)  # inference: the same values, nothing kept
    grad = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_allclose(fused.backward(grad, c_fused), split.backward(gelu.backward(grad, c_gelu), c_split),
                               rtol=rtol * 10, atol=rtol)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(fused.grads[name], split.grads[name], rtol=rtol * 10, atol=rtol)
    if dtype == "float64":
        assert bn.gradcheck(fused, x[:2])
