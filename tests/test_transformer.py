"""Transformer blocks written with the functional API (``examples/char_transformer.py``'s ten lines) against
``torch.nn.TransformerEncoderLayer`` in float64, and the example itself as a subprocess."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import barenet as bn

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "char_transformer.py"


def _example():
    spec = importlib.util.spec_from_file_location("char_transformer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm", "post-norm"])
def test_an_encoder_block_matches_pytorch_transformer_encoder_layer(norm_first):
    torch = pytest.importorskip("torch")
    B, T, E, H, F = 3, 6, 8, 2, 16
    x_in = bn.Input(shape=(T, E), name="x")
    out = _example().transformer_block(x_in, H, E, 0.0, norm_first=norm_first, causal=False, feed_forward=F)
    model = bn.Model(x_in, out, seed=0, dtype="float64")
    model.compile(loss="mse", optimizer="sgd")
    rng = np.random.default_rng(1)
    for layer in model.layers:  # non-trivial normalization parameters and biases
        for name, p in layer.params.items():
            if name in ("gamma", "beta") or name.endswith("bias"):
                p[...] = rng.uniform(-0.5, 1.5, p.shape)
    X, Y = rng.standard_normal((B, T, E)), rng.standard_normal((B, T, E))
    got = model.compute_gradients(X, Y)

    ref = torch.nn.TransformerEncoderLayer(E, H, F, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=norm_first, dtype=torch.float64)
    layer = {type(lyr).__name__ + str(i): lyr for i, lyr in enumerate(model.layers)}
    mha = next(lyr for lyr in model.layers if isinstance(lyr, bn.layers.MultiHeadAttention))
    norms = [lyr for lyr in model.layers if isinstance(lyr, bn.layers.LayerNormalization)]
    dense = [lyr for lyr in model.layers if isinstance(lyr, bn.layers.Dense)]
    assert len(norms) == 2 and len(dense) == 2, layer
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(t(np.concatenate([mha.params[f"{n}_kernel"].reshape(E, E).T
                                                              for n in ("query", "key", "value")])))
        ref.self_attn.in_proj_bias.copy_(t(np.concatenate([mha.params[f"{n}_bias"].reshape(-1)
                                                            for n in ("query", "key", "value")])))
        ref.self_attn.out_proj.weight.copy_(t(mha.params["output_kernel"].reshape(E, E).T))
        ref.self_attn.out_proj.bias.copy_(t(mha.params["output_bias"]))
        for mine, theirs in zip(norms, (ref.norm1, ref.norm2), strict=True):
            theirs.weight.copy_(t(mine.params["gamma"]))
            theirs.bias.copy_(t(mine.params["beta"]))
        for mine, theirs in zip(dense, (ref.linear1, ref.linear2), strict=True):
            theirs.weight.copy_(t(mine.params["kernel"].T))
            theirs.bias.copy_(t(mine.params["bias"]))
    tx = t(X).requires_grad_(True)
    y = ref(tx)
    loss = ((y - t(Y)) ** 2).mean()
    loss.backward()
    np.testing.assert_allclose(model.predict(X), y.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert got.loss == pytest.approx(loss.item(), rel=1e-11)
    np.testing.assert_allclose(got.inputs, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    index = {id(lyr): i for i, lyr in enumerate(model.layers)}

    def grad(lyr, name):
        return got.parameters[f"layers.{index[id(lyr)]}.{name}"]

    pairs = [(grad(mha, "output_kernel").reshape(E, E).T, ref.self_attn.out_proj.weight.grad),
             (grad(mha, "output_bias"), ref.self_attn.out_proj.bias.grad)]
    w = ref.self_attn.in_proj_weight.grad
    b = ref.self_attn.in_proj_bias.grad
    for j, n in enumerate(("query", "key", "value")):
        pairs.append((grad(mha, f"{n}_kernel").reshape(E, E).T, w[j * E:(j + 1) * E]))
        if n != "key":  # the key bias's gradient is zero in both (the softmax cancels it)
            pairs.append((grad(mha, f"{n}_bias").reshape(-1), b[j * E:(j + 1) * E]))
    for mine, theirs in zip(norms, (ref.norm1, ref.norm2), strict=True):
        pairs += [(grad(mine, "gamma"), theirs.weight.grad), (grad(mine, "beta"), theirs.bias.grad)]
    for mine, theirs in zip(dense, (ref.linear1, ref.linear2), strict=True):
        pairs += [(grad(mine, "kernel").T, theirs.weight.grad), (grad(mine, "bias"), theirs.bias.grad)]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-10, atol=1e-12)


def test_the_character_transformer_example_trains_and_generates_with_and_without_a_cache():
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--minutes", "0.05", "--steps", "3", "--layers", "1",
                           "--width", "16", "--heads", "2", "--context", "16", "--batch", "4", "--generate", "24"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"validation bits per character: \d+\.\d{3} \(bigram model: \d+\.\d{3}\)", out), out
    assert re.search(r"generation: \d+ characters/s with the key/value cache, \d+ without", out), out
    same = re.search(r"same characters both ways: (\d+)/24", out)
    assert same and int(same.group(1)) == 24, out
