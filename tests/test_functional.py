"""barenet.functional's error function and normal CDF against the math module, over the whole float64 range."""

from __future__ import annotations

import math

import numpy as np
import pytest

from barenet import functional as F

Z = np.concatenate([np.linspace(-27, 27, 5401), np.random.default_rng(0).standard_normal(500) * 3,
                    [0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 1e-300, -1e-300, 1e10, -1e10]])


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    normal = np.abs(want) > 1e-300  # subnormal results carry fewer digits in any implementation
    return float(np.max(np.abs(got[normal] - want[normal]) / np.abs(want[normal])))


def test_erf_and_erfc_agree_with_the_math_module_to_a_few_ulps():
    assert _relative(F.erf(Z), np.array([math.erf(z) for z in Z])) < 4e-15
    assert _relative(F.erfc(Z), np.array([math.erfc(z) for z in Z])) < 4e-15


def test_normal_cdf_keeps_relative_accuracy_in_the_lower_tail():
    want = np.array([0.5 * math.erfc(-z / math.sqrt(2)) for z in Z])
    assert _relative(F.normal_cdf(Z), want) < 4e-15


def test_limits_nan_and_dtypes():
    with np.errstate(all="raise"):
        values = F.erfc(np.array([-np.inf, np.inf, 40.0, -40.0]))
    np.testing.assert_array_equal(values, [2.0, 0.0, 0.0, 2.0])
    assert np.isnan(F.erf(np.array([np.nan]))[0]) and np.isnan(F.erfc(np.array([np.nan]))[0])
    assert F.erf(np.zeros(3, np.float32)).dtype == np.float32 and F.erf(np.arange(3)).dtype == np.float64


@pytest.mark.parametrize("fn, grad", [(F.gelu, F.gelu_grad), (F.silu, F.silu_grad), (F.mish, F.mish_grad),
                                      (lambda z: F.gelu(z, True), lambda z: F.gelu_grad(z, True))])
def test_activation_derivatives_match_central_differences(fn, grad):
    z = np.linspace(-6, 6, 241)
    h = 1e-6
    np.testing.assert_allclose(grad(z), (fn(z + h) - fn(z - h)) / (2 * h), rtol=1e-7, atol=1e-9)
