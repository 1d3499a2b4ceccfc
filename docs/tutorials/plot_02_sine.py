"""
Fitting a sine
==============

Regression: learn :math:`y = \\sin(x)` on :math:`[-\\pi, \\pi]` from 500 random points. The network is 1-20-1,
20 sigmoid units and a linear output, so what it computes is a sum of 20 shifted and scaled sigmoids,
:math:`\\hat y = \\sum_j v_j\\,\\sigma(w_j x + b_j) + c`; training moves the 61 numbers until that sum lies on the
curve. The loss is the mean squared error, minimized with Adam on batches of 32 points.

This is ``examples/sine.py``; ``python examples/sine.py --plot sine.png`` runs it from the command line
(300 epochs, as here) and saves the same figure.
"""

# %%
# The data: points drawn uniformly from the interval, targets exact.
import matplotlib.pyplot as plt
import numpy as np

import barenet as bn

rng = np.random.default_rng(0)
x_train = rng.uniform(-np.pi, np.pi, size=(500, 1))
y_train = np.sin(x_train)

# %%
# The model: ``Dense(20, activation="sigmoid")`` then ``Dense(1)`` (no activation: a regression output can take
# any value). float64 keeps the small errors at the end of training visible.

model = bn.Sequential([
    bn.layers.Dense(20, activation="sigmoid", input_dim=1),
    bn.layers.Dense(1),
], seed=0, dtype="float64")
model.compile(loss="mean_squared_error", optimizer=bn.optimizers.Adam(0.01))
history = model.fit(x_train, y_train, epochs=300, batch_size=32, verbose=0)

# %%
# How good is the fit away from the training points? The mean squared error on 1,000 evenly spaced points
# the network never saw:

grid = np.linspace(-np.pi, np.pi, 1000)[:, None]
prediction = model.predict(grid)
print(f"training loss after 300 epochs: {history.history['loss'][-1]:.6f}")
print(f"MSE on 1000 grid points: {np.mean((prediction - np.sin(grid)) ** 2):.6f}")

# %%
# The fit, and the loss per epoch on a log scale: fast progress at first, then a long, slow refinement.

fig, (ax_fit, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
ax_fit.scatter(x_train[:, 0], y_train[:, 0], s=6, alpha=0.3, color="gray", label="training points")
ax_fit.plot(grid[:, 0], np.sin(grid[:, 0]), color="black", lw=1, label="sin(x)")
ax_fit.plot(grid[:, 0], prediction[:, 0], color="tab:red", lw=2, ls="--", label="network")
ax_fit.set(xlabel="x", ylabel="y", title="1-20-1 network fit")
ax_fit.legend()
ax_loss.plot(np.arange(1, len(history.history["loss"]) + 1), history.history["loss"])
ax_loss.set(xlabel="epoch", ylabel="training MSE", yscale="log", title="loss per epoch")
fig.tight_layout()

# %%
# What the hidden units do
# ------------------------
# Each hidden unit is one sigmoid step, :math:`\sigma(w_j x + b_j)`, placed and scaled by training. Drawing
# each unit's contribution :math:`v_j\,\sigma(w_j x + b_j)` shows how the sum builds the curve.

dense_hidden, dense_out = model.layers
W, b = dense_hidden.params["kernel"], dense_hidden.params["bias"]
v, c = dense_out.params["kernel"][:, 0], dense_out.params["bias"][0]
contributions = bn.functional.sigmoid(grid @ W + b) * v

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(grid[:, 0], contributions, lw=0.8, alpha=0.7)
ax.plot(grid[:, 0], contributions.sum(axis=1) + c, color="black", lw=2, label="sum + output bias")
ax.set(xlabel="x", ylabel="contribution", title="the 20 hidden units, each scaled by its output weight")
ax.legend()
fig.tight_layout()
