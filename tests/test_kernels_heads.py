"""Moving attention heads between the projections' layout and their own: the compiled kernels against their
NumPy references, on the strided views MultiHeadAttention hands them."""

import numpy as np
import pytest

from barenet import threads
from barenet.kernels import heads

pytest.importorskip("numba")


@pytest.fixture
def two_threads():
    threads.set_num_threads(2)
    yield
    threads.set_num_threads(None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("split", [False, True], ids=["one thread", "threads"])
def test_heads_first_and_last_match_their_references(dtype, split, two_threads):
    rng = np.random.default_rng(0)
    # split: enough values for threads.parts to make two slices of the batch
    batch, time, n_heads, width = (64, 64, 4, 32) if split else (6, 5, 3, 4)
    assert len(threads.parts(batch, time * n_heads * width)) == 1
    projections = rng.standard_normal((batch * time, 2 * n_heads * width)).astype(dtype)
    block = projections[:, n_heads * width:].reshape(batch, time, n_heads, width)  # a strided view
    bias = rng.standard_normal((n_heads, width)).astype(dtype)
    with threads.engine(split):
        assert len(threads.parts(batch, time * n_heads * width)) == (2 if split else 1)
        want, got = np.empty((batch, n_heads, time, width), dtype), np.empty((batch, n_heads, time, width), dtype)
        heads.heads_first_reference(block, bias, want)
        heads.heads_first(block, bias, got)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got[2, 1, 3], block[2, 3, 1] + bias[1])

        source = rng.standard_normal((batch, n_heads, time, width)).astype(dtype)
        outs = [np.zeros((batch * time, 3 * n_heads * width), dtype) for _ in range(2)]
        views = [out[:, n_heads * width:2 * n_heads * width].reshape(batch, time, n_heads, width) for out in outs]
        sums = [np.full((n_heads, width), 9, dtype) for _ in range(2)]
        heads.heads_last_reference(source, views[0], sums[0])
        heads.heads_last(source, views[1], sums[1])
        np.testing.assert_array_equal(outs[1], outs[0])  # the columns outside the view untouched
        np.testing.assert_allclose(sums[1], sums[0], rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-12)
        np.testing.assert_allclose(sums[1], source.sum(axis=(0, 2), dtype=np.float64), rtol=1e-6, atol=1e-5)
        heads.heads_last(source, views[1])  # no bias gradient wanted
        np.testing.assert_array_equal(outs[1], outs[0])
