"""PyTorch as an independent reference: the same 3-layer MLP with copied weights, in float64.

Runs only where PyTorch is installed.
"""

import numpy as np
import pytest

import barenet as bn
from barenet.layers import Dense

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(0)
X = RNG.standard_normal((10, 4))

# (id, output activation, loss name, targets, torch loss on (final pre-activation z, targets))
HEADS = [
    ("softmax-ce", "softmax", "categorical_crossentropy", RNG.integers(0, 3, 10),
     lambda z, t: F.cross_entropy(z, torch.as_tensor(t))),
    ("sigmoid-bce", "sigmoid", "binary_crossentropy", RNG.integers(0, 2, (10, 3)).astype(float),
     lambda z, t: F.binary_cross_entropy_with_logits(z, torch.as_tensor(t))),
    ("linear-mse", None, "mse", RNG.standard_normal((10, 3)),
     lambda z, t: F.mse_loss(z, torch.as_tensor(t))),
]
TORCH_ACTIVATION = {"softmax": lambda z: torch.softmax(z, dim=1), "sigmoid": torch.sigmoid, None: lambda z: z}


def _pair(output_activation, loss, optimizer="sgd"):
    """A barenet model and a torch module holding the same weights."""
    model = bn.Sequential([Dense(6, activation="relu", input_dim=4), Dense(5, activation="tanh"),
                           Dense(3, activation=output_activation)], seed=3, dtype="float64")
    model.compile(loss, optimizer)
    model.build()
    linears = [torch.nn.Linear(layer.params["kernel"].shape[0], layer.units, dtype=torch.float64)
               for layer in model.layers]
    with torch.no_grad():
        for linear, layer in zip(linears, model.layers, strict=True):
            linear.weight.copy_(torch.from_numpy(layer.params["kernel"].T.copy()))
            linear.bias.copy_(torch.from_numpy(layer.params["bias"].copy()))
    net = torch.nn.Sequential(linears[0], torch.nn.ReLU(), linears[1], torch.nn.Tanh(), linears[2])
    return model, net


def _torch_params(net):
    """Torch parameters in barenet's order and layout: kernel (in, out), bias, per layer."""
    return [t.detach().numpy().T if t.ndim == 2 else t.detach().numpy()
            for linear in (net[0], net[2], net[4]) for t in (linear.weight, linear.bias)]


def _torch_grads(net):
    return [t.grad.numpy().T if t.ndim == 2 else t.grad.numpy()
            for linear in (net[0], net[2], net[4]) for t in (linear.weight, linear.bias)]


@pytest.mark.parametrize("name, activation, loss, y, torch_loss", HEADS, ids=[h[0] for h in HEADS])
def test_forward_loss_and_gradients_match_pytorch(name, activation, loss, y, torch_loss):
    model, net = _pair(activation, loss)
    z = net(torch.from_numpy(X))
    expected_loss = torch_loss(z, y)
    expected_loss.backward()

    np.testing.assert_allclose(model.predict(X), TORCH_ACTIVATION[activation](z).detach().numpy(),
                               rtol=0, atol=1e-12)
    value, named, _ = model.compute_gradients(X, y)
    # Both take the mean over samples (and over outputs for BCE and MSE); cross-entropy sums over classes.
    assert value == pytest.approx(expected_loss.item(), rel=1e-10, abs=1e-12)
    grads = list(named.values())
    for ours, theirs in zip(grads, _torch_grads(net), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ours, make_theirs", [
    (lambda: bn.optimizers.SGD(0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    (lambda: bn.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    (lambda: bn.optimizers.Adam(0.01, epsilon=1e-8, epsilon_placement="pytorch"),
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8)),
    (lambda: bn.optimizers.AdamW(0.01, weight_decay=0.0, epsilon=1e-8, epsilon_placement="pytorch"),
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.0, eps=1e-8)),
    (lambda: bn.optimizers.RMSprop(0.01, rho=0.99, epsilon=1e-8, epsilon_placement="pytorch"),
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8)),
], ids=["sgd-momentum", "sgd-nesterov", "adam", "adamw", "rmsprop"])
def test_optimizer_steps_match_torch_optim(ours, make_theirs):
    y = HEADS[0][3]
    model, net = _pair("softmax", "categorical_crossentropy", ours())
    opt = make_theirs(net.parameters())
    steps = 3  # several full-batch steps, so momentum and moments matter
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(torch.from_numpy(X)), torch.as_tensor(y)).backward()
        opt.step()
    model.fit(X, y, epochs=steps, batch_size=None, shuffle=False, verbose=0)
    for ours_w, theirs_w in zip(model.get_weights(), _torch_params(net), strict=True):
        np.testing.assert_allclose(ours_w, theirs_w, rtol=1e-10, atol=1e-12)
