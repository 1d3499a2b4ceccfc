"""Initializers: the spread each one promises, dtypes, names and serialization."""

import numpy as np
import pytest

import barenet as bn
from barenet import initializers

FAN_IN, FAN_OUT = 200, 50
# name -> (variance the draw must have, largest absolute value allowed or None for unbounded)
SPREAD = {
    "he_normal": (2 / FAN_IN, None),
    "he_uniform": (2 / FAN_IN, np.sqrt(6 / FAN_IN)),
    "glorot_normal": (2 / (FAN_IN + FAN_OUT), None),
    "glorot_uniform": (2 / (FAN_IN + FAN_OUT), np.sqrt(6 / (FAN_IN + FAN_OUT))),
    "normal": (0.01**2, None),
    "uniform": (0.05**2 / 3, 0.05),
    "uniform_fan_in": (1 / (3 * FAN_IN), 1 / np.sqrt(FAN_IN)),
}


@pytest.mark.parametrize("name", sorted(SPREAD))
def test_random_initializers_have_the_documented_spread(name):
    w = initializers.get(name)((FAN_IN, 400), FAN_IN, FAN_OUT, np.random.default_rng(0), np.float32)
    variance, limit = SPREAD[name]
    assert w.dtype == np.float32 and w.shape == (FAN_IN, 400)
    assert abs(float(w.mean())) < 0.05 * np.sqrt(variance)
    assert float(w.var()) == pytest.approx(variance, rel=0.03)
    if limit is not None:
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit


def test_constant_and_orthogonal_initializers():
    rng = np.random.default_rng(1)
    assert not initializers.zeros((3, 2), 3, 2, rng, np.float64).any()
    assert (initializers.ones((4,), 4, 4, rng, np.float64) == 1).all()
    q = initializers.orthogonal((6, 6), 6, 6, rng, np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(6), atol=1e-12)


def test_uniform_fan_in_reproduces_the_torch_default_bounds_for_dense_and_conv():
    dense = bn.layers.Dense(30, kernel_initializer="uniform_fan_in", bias_initializer="uniform_fan_in")
    dense.build((100,), np.random.default_rng(2), "float64")
    for name in ("kernel", "bias"):
        assert np.abs(dense.params[name]).max() <= 0.1  # 1 / sqrt(100)
    conv = bn.layers.Conv2D(8, 3, kernel_initializer="uniform_fan_in")
    conv.build((5, 5, 4), np.random.default_rng(3), "float64")
    assert np.abs(conv.params["kernel"]).max() <= 1 / np.sqrt(36)


def test_named_initializers_serialize_by_name():
    for name in SPREAD:
        init = initializers.get(name)
        assert initializers.deserialize(initializers.serialize(init)) is init or name == "normal"
