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
