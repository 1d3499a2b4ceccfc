"""SimpleRNN, LSTM and GRU against torch.nn.RNN/LSTM/GRU (batch_first=True) with copied weights, in float64.

Layouts: torch stores ``weight_ih : (gates*units, features)``, ``weight_hh : (gates*units, units)`` and two biases
``b_ih``, ``b_hh``; barenet stores the transposes and, for SimpleRNN and LSTM, one bias ``b_ih + b_hh``. LSTM gate
blocks have the same order in both (input, forget, cell, output). GRU blocks are (reset, update, new) in torch
and (update, reset, candidate) in barenet; barenet's ``bias[0]``/``bias[1]`` are torch's ``b_ih``/``b_hh``.
"""

from __future__ import annotations

import numpy as np
import pytest

from barenet.layers import GRU, LSTM, Cache, SimpleRNN

torch = pytest.importorskip("torch")

BATCH, TIME, FEATURES, UNITS = 3, 5, 4, 6


def _gru_order(w: np.ndarray) -> np.ndarray:
    """torch's (reset, update, new) blocks along axis 0 -> barenet's (update, reset, candidate)."""
    r, z, n = np.split(w, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def _copy_weights(layer, module) -> None:
    w_ih = module.weight_ih_l0.detach().numpy()
    w_hh = module.weight_hh_l0.detach().numpy()
    b_ih = module.bias_ih_l0.detach().numpy()
    b_hh = module.bias_hh_l0.detach().numpy()
    if isinstance(layer, GRU):
        layer.params["kernel"][...] = _gru_order(w_ih).T
        layer.params["recurrent_kernel"][...] = _gru_order(w_hh).T
        layer.params["bias"][...] = [_gru_order(b_ih), _gru_order(b_hh)]
    else:
        layer.params["kernel"][...] = w_ih.T
        layer.params["recurrent_kernel"][...] = w_hh.T
        layer.params["bias"][...] = b_ih + b_hh


def _torch_grads(layer, module) -> dict[str, np.ndarray]:
    """The torch gradients in barenet's layout."""
    g_ih, g_hh = module.weight_ih_l0.grad.numpy(), module.weight_hh_l0.grad.numpy()
    gb_ih, gb_hh = module.bias_ih_l0.grad.numpy(), module.bias_hh_l0.grad.numpy()
    if isinstance(layer, GRU):
        return {"kernel": _gru_order(g_ih).T, "recurrent_kernel": _gru_order(g_hh).T,
                "bias": np.stack([_gru_order(gb_ih), _gru_order(gb_hh)])}
    # d(b_ih + b_hh)/d b_ih = 1, so both torch biases have barenet's bias gradient.
    np.testing.assert_allclose(gb_ih, gb_hh, rtol=1e-12)
    return {"kernel": g_ih.T, "recurrent_kernel": g_hh.T, "bias": gb_ih}


CASES = {
    "simplernn": (lambda rs: SimpleRNN(UNITS, return_sequences=rs), lambda **kw: torch.nn.RNN(FEATURES, UNITS, **kw)),
    "simplernn-relu": (lambda rs: SimpleRNN(UNITS, activation="relu", return_sequences=rs),
                       lambda **kw: torch.nn.RNN(FEATURES, UNITS, nonlinearity="relu", **kw)),
    "lstm": (lambda rs: LSTM(UNITS, return_sequences=rs), lambda **kw: torch.nn.LSTM(FEATURES, UNITS, **kw)),
    "gru": (lambda rs: GRU(UNITS, return_sequences=rs), lambda **kw: torch.nn.GRU(FEATURES, UNITS, **kw)),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
def test_outputs_and_gradients_match_torch(name, return_sequences, with_state):
    make_layer, make_module = CASES[name]
    torch.manual_seed(0)
    module = make_module(batch_first=True, dtype=torch.float64)
    layer = make_layer(return_sequences)
    layer.build((TIME, FEATURES), np.random.default_rng(0), "float64")
    _copy_weights(layer, module)

    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, TIME, FEATURES))
    n_states = len(layer.state_names)
    states = [rng.standard_normal((BATCH, UNITS)) for _ in range(n_states)] if with_state else None
    r = rng.standard_normal((BATCH, TIME, UNITS) if return_sequences else (BATCH, UNITS))

    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s[None], requires_grad=True) for s in states] if with_state else None
    if st is None:
        out, _ = module(xt)
    else:
        out, _ = module(xt, st[0] if n_states == 1 else tuple(st))
    out = out if return_sequences else out[:, -1]
    (out * torch.tensor(r)).sum().backward()

    c = Cache()
    y = layer.forward(x, initial_state=None if states is None else (states[0] if n_states == 1 else tuple(states)),
                      cache=c)
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-5, atol=1e-12)
    dx = layer.backward(r, c)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-12)
    for key, expected in _torch_grads(layer, module).items():
        np.testing.assert_allclose(layer.grads[key], expected, rtol=1e-5, atol=1e-12, err_msg=key)
    if with_state:
        got = c["initial_state_grad"]
        got = [got] if n_states == 1 else list(got)
        for g, s in zip(got, st, strict=True):
            np.testing.assert_allclose(g, s.grad.numpy()[0], rtol=1e-5, atol=1e-12)

