"""Compiled kernels never reach outside their arrays.

The compiled loops do not check bounds: a gradient of another shape than the forward pass's output, or
a winning tap outside its window, made them read and write past their arrays (a wrong result, or a
crashed interpreter). Every public name that leads to one checks what it is given first, and both
forms (compiled and NumPy) refuse it with the same barenet error. Each case runs in a fresh
interpreter per form, since ``BARENET_NUMBA`` is read at import; integer labels of the losses are
tried in ``test_losses.py``.

The ReLU and recurrent kernels run on arrays their layer allocates; a wrong gradient is refused (by
NumPy, before the kernel) when the layer copies or multiplies it, and the embedding lookup checks its ids
(:meth:`barenet.layers.Embedding.indices`). Those are tried too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

_PROBE = r"""
import json, numpy as np
import barenet as bn
from barenet.kernels import NUMBA_ENABLED, pooling

def layer_backward(layer, shape, grad_shape, ids=None):
    layer.build(shape[1:], np.random.default_rng(0), "float32")
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32) if ids is None else np.array(ids)
    cache = L.Cache()
    layer.forward(x, training=True, cache=cache)
    return layer.backward(np.ones(grad_shape, np.float32), cache)

def step(optimizer, grad_size):
    optimizer.step({"w": np.ones(10, np.float32)}, {"w": np.ones(grad_size, np.float32)})

def far_winner():
    x = np.random.default_rng(0).standard_normal((1, 5, 5, 1)).astype(np.float32)
    _, arg = pooling.max_forward(x, (3, 3), (1, 1), ((0, 0), (0, 0)))
    arg[0, 2, 2, 0] = 200
    return pooling.max_backward(np.ones(arg.shape, np.float32), arg, x.shape, (3, 3), (1, 1), ((0, 0), (0, 0)))

L = bn.layers
cases = {
    "max 2x2 batch": lambda: layer_backward(L.MaxPooling2D(2), (2, 6, 6, 1), (8, 3, 3, 1)),
    "max 2x2 image": lambda: layer_backward(L.MaxPooling2D(2), (2, 6, 6, 1), (2, 6, 6, 1)),
    "max 3x3 batch": lambda: layer_backward(L.MaxPooling2D(3, strides=1), (2, 6, 6, 1), (8, 4, 4, 1)),
    "max 3x3 channels": lambda: layer_backward(L.MaxPooling2D(3, strides=1), (2, 6, 6, 1), (2, 4, 4, 3)),
    "max winner": far_winner,
    "average batch": lambda: layer_backward(L.AveragePooling2D(2), (2, 6, 6, 1), (8, 3, 3, 1)),
    "dropout": lambda: layer_backward(L.Dropout(0.5), (3, 5), (12, 5)),
    "batchnorm": lambda: layer_backward(L.BatchNormalization(), (3, 5), (12, 5)),
    "batchnorm image": lambda: layer_backward(L.BatchNormalization(), (3, 4, 4, 2), (1, 4, 4, 2)),
    "sgd": lambda: step(bn.optimizers.SGD(0.1), 3),
    "momentum": lambda: step(bn.optimizers.SGD(0.1, momentum=0.9), 30),
    "rmsprop": lambda: step(bn.optimizers.RMSprop(), 3),
    "adam": lambda: step(bn.optimizers.Adam(), 3),
    "dense relu batch": lambda: layer_backward(L.Dense(4, activation="relu"), (3, 5), (12, 4)),
    "dense relu units": lambda: layer_backward(L.Dense(4, activation="relu"), (3, 5), (3, 12)),
    "lstm batch": lambda: layer_backward(L.LSTM(4, return_sequences=True), (2, 3, 5), (8, 3, 4)),
    "gru units": lambda: layer_backward(L.GRU(4, return_sequences=True), (2, 3, 5), (2, 3, 12)),
    "embedding id": lambda: layer_backward(L.Embedding(5, 2), (2, 3), (2, 3, 2), ids=[[0, 1, 5], [0, 0, 0]]),
}
out = {"numba": NUMBA_ENABLED}
for name, case in cases.items():
    try:
        case()
        out[name] = None
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc), isinstance(exc, ValueError)]
print(json.dumps(out))
"""

CASES = {
    "max 2x2 batch": ("ShapeError", "max pooling backward expects a gradient of shape (2, 3, 3, 1) (the forward "
                                    "pass's output), got (8, 3, 3, 1)"),
    "max 2x2 image": ("ShapeError", "max pooling backward expects a gradient of shape (2, 3, 3, 1) (the forward "
                                    "pass's output), got (2, 6, 6, 1)"),
    "max 3x3 batch": ("ShapeError", "max pooling backward expects a gradient of shape (2, 4, 4, 1) (the forward "
                                    "pass's output), got (8, 4, 4, 1)"),
    "max 3x3 channels": ("ShapeError", "max pooling backward expects a gradient of shape (2, 4, 4, 1) (the "
                                       "forward pass's output), got (2, 4, 4, 3)"),
    "max winner": ("DataError", "max pooling backward got winning tap 200; a 3x3 window's taps are 0 to 8"),
    "average batch": ("ShapeError", "average pooling backward expects a gradient of shape (2, 3, 3, 1) (the "
                                    "forward pass's output), got (8, 3, 3, 1)"),
    "dropout": ("ShapeError", "dropout backward expects a gradient of 15 values (the forward pass's input), "
                              "got 60"),
    "batchnorm": ("ShapeError", "batch normalization backward expects a gradient of the forward pass's input "
                                "shape, (3, 5, 1) as (outer, channels, inner), got (12, 5, 1)"),
    "batchnorm image": ("ShapeError", "batch normalization backward expects a gradient of the forward pass's input "
                                      "shape, (48, 2, 1) as (outer, channels, inner), got (16, 2, 1)"),
    "sgd": ("ShapeError", "sgd update expects a gradient of the parameters' 10 values, got 3"),
    "momentum": ("ShapeError", "sgd update expects a gradient of the parameters' 10 values, got 30"),
    "rmsprop": ("ShapeError", "rmsprop update expects a gradient of the parameters' 10 values, got 3"),
    "adam": ("ShapeError", "adam update expects a gradient of the parameters' 10 values, got 3"),
}


@pytest.fixture(scope="module", params=["1", "0"], ids=["compiled", "numpy"])
def probe(request):
    if request.param == "1" and importlib.util.find_spec("numba") is None:
        pytest.skip("numba not installed")
    env = {**os.environ, "BARENET_NUMBA": request.param}
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]  # a kernel that writes past its arrays can abort
    outcome = json.loads(result.stdout)
    assert outcome.pop("numba") == (request.param == "1")
    return outcome


#: Refused by the layer before its kernel runs (by NumPy's checks where the layer copies a gradient).
REFUSED_BY_THE_CALLER = ["dense relu batch", "dense relu units", "lstm batch", "gru units", "embedding id"]


@pytest.mark.parametrize("case", CASES)
def test_a_kernel_is_never_handed_arrays_it_would_overrun(probe, case):
    assert probe[case][:2] == list(CASES[case])


@pytest.mark.parametrize("case", REFUSED_BY_THE_CALLER)
def test_the_callers_of_the_other_kernels_refuse_what_would_overrun_them(probe, case):
    assert probe[case] is not None and probe[case][2], probe[case]
