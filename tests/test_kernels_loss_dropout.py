"""The compiled softmax cross-entropy and dropout kernels against their NumPy references, and the
layers and loss that use them against the forms they replaced."""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet.kernels import NUMBA_ENABLED
from barenet.kernels import dropout as dropout_kernels
from barenet.kernels import loss as loss_kernels
from barenet.layers import Cache

needs_numba = pytest.mark.skipif(not NUMBA_ENABLED, reason="numba not installed or BARENET_NUMBA=0")


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,classes", [(1, 2), (7, 3), (128, 10), (33, 1000)])
def test_softmax_cross_entropy_matches_the_reference(rows, classes, dtype):
    rng = np.random.default_rng(rows * classes)
    z = (rng.standard_normal((rows, classes)) * 8).astype(dtype)
    z[0, -1] = 500  # a large logit: the shift by the row's maximum keeps exp finite
    y = rng.integers(0, classes, rows)
    out = [np.empty_like(z) for _ in range(4)]
    ref = loss_kernels.softmax_cross_entropy_reference(z, y, out[0], out[1])
    fast = loss_kernels.softmax_cross_entropy(z, y, out[2], out[3])
    tol = 3e-6 if dtype == np.float32 else 1e-13
    assert fast == pytest.approx(ref, rel=tol, abs=tol)
    np.testing.assert_allclose(out[2], out[0], rtol=tol, atol=tol)
    np.testing.assert_allclose(out[3], out[1], rtol=tol, atol=tol / rows)
    assert np.all(np.isfinite(out[2]))


@needs_numba
def test_softmax_cross_entropy_on_threads_is_the_one_thread_result():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((4096, 100)).astype(np.float32) * 4
    y = rng.integers(0, 100, 4096)
    one = [np.empty_like(z) for _ in range(2)]
    want = loss_kernels.softmax_cross_entropy(z, y, *one)
    split = [np.empty_like(z) for _ in range(2)]
    bn.threads.set_num_threads(2)
    try:
        with bn.threads.engine():
            assert len(bn.threads.parts(len(z), 16 * z.shape[1])) == 2
            got = loss_kernels.softmax_cross_entropy(z, y, *split)
    finally:
        bn.threads.set_num_threads(None)
    assert got == pytest.approx(want, rel=1e-12)
    np.testing.assert_array_equal(split[0], one[0])
    np.testing.assert_array_equal(split[1], one[1])


@needs_numba
def test_softmax_cross_entropy_of_a_nan_logit_is_nan():
    z = np.array([[0.0, np.nan, 1.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    probs, grad = np.empty_like(z), np.empty_like(z)
    assert np.isnan(loss_kernels.softmax_cross_entropy(z, np.array([0, 1]), probs, grad))
    assert np.all(np.isnan(probs[0]))


@pytest.mark.parametrize("form", ["compiled", "reference"])
@pytest.mark.parametrize("label, fragment", [(3, "got label 3; labels must be integers in [0, 2] for 3 classes"),
                                             (-1, "got label -1; labels must be integers in [0, 2] for 3 classes")])
def test_softmax_cross_entropy_refuses_a_label_outside_its_row_before_writing(form, label, fragment, monkeypatch):
    """A label is an index into its row; the compiled loop does not check bounds, so the public name does."""
    if form == "reference":
        monkeypatch.setattr(loss_kernels, "_softmax_cross_entropy_kernel", loss_kernels.softmax_cross_entropy_reference)
    elif not NUMBA_ENABLED:
        pytest.skip("numba not installed or BARENET_NUMBA=0")
    z = np.zeros((2, 3), np.float32)
    probs, grad = np.full_like(z, 7), np.full_like(z, 7)
    with pytest.raises(bn.errors.DataError) as error:
        loss_kernels.softmax_cross_entropy(z, np.array([0, label]), probs, grad)
    assert str(error.value) == f"softmax_cross_entropy {fragment}"
    assert np.all(probs == 7) and np.all(grad == 7)
    with pytest.raises(bn.errors.ShapeError, match=r"got \(2, 3\), \(2, 3\), \(2, 3\) and \(3,\)"):
        loss_kernels.softmax_cross_entropy(z, np.array([0, 1, 2]), probs, grad)
    with pytest.raises(bn.errors.DataError, match="expects integer labels, got an array of dtype float64"):
        loss_kernels.softmax_cross_entropy(z, np.array([0.0, 1.0]), probs, grad)


@pytest.mark.parametrize("shape", [(5, 4), (3, 6, 4)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_loss_on_labels_equals_the_fused_loss_on_one_hot_rows(shape, dtype):
    """The labels' one-pass kernel against the general path (one-hot rows), sequences included."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape).astype(dtype)
    labels = rng.integers(0, shape[-1], shape[:-1])
    one_hot = np.eye(shape[-1], dtype=dtype)[labels]
    loss = bn.losses.get("categorical_crossentropy")
    v1, g1, p1 = loss.fused(logits, labels)
    v2, g2, p2 = loss.fused(logits, one_hot)
    tol = 2e-6 if dtype == "float32" else 1e-14
    assert v1 == pytest.approx(v2, rel=tol)
    np.testing.assert_allclose(g1, g2, rtol=tol, atol=tol)
    np.testing.assert_allclose(p1, p2, rtol=tol, atol=tol)
    assert g1.shape == p1.shape == shape and g1.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_kernels_give_the_reference_bits(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(1001).astype(dtype)
    x[[3, 10]] = np.nan, -0.0
    u = rng.random(1001, dtype=np.float32)
    y = [np.empty_like(x) for _ in range(2)]
    mask = [np.empty(1001, dtype=bool) for _ in range(2)]
    dropout_kernels.forward_reference(x, u, 0.6, y[0], mask[0])
    dropout_kernels.forward(x, u, 0.6, y[1], mask[1])
    np.testing.assert_array_equal(mask[1], mask[0])
    assert np.array_equal(y[1], y[0], equal_nan=True) and np.array_equal(np.signbit(y[1]), np.signbit(y[0]))
    g = rng.standard_normal(1001).astype(dtype)
    dx = [np.empty_like(g) for _ in range(2)]
    dropout_kernels.backward_reference(g, mask[0], 0.6, dx[0])
    dropout_kernels.backward(g, mask[0], 0.6, dx[1])
    np.testing.assert_array_equal(dx[1], dx[0])


def test_dropout_layer_keeps_its_meaning():
    """Kept inputs scaled by 1/(1 - rate), the rest zero; backward uses the same mask; inference is identity."""
    layer = bn.layers.Dropout(0.25)
    layer.build((6, 5), np.random.default_rng(0))
    x = np.random.default_rng(2).standard_normal((40, 6, 5)).astype(np.float32)
    c = Cache()
    y = layer.forward(x, training=True, cache=c)
    kept = y != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_allclose(y[kept], x[kept] / np.float32(0.75), rtol=1e-6)
    g = np.ones_like(x)
    np.testing.assert_array_equal(layer.backward(g, c) != 0, kept)
    assert layer.forward(x, training=False) is x
