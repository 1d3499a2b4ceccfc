"""Scaled dot-product attention (barenet.functional): finite differences, an explicit NumPy reference, threads
and the messages for bad input. Comparisons with PyTorch are in test_attention_torch.py.

Layout throughout: ``q : (batch, heads, T, d)``, ``k : (batch, heads, S, d)``, ``v : (batch, heads, S, dv)``;
a mask is True where attention is allowed.
"""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet import threads
from barenet.errors import ConfigError, DataError, ShapeError
from barenet.gradcheck import numerical_gradient, relative_error
from barenet.layers import Cache

attention = bn.functional.scaled_dot_product_attention
attention_backward = bn.functional.scaled_dot_product_attention_backward


def _qkv(batch=2, heads=3, t=4, s=5, d=3, dv=2, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(rng.standard_normal(shape).astype(dtype)
                 for shape in ((batch, heads, t, d), (batch, heads, s, d), (batch, heads, s, dv)))


def _padding_mask(batch, t, s, seed=1):
    """A (batch, 1, T, S) mask: random gaps, and query 0 of batch entry 0 with no key at all."""
    mask = np.random.default_rng(seed).random((batch, 1, t, s)) < 0.7
    mask[0, 0, 0] = False
    return mask


def reference(q, k, v, mask=None, causal=False, keep=None, scale=None):
    """The textbook formula on whole arrays: ``softmax(QK^T scale + M) * R @ V`` (``keep`` the dropout factor R)."""
    t, s = q.shape[2], k.shape[2]
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    allowed = np.ones((t, s), bool) if mask is None else mask
    if causal:
        allowed = allowed & np.tri(t, s, dtype=bool)
    z = np.where(allowed, q @ k.swapaxes(-1, -2) * scale, -np.inf)
    z = z - np.where(np.isfinite(z.max(-1, keepdims=True)), z.max(-1, keepdims=True), 0)
    e = np.exp(z)
    p = e / np.maximum(e.sum(-1, keepdims=True), np.finfo(q.dtype).tiny)
    return (p if keep is None else p * keep) @ v


CASES = {  # (shapes of _qkv, mask, causal)
    "self": ({}, None, False),
    "masked": ({}, "padding", False),
    "causal": ({"t": 5}, None, True),
    "causal-masked": ({"t": 5}, "padding", True),
    "cross-longer-keys": ({"t": 3, "s": 6}, "padding", True),
    "cross-longer-queries": ({"t": 6, "s": 3}, None, True),
}


def _case(name, dtype=np.float64):
    shapes, mask, causal = CASES[name]
    q, k, v = _qkv(dtype=dtype, **shapes)
    if mask is not None:
        mask = _padding_mask(q.shape[0], q.shape[2], k.shape[2])
    return q, k, v, mask, causal


@pytest.mark.parametrize("name", CASES)
def test_matches_the_textbook_formula(name):
    q, k, v, mask, causal = _case(name)
    np.testing.assert_allclose(attention(q, k, v, mask=mask, causal=causal), reference(q, k, v, mask, causal),
                               rtol=1e-13, atol=1e-15)


def _assert_close(analytic, numeric):
    """Central differences with h = 1e-5 are good to about 1e-10 here: within the relative tolerance of
    bn.gradcheck, and absolutely for the entries near zero."""
    assert relative_error(analytic, numeric) < 1e-6
    np.testing.assert_allclose(analytic, numeric, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", CASES)
def test_gradients_match_finite_differences(name):
    q, k, v, mask, causal = _case(name)
    r = np.random.default_rng(9).standard_normal((q.shape[0], q.shape[1], q.shape[2], v.shape[3]))
    cache = Cache()
    attention(q, k, v, mask=mask, causal=causal, scale=0.7, cache=cache)
    grads = attention_backward(r, cache)
    for x, analytic in zip((q, k, v), grads, strict=True):
        numeric = numerical_gradient(lambda: float(np.sum(attention(q, k, v, mask=mask, causal=causal,
                                                                    scale=0.7) * r)), x, h=1e-5)
        _assert_close(analytic, numeric)


@pytest.mark.parametrize("t, s", [(70, 70), (40, 90), (90, 40)])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_causal_blocks_give_what_the_same_mask_as_an_array_gives(t, s, dropout):
    """A causal call computes only the blocks of scores its queries can see (several blocks from T = 64 on);
    outputs and gradients equal those of the unblocked path with the causal triangle given as a mask."""
    q, k, v = _qkv(t=t, s=s, d=4, dv=3)
    padding = _padding_mask(2, t, s)
    r = np.random.default_rng(9).standard_normal((2, 3, t, 3))
    results = []
    for mask, causal in ((padding, True), (padding & np.tri(t, s, dtype=bool), False)):
        cache = Cache()
        y = attention(q, k, v, mask=mask, causal=causal, dropout=dropout, rng=np.random.default_rng(4), cache=cache)
        results.append((y, *attention_backward(r, cache)))
    for blocked, whole in zip(*results, strict=True):
        np.testing.assert_allclose(blocked, whole, rtol=1e-12, atol=1e-14)
    if s > t:  # keys past the last query are seen by none: zero gradients
        assert not results[0][2][:, :, t:].any() and not results[0][3][:, :, t:].any()


def test_dropout_gradients_match_finite_differences():
    q, k, v, mask, causal = _case("causal-masked")
    r = np.random.default_rng(9).standard_normal((2, 3, 5, 2))

    def run(cache=None):
        return attention(q, k, v, mask=mask, causal=causal, dropout=0.3, rng=np.random.default_rng(4), cache=cache)

    cache = Cache()
    run(cache)
    grads = attention_backward(r, cache)
    for x, analytic in zip((q, k, v), grads, strict=True):
        _assert_close(analytic, numerical_gradient(lambda: float(np.sum(run() * r)), x, h=1e-5))


def test_dropout_drops_the_weights_the_generator_draws_and_rescales_the_rest():
    q, k, v, mask, causal = _case("masked")
    out = attention(q, k, v, mask=mask, dropout=0.25, rng=np.random.default_rng(5))
    u = np.random.default_rng(5).random((2, 3, 4, 5), dtype=np.float32)
    np.testing.assert_allclose(out, reference(q, k, v, mask, keep=(u < 0.75) / 0.75), rtol=1e-13, atol=1e-15)


def test_a_query_with_nothing_to_attend_to_gives_zeros_and_zero_gradients():
    q, k, v = _qkv()
    mask = np.ones((2, 3, 4, 5), bool)
    mask[1, 2, 3] = False
    cache = {}
    with np.errstate(all="raise"):
        out = attention(q, k, v, mask=mask, cache=cache)
        dq, dk, dv = attention_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(out[1, 2, 3], 0)
    np.testing.assert_array_equal(dq[1, 2, 3], 0)
    np.testing.assert_array_equal(cache["probs"][1, 2, 3], 0)
    assert np.isfinite(out).all() and np.isfinite(dk).all() and np.isfinite(dv).all()


def test_masked_weights_are_exactly_zero_and_rows_sum_to_one():
    q, k, v, mask, causal = _case("causal-masked")
    q = q * 30  # large scores: the softmax must subtract each row's maximum
    cache = {}
    attention(q, k, v, mask=mask, causal=causal, cache=cache)
    p = cache["probs"]
    allowed = mask & np.tri(5, 5, dtype=bool)
    assert np.all(p[~np.broadcast_to(allowed, p.shape)] == 0)
    sums = p.sum(-1)
    np.testing.assert_allclose(sums[np.broadcast_to(allowed.any(-1), sums.shape)], 1, rtol=1e-14)


def test_causal_is_the_top_left_lower_triangle():
    q, k, v = _qkv(t=3, s=5)
    np.testing.assert_allclose(attention(q, k, v, causal=True), attention(q, k, v, mask=np.tri(3, 5, dtype=bool)),
                               rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keeps_the_dtype_and_the_value_depth(dtype):
    q, k, v = _qkv(d=4, dv=6, dtype=dtype)
    cache = {}
    out = attention(q, k, v, cache=cache)
    assert out.shape == (2, 3, 4, 6) and out.dtype == dtype and out.flags.c_contiguous
    grads = attention_backward(np.ones_like(out), cache)
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape]
    assert all(g.dtype == dtype for g in grads)


def test_float32_agrees_with_float64():
    q, k, v, mask, causal = _case("causal-masked")
    cache64, cache32 = {}, {}
    out64 = attention(q, k, v, mask=mask, causal=causal, cache=cache64)
    out32 = attention(*(a.astype(np.float32) for a in (q, k, v)), mask=mask, causal=causal, cache=cache32)
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-6)
    g = np.random.default_rng(3).standard_normal(out64.shape)
    for a, b in zip(attention_backward(g.astype(np.float32), cache32), attention_backward(g, cache64), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_inputs_transposed_from_the_time_major_layout_are_accepted():
    """A layer that splits its projections into heads passes (batch, T, heads, d) arrays transposed to
    (batch, heads, T, d): strided views, not copies."""
    q, k, v = (np.ascontiguousarray(a.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) for a in _qkv())
    assert not q.flags.c_contiguous
    np.testing.assert_allclose(attention(q, k, v), reference(q, k, v), rtol=1e-13)


def test_inference_keeps_nothing_and_the_cache_serves_repeated_backward_passes():
    q, k, v = _qkv()
    cache = {}
    out = attention(q, k, v, dropout=0.5, rng=np.random.default_rng(0), cache=cache)
    g = np.ones_like(out)
    first = attention_backward(g, cache)
    for a, b in zip(first, attention_backward(g, cache), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_give_the_one_thread_results(dtype, monkeypatch):
    monkeypatch.setattr(threads, "MIN_WORK", 1)
    q, k, v, mask, causal = _case("causal-masked", dtype)
    q, k, v = (np.concatenate([a] * 3) for a in (q, k, v))  # 6 batch entries
    mask = np.concatenate([mask] * 3)
    g = np.random.default_rng(1).standard_normal((6, 3, 5, 2)).astype(dtype)

    def run():
        cache = {}
        out = attention(q, k, v, mask=mask, causal=causal, dropout=0.2, rng=np.random.default_rng(2), cache=cache)
        return out, *attention_backward(g, cache)

    previous = threads.get_num_threads()
    try:
        one = run()
        threads.set_num_threads(3)
        with threads.engine():
            assert len(threads.parts(6, 100)) == 3
            many = run()
    finally:
        threads.set_num_threads(previous)
    for a, b in zip(one, many, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-7)


# --------------------------------------------------------------------------- bad input
def test_bad_shapes_and_dtypes_say_what_was_expected():
    q, k, v = _qkv()
    with pytest.raises(ShapeError, match=r"^attention expects q as a 4-d array \(batch, heads, time, depth\), "
                                         r"got \(3, 4, 3\)$"):
        attention(q[0], k, v)
    with pytest.raises(ShapeError, match=r"^attention expects q \(batch, heads, T, d\), k \(batch, heads, S, d\) and "
                                         r"v \(batch, heads, S, dv\); got q \(2, 3, 4, 3\), k \(2, 3, 5, 3\), "
                                         r"v \(2, 3, 4, 2\)$"):
        attention(q, k, v[:, :, :4])
    with pytest.raises(DataError, match=r"^attention expects q, k and v of one float dtype \(float32 or float64\), "
                                        r"got float64, float32 and float64$"):
        attention(q, k.astype(np.float32), v)
    with pytest.raises(ShapeError, match=r"^attention backward expected dout of shape \(2, 3, 4, 2\), "
                                         r"got \(2, 3, 4, 3\)$"):
        cache = {}
        attention(q, k, v, cache=cache)
        attention_backward(np.ones((2, 3, 4, 3)), cache)


def test_bad_masks_and_dropout_say_what_to_do():
    q, k, v = _qkv()
    with pytest.raises(DataError, match=r"^attention mask must be boolean, True where attention is allowed; got "
                                        r"dtype int64 \(for a 0/1 array pass mask.astype\(bool\)\)$"):
        attention(q, k, v, mask=np.ones((4, 5), dtype=np.int64))
    with pytest.raises(ShapeError, match=r"^attention mask of shape \(2, 5, 4\) does not broadcast to "
                                         r"\(batch, heads, T, S\) = \(2, 3, 4, 5\)$"):
        attention(q, k, v, mask=np.ones((2, 5, 4), bool))
    with pytest.raises(ConfigError, match=r"^attention dropout must be in \[0, 1\), got 1.0$"):
        attention(q, k, v, dropout=1.0, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"^attention dropout=0.1 draws its mask from a numpy.random.Generator; "
                                          r"pass rng=np.random.default_rng\(seed\), got rng=None$"):
        attention(q, k, v, dropout=0.1)
