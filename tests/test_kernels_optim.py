"""Optimizer update kernels: the compiled forms against their NumPy references.

The compiled forms are compiled here with numba directly, so the comparison runs whatever
``BARENET_NUMBA`` says; the arithmetic is the same operations in the same order, hence the same bits.
"""

import numpy as np
import pytest

from barenet.kernels import optim

numba = pytest.importorskip("numba")
COMPILED = {name: numba.njit(**optim.COMPILE_OPTIONS)(getattr(optim, f"_{name}"))
            for name in ("sgd", "rmsprop", "adam")}

# Parameter sizes packed end to end: the benchmark MLP (784-256-128-10), and a few short odd ones.
LAYOUTS = {"mlp": [784 * 256, 256, 256 * 128, 128, 128 * 10, 10], "odd": [1, 7, 33, 2]}


def _state(layout, dtype, slots, seed=0):
    rng = np.random.default_rng(seed)
    n = sum(layout)
    bounds = np.cumsum([0, *layout])
    segments = np.stack([bounds[:-1], bounds[1:]], axis=1).astype(np.int64)
    arrays = [rng.standard_normal(n).astype(dtype) for _ in range(2)]  # theta, g
    arrays += [np.abs(rng.standard_normal(n)).astype(dtype) for _ in range(slots)]
    return arrays, segments


def _both(name, arrays, segments, *scalars):
    """Run the reference and the compiled kernel on copies; return both results, array by array."""
    out = []
    for kernel in (getattr(optim, f"{name}_reference"), COMPILED[name]):
        copies = [a.copy() for a in arrays]
        for _ in range(3):  # a few steps, so slots feed back
            kernel(*copies, segments, *scalars, np.empty_like(copies[0]))
        out.append(copies)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("mu,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_compiled_matches_reference(dtype, layout, mu, nesterov):
    arrays, segments = _state(LAYOUTS[layout], dtype, slots=1)
    t = np.dtype(dtype).type
    ref, fast = _both("sgd", arrays, segments, t(0.05), t(mu), nesterov)
    for a, b in zip(ref, fast, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(ref[0], arrays[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("eps_inside", [True, False], ids=["keras", "pytorch"])
def test_rmsprop_compiled_matches_reference(dtype, layout, eps_inside):
    arrays, segments = _state(LAYOUTS[layout], dtype, slots=1)
    t = np.dtype(dtype).type
    ref, fast = _both("rmsprop", arrays, segments, t(0.01), t(0.9), t(1e-3), eps_inside)
    for a, b in zip(ref, fast, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(ref[0], arrays[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("decay", [False, True], ids=["adam", "adamw"])
def test_adam_compiled_matches_reference(dtype, layout, decay):
    arrays, segments = _state(LAYOUTS[layout], dtype, slots=2)
    t = np.dtype(dtype).type
    shrink = np.ones(len(segments), dtype=dtype)
    if decay:
        shrink[::2] = 1 - 0.01 * 0.1  # every other parameter decays, as kernels alternate with biases
    ref, fast = _both("adam", arrays, segments, shrink, t(0.9), t(0.999), t(1e-8 / 0.03), t(0.003))
    for a, b in zip(ref, fast, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(ref[0], arrays[0])


def test_adam_shrinks_only_the_listed_segments():
    theta, g = np.ones(6), np.zeros(6)  # zero gradient: only the decay moves theta
    segments = np.array([[0, 4], [4, 6]], dtype=np.int64)
    for kernel in (optim.adam_reference, COMPILED["adam"]):
        t = theta.copy()
        kernel(t, g, np.zeros(6), np.zeros(6), segments, np.array([0.5, 1.0]), 0.9, 0.999, 1e-8, 0.1,
               np.empty(6))
        np.testing.assert_array_equal(t, [0.5, 0.5, 0.5, 0.5, 1.0, 1.0])
