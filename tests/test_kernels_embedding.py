"""The compiled embedding-gradient kernel against NumPy's ``np.add.at`` (the reference form)."""

from __future__ import annotations

import numpy as np
import pytest

from barenet.kernels import embedding

pytestmark = pytest.mark.skipif(embedding._scatter_add_rows_fast is None, reason="numba not installed")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scatter_add_rows_gives_the_same_bits_as_add_at_with_repeated_tokens(dtype):
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 17, 4096)  # every token many times
    values = rng.standard_normal((4096, 24)).astype(dtype)
    start = rng.standard_normal((17, 24)).astype(dtype)
    expected, got = start.copy(), start.copy()
    embedding.scatter_add_rows_reference(expected, idx, values)
    embedding.scatter_add_rows(got, idx, values)
    np.testing.assert_array_equal(got, expected)


def test_scatter_add_rows_falls_back_to_the_reference_for_views_and_mixed_dtypes():
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 5, 40)
    values = rng.standard_normal((40, 12))
    out = np.zeros((5, 6))
    embedding.scatter_add_rows(out, idx, values[:, ::2])  # a strided view: np.add.at serves it
    expected = np.zeros((5, 6))
    np.add.at(expected, idx, values[:, ::2])
    np.testing.assert_array_equal(out, expected)
    out32 = np.zeros((5, 12), dtype=np.float32)
    embedding.scatter_add_rows(out32, idx, values)
    expected32 = np.zeros((5, 12), dtype=np.float32)
    np.add.at(expected32, idx, values)
    np.testing.assert_array_equal(out32, expected32)
