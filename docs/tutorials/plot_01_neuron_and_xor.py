"""
A neuron and XOR, by hand and then with barenet
===============================================

A single artificial neuron computes a weighted sum of its inputs plus a bias and squashes it with a sigmoid,
:math:`p = \\sigma(w \\cdot x + b)`. Trained by gradient descent it learns any rule that a straight line can
separate, such as AND. XOR (1 when exactly one input is 1) is the smallest problem no straight line separates;
one hidden layer solves it. This page writes both in NumPy, forward pass, backward pass and update, and then
builds the same network with barenet in a few lines.

The last part as a script is ``python examples/xor.py``: the same network, trained with a learning rate of 0.01
for 10,000 steps where this page takes 0.5 for 2,000.
"""

# %%
# One neuron learns AND
# ---------------------
# The four inputs, and the targets of AND and XOR.
import matplotlib.pyplot as plt
import numpy as np

import barenet as bn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
y_and = np.array([0, 0, 0, 1], dtype=np.float64)
y_xor = np.array([0, 1, 1, 0], dtype=np.float64)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# %%
# With the binary cross-entropy loss :math:`L = -\frac1n\sum_i t_i\log p_i + (1-t_i)\log(1-p_i)`, the gradient
# with respect to the neuron's sum :math:`z_i` is simply :math:`(p_i - t_i)/n`: the error. The chain rule
# then gives :math:`\partial L/\partial w = X^\top (p - t)/n` and :math:`\partial L/\partial b = \sum_i(p_i -
# t_i)/n`; gradient descent steps against them.


def train_neuron(X, t, steps=2000, learning_rate=1.0, seed=0):
    rng = np.random.default_rng(seed)
    w, b = rng.normal(0, 0.1, 2), 0.0
    losses = []
    for _ in range(steps):
        p = sigmoid(X @ w + b)                      # forward
        losses.append(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))
        error = (p - t) / len(t)                    # dL/dz
        w -= learning_rate * X.T @ error            # backward and update
        b -= learning_rate * error.sum()
    return w, b, losses


w_and, b_and, losses_and = train_neuron(X, y_and)
w_xor, b_xor, losses_xor = train_neuron(X, y_xor)
print("AND:", (sigmoid(X @ w_and + b_and) > 0.5).astype(int), "target", y_and.astype(int))
print("XOR:", (sigmoid(X @ w_xor + b_xor) > 0.5).astype(int), "target", y_xor.astype(int))

# %%
# AND is learned; XOR is not. A neuron's decision boundary, :math:`w \cdot x + b = 0`, is a straight line,
# and no line puts (0, 1) and (1, 0) on one side and (0, 0) and (1, 1) on the other.

grid = np.stack(np.meshgrid(np.linspace(-0.5, 1.5, 200), np.linspace(-0.5, 1.5, 200)), axis=-1).reshape(-1, 2)


def show(ax, probability, targets, title):
    ax.contourf(grid[:, 0].reshape(200, 200), grid[:, 1].reshape(200, 200), probability.reshape(200, 200),
                levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=targets, cmap="RdBu_r", edgecolors="black", s=120, vmin=0, vmax=1)
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$", aspect="equal")


fig, axes = plt.subplots(1, 3, figsize=(13, 4))
show(axes[0], sigmoid(grid @ w_and + b_and), y_and, "one neuron, AND")
show(axes[1], sigmoid(grid @ w_xor + b_xor), y_xor, "one neuron, XOR: no line works")
axes[2].plot(losses_and, label="AND")
axes[2].plot(losses_xor, label="XOR")
axes[2].set(title="training loss", xlabel="step", ylabel="cross-entropy", yscale="log")
axes[2].legend()
fig.tight_layout()

# %%
# A hidden layer solves XOR
# -------------------------
# Two layers: :math:`h = \mathrm{ReLU}(X W_1 + b_1)` with 10 hidden units, then :math:`p = \sigma(h W_2 +
# b_2)`. Backpropagation is the chain rule applied layer by layer, from the loss back to the input:
#
# - output layer: :math:`\delta_2 = (p - t)/n`, :math:`\partial L/\partial W_2 = h^\top\delta_2`;
# - back through :math:`W_2`: :math:`\partial L/\partial h = \delta_2 W_2^\top`;
# - through the ReLU, whose derivative is 1 where its input was positive and 0 elsewhere:
#   :math:`\delta_1 = \partial L/\partial h \odot [X W_1 + b_1 > 0]`, and :math:`\partial L/\partial W_1 =
#   X^\top\delta_1`.


def train_two_layers(X, t, hidden=10, steps=5000, learning_rate=0.5, seed=0):
    rng = np.random.default_rng(seed)
    W1, b1 = rng.normal(0, np.sqrt(2 / 2), (2, hidden)), np.zeros(hidden)   # He initialization for ReLU
    W2, b2 = rng.normal(0, np.sqrt(1 / hidden), (hidden, 1)), np.zeros(1)
    t = t[:, None]
    losses = []
    for _ in range(steps):
        z1 = X @ W1 + b1                                  # forward
        h = np.maximum(z1, 0)
        p = sigmoid(h @ W2 + b2)
        losses.append(float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))))
        d2 = (p - t) / len(t)                             # backward
        dW2, db2 = h.T @ d2, d2.sum(0)
        d1 = (d2 @ W2.T) * (z1 > 0)
        dW1, db1 = X.T @ d1, d1.sum(0)
        for param, grad in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2)):
            param -= learning_rate * grad                 # update
    return (W1, b1, W2, b2), losses


(W1, b1, W2, b2), losses_by_hand = train_two_layers(X, y_xor)


def predict_by_hand(x):
    return sigmoid(np.maximum(x @ W1 + b1, 0) @ W2 + b2)[:, 0]


print("two layers by hand:", (predict_by_hand(X) > 0.5).astype(int), "final loss", round(losses_by_hand[-1], 4))

# %%
# The same network with barenet
# -----------------------------
# barenet holds exactly these pieces: a ``Dense`` layer is :math:`xW + b` followed by its activation, the loss
# is fused with the final sigmoid (so the gradient :math:`p - t` is computed on the logits, without overflow),
# and ``fit`` runs the forward pass, the backward pass and the optimizer step for every batch. This is the
# network of ``examples/xor.py``: full-batch gradient descent (``batch_size=None``) with plain SGD.

model = bn.Sequential([
    bn.layers.Dense(10, activation="relu", input_dim=2),
    bn.layers.Dense(1, activation="sigmoid"),
], seed=42, dtype="float64")
model.compile(loss="binary_crossentropy", optimizer=bn.optimizers.SGD(learning_rate=0.5), metrics=["accuracy"])
model.summary()

# %%
# The gradients barenet computes are the ones derived above, and ``bn.gradcheck`` confirms them against
# central finite differences :math:`(L(\theta + \epsilon) - L(\theta - \epsilon)) / 2\epsilon` for every
# weight, before any training (this is how every layer in barenet is tested). The check uses random points
# rather than the four corners: at (0, 0) every hidden unit's input is exactly its bias, 0 before training,
# the ReLU's kink, where a finite difference straddles two slopes.

check_rng = np.random.default_rng(0)
result = bn.gradcheck(model, check_rng.uniform(-1, 1, (8, 2)), check_rng.integers(0, 2, 8))
print(f"largest relative error between backpropagation and finite differences: {result.max_error:.1e}")

# %%
# Now train it:

history = model.fit(X, y_xor, epochs=2000, batch_size=None, shuffle=False, verbose=0)
print("barenet:", (model.predict(X)[:, 0] > 0.5).astype(int), "final loss", round(history.history["loss"][-1], 4))

# %%
# Both networks bend the boundary around the two classes:

fig, axes = plt.subplots(1, 3, figsize=(13, 4))
show(axes[0], predict_by_hand(grid), y_xor, "XOR, two layers in NumPy")
show(axes[1], model.predict(grid)[:, 0], y_xor, "XOR, two layers in barenet")
axes[2].plot(losses_by_hand, label="NumPy by hand")
axes[2].plot(history.history["loss"], label="barenet")
axes[2].set(title="training loss", xlabel="step", ylabel="cross-entropy", yscale="log")
axes[2].legend()
fig.tight_layout()
