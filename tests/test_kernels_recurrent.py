"""The LSTM/GRU step kernels: compiled forms against their NumPy references, and the layers on either form.

Where numba is absent or ``BARENET_NUMBA=0``, the compiled forms are ``None`` and the names the layers call
must be the references themselves; the comparisons then check the references against themselves.
"""

from __future__ import annotations

import numpy as np
import pytest

from barenet.kernels import recurrent as K
from barenet.layers import GRU, LSTM, Bidirectional, Cache
from barenet.layers import recurrent as recurrent_module

# (batch, units): one sample and one unit, odd sizes, and the benchmark's size.
SHAPES = [(1, 1), (3, 7), (64, 128)]
PAIRS = {
    "lstm_forward": (K.lstm_forward_fast, K.lstm_forward_reference),
    "lstm_backward": (K.lstm_backward_fast, K.lstm_backward_reference),
    "gru_forward": (K.gru_forward_fast, K.gru_forward_reference),
    "gru_backward": (K.gru_backward_fast, K.gru_backward_reference),
}
F32_TOL = {"rtol": 2e-6, "atol": 2e-6}


def _fast_or_reference(name: str):
    fast, reference = PAIRS[name]
    return fast if fast is not None else reference


def _arrays(kernel: str, batch: int, n: int, dtype, seed: int = 0) -> list[np.ndarray]:
    """Arguments of ``kernel`` as the layers pass them: gates in (0, 1), pre-activations up to +-6."""
    rng = np.random.default_rng(seed)
    gates = 4 if kernel.startswith("lstm") else 3

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    def activated():
        a = rng.uniform(0.01, 0.99, (batch, gates * n))
        a[:, 2 * n:3 * n] = 2 * a[:, 2 * n:3 * n] - 1  # the tanh block is in (-1, 1)
        return a.astype(dtype)

    wide, narrow = (batch, gates * n), (batch, n)
    if kernel == "lstm_forward":  # a, hu, c_prev, c, tanh_c, h
        return [normal(*wide, scale=3), normal(*wide, scale=3), normal(*narrow), np.zeros(narrow, dtype),
                np.zeros(narrow, dtype), np.zeros(narrow, dtype)]
    if kernel == "lstm_backward":  # a, c_prev, tanh_c, g_out, dh, dc, dz
        return [activated(), normal(*narrow), np.tanh(normal(*narrow)), normal(*narrow), normal(*narrow),
                normal(*narrow), np.zeros(wide, dtype)]
    if kernel == "gru_forward":  # a, hu, b_h, h_prev, u_h, h
        return [normal(*wide, scale=3), normal(*wide, scale=3), normal(gates * n), np.tanh(normal(*narrow)),
                np.zeros(narrow, dtype), np.zeros(narrow, dtype)]
    # gru_backward: a, h_prev, u_h, g_out, dh, dhz, da, du
    return [activated(), np.tanh(normal(*narrow)), normal(*narrow), normal(*narrow), normal(*narrow), normal(*narrow),
            np.zeros(wide, dtype), np.zeros(wide, dtype)]


@pytest.mark.parametrize("name", PAIRS)
@pytest.mark.parametrize(("batch", "n"), SHAPES)
def test_compiled_kernel_matches_its_reference_in_float32(name, batch, n):
    fast, reference = PAIRS[name]
    expected = _arrays(name, batch, n, np.float32)
    got = [a.copy() for a in expected]
    reference(*expected)
    _fast_or_reference(name)(*got)
    for position, (g, e) in enumerate(zip(got, expected, strict=True)):
        np.testing.assert_allclose(g, e, err_msg=f"{name} argument {position}", **F32_TOL)


@pytest.mark.parametrize("name", PAIRS)
def test_float32_kernels_agree_with_float64_arithmetic(name):
    """Both float32 forms stay within float32 rounding of the same step done in float64."""
    _, reference = PAIRS[name]
    exact = _arrays(name, 5, 9, np.float64, seed=3)
    single = [a.astype(np.float32) for a in exact]
    reference(*exact)
    _fast_or_reference(name)(*single)
    for position, (s, e) in enumerate(zip(single, exact, strict=True)):
        np.testing.assert_allclose(s, e, err_msg=f"{name} argument {position}", **F32_TOL)


@pytest.mark.parametrize("name", PAIRS)
def test_float64_arrays_take_the_reference(name):
    """The compiled kernels approximate tanh for float32 only; float64 results are the reference's, bit for bit."""
    _, reference = PAIRS[name]
    expected = _arrays(name, 3, 4, np.float64, seed=5)
    got = [a.copy() for a in expected]
    reference(*expected)
    getattr(K, name)(*got)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_the_layers_call_the_compiled_form_when_there_is_one():
    for name, (fast, reference) in PAIRS.items():
        public = getattr(K, name)
        if fast is None:
            assert public is reference, name
        else:
            assert public is not reference and public.__name__ == name


def test_the_approximate_tanh_and_sigmoid_are_within_a_few_ulps():
    """Through the LSTM forward kernel (hu = 0, c_prev = 0, so c = i g): gate values against float64 math,
    over the whole float32 range that matters, extremes included."""
    x = np.concatenate([np.linspace(-30, 30, 40_001), [0.0, 1e-30, -1e-30, 1e-8, 1e4, -1e4, 8.99, 9.01, -9.01]])
    n = len(x)
    a = np.tile(x, 4)[None].astype(np.float32)
    out = [np.zeros((1, n), np.float32) for _ in range(3)]
    _fast_or_reference("lstm_forward")(a, np.zeros_like(a), np.zeros((1, n), np.float32), *out)
    x32 = x.astype(np.float32).astype(np.float64)
    sigmoid = 0.5 * (1 + np.tanh(x32 / 2))
    tanh = np.tanh(x32)
    got = a[0].astype(np.float64)
    ulp = np.spacing(np.float32(1)) / 2  # float32 rounding at values in [0.5, 1)
    for block, expected in ((0, sigmoid), (1, sigmoid), (2, tanh), (3, sigmoid)):
        err = np.abs(got[block * n:(block + 1) * n] - expected)
        assert np.all(err <= 8 * ulp * np.maximum(np.abs(expected), 2**-126) + 4 * ulp), (block, err.max())
    assert np.all(np.abs(got) <= 1)


# --------------------------------------------------------------------- whole sequences
SEQUENCE_PAIRS = {
    "lstm_sequence_forward": (K.lstm_sequence_forward_fast, K.lstm_sequence_forward_reference),
    "lstm_sequence_backward": (K.lstm_sequence_backward_fast, K.lstm_sequence_backward_reference),
    "gru_sequence_forward": (K.gru_sequence_forward_fast, K.gru_sequence_forward_reference),
    "gru_sequence_backward": (K.gru_sequence_backward_fast, K.gru_sequence_backward_reference),
}


def _sequence_arrays(kernel: str, T: int, B: int, n: int, seed: int = 0) -> list[np.ndarray]:
    """float32 arguments of a sequence kernel (without the rows), as a layer's forward pass leaves them."""
    rng = np.random.default_rng(seed)
    gates = 4 if kernel.startswith("lstm") else 3

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    A, U = normal(T, B, gates * n, scale=2), normal(n, gates * n, scale=0.3)
    H, C, aux = normal(T + 1, B, n), normal(T + 1, B, n), normal(T, B, n)
    hu, dh, dc = normal(B, gates * n), np.zeros((B, n), np.float32), np.zeros((B, n), np.float32)
    if kernel.endswith("backward"):  # the forward pass's outputs, so that gates are in (0, 1) as they would be
        if kernel.startswith("lstm"):
            K.lstm_sequence_forward_reference(A, U, H, C, aux, hu, 0, B)
            return [A, U, C, aux, normal(T, B, n), dh, dc, normal(T, B, gates * n)]
        K.gru_sequence_forward_reference(A, U, normal(gates * n), H, aux, hu, 0, B)
        return [A, U, H, aux, normal(T, B, n), dh, dc, normal(T, B, gates * n), normal(T, B, gates * n)]
    if kernel.startswith("lstm"):
        return [A, U, H, C, aux, hu]
    return [A, U, normal(gates * n), H, aux, hu]


@pytest.mark.parametrize("name", SEQUENCE_PAIRS)
@pytest.mark.parametrize(("T", "B", "n", "start", "stop"), [(1, 1, 1, 0, 1), (6, 5, 7, 1, 4), (3, 64, 128, 32, 64)])
def test_compiled_sequence_loop_matches_its_reference_on_its_rows_only(name, T, B, n, start, stop):
    """The compiled loop over time steps against the Python loop over the same step kernels (the NumPy
    references): the rows ``start:stop`` to float rounding, every other row left as it was."""
    fast, reference = SEQUENCE_PAIRS[name]
    if fast is None:
        pytest.skip("compiled kernels are off")
    before = _sequence_arrays(name, T, B, n)
    expected, got = [a.copy() for a in before], [a.copy() for a in before]
    reference(*expected, start, stop)
    fast(*got, start, stop)
    outside = np.r_[0:start, stop:B]
    for position, (g, e, b) in enumerate(zip(got, expected, before, strict=True)):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(e).max()),
                                   err_msg=f"{name} argument {position}")
        if b.ndim == 3 and b.shape[1] == B:  # (time, batch, ...): rows outside the range untouched
            np.testing.assert_array_equal(g[:, outside], b[:, outside], err_msg=f"{name} argument {position}")


def test_the_compiled_loop_is_used_for_float32_only():
    assert not K.compiled_sequences(np.float64)
    assert K.compiled_sequences(np.float32) == (K.lstm_sequence_forward_fast is not None)
    assert LSTM(3).splits_batch == GRU(3).splits_batch == K.compiled_sequences(np.float32)
    assert not GRU(3, reset_after=False).splits_batch
    assert not recurrent_module.SimpleRNN(3).splits_batch
    layer = LSTM(3)
    layer.build((2, 2), np.random.default_rng(0), "float64")
    assert not layer.splits_batch


# --------------------------------------------------------------------- the layers on each form
# "compiled loop": the layers as they run; "per-step loop": the Python loop over time steps with the compiled
# step kernels (the form before the compiled loop); "NumPy steps": the Python loop with the NumPy step kernels.
FORMS = {
    "per-step loop": {name: pair[1] for name, pair in SEQUENCE_PAIRS.items()},
    "NumPy steps": {**{name: pair[1] for name, pair in SEQUENCE_PAIRS.items()},
                    **{name: pair[1] for name, pair in PAIRS.items()}},
}


def _layer(kind, return_sequences, seed=0, **options):
    layer = kind(16, return_sequences=return_sequences, **options)
    layer.build((6, 5), np.random.default_rng(seed), "float32")
    for key, param in layer.params.items():
        if key.endswith("bias"):
            param[...] += np.random.default_rng(seed + 1).normal(0, 0.3, param.shape)
    return layer


def _run(layer, x, g, states):
    """Output, input gradient, every parameter gradient and the initial-state gradients; then a second call that
    carries on from the first one's final state (a sequence in two chunks), with its results too."""
    out = []
    for _ in range(2):
        c = Cache()
        kwargs = {} if states is None else {"initial_state": states}
        y = layer.forward(x, training=True, cache=c, **kwargs)
        dx = layer.backward(g, c)
        state_grads = c.get("initial_state_grad")
        state_grads = ([] if state_grads is None else [state_grads] if isinstance(state_grads, np.ndarray)
                       else list(state_grads))
        out += [y, dx, *(layer.grads[k].copy() for k in sorted(layer.grads)), *state_grads]
        states = c.get("final_state")
    return out


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "Bidirectional LSTM", "Bidirectional GRU"])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
def test_float32_layers_give_the_same_results_on_every_form(form, kind, return_sequences, with_state, monkeypatch):
    """The compiled time loop against the per-step loops: forward, every gradient and the state gradients, a
    second chunk carrying on from the first's final state; random data, nonzero biases."""
    rng = np.random.default_rng(7)
    cell = LSTM if kind.endswith("LSTM") else GRU
    bidirectional = kind.startswith("Bidirectional")
    width = 32 if bidirectional else 16
    x = rng.standard_normal((4, 6, 5)).astype(np.float32)
    g = rng.standard_normal((4, 6, width) if return_sequences else (4, width)).astype(np.float32)
    states = None
    if with_state and not bidirectional:
        parts = [rng.standard_normal((4, 16)).astype(np.float32) for _ in cell.state_names]
        states = parts[0] if len(parts) == 1 else tuple(parts)
    if bidirectional:
        layer = Bidirectional(cell(16, return_sequences=return_sequences))
        layer.build((6, 5), np.random.default_rng(0), "float32")
        if with_state:
            for sub in (layer.forward_layer, layer.backward_layer):
                parts = [rng.standard_normal((16,)).astype(np.float32) for _ in cell.state_names]
                sub.initial_state = parts[0] if len(parts) == 1 else tuple(parts)
    else:
        layer = _layer(cell, return_sequences)
    compiled = _run(layer, x, g, states)
    for name, function in FORMS[form].items():
        monkeypatch.setattr(K, name, function)
    other = _run(layer, x, g, states)
    assert len(compiled) == len(other)
    for position, (c, r) in enumerate(zip(compiled, other, strict=True)):
        scale = np.abs(r).max()
        np.testing.assert_allclose(c, r, rtol=1e-5, atol=1e-5 * scale, err_msg=f"output {position}")
