"""
The training loop and four optimizers
=====================================

Training repeats one step: take a batch, run the network forward, compute the loss and its gradient, run the
gradient backward through the layers, and let the optimizer change the weights. This page writes that loop out
with barenet's pieces, checks it against ``fit``, then compares the four classic update rules, plain SGD, SGD
with momentum, RMSprop and Adam, first on a two-parameter valley where their paths can be drawn, then on one
real problem, a network classifying handwritten digits.
"""

# %%
# The loop, written out
# ---------------------
# ``model.compute_gradients(X, y)`` runs forward and backward on a batch and returns the loss and every
# parameter's gradient, changing nothing; ``optimizer.step(params, grads)`` applies one update in place. An
# epoch is one pass over the shuffled training set in batches.
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import barenet as bn

X, y = load_digits(return_X_y=True)
X = X / 16.0                                    # pixels 0..16 -> [0, 1]
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def make_model(optimizer):
    model = bn.Sequential([bn.layers.Dense(32, activation="relu", input_dim=64, kernel_initializer="he_normal"),
                           bn.layers.Dense(10, activation="softmax")], seed=0, dtype="float64")
    model.compile(loss="categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    return model


model = make_model(bn.optimizers.SGD(0.1))
optimizer = bn.optimizers.SGD(0.1)
rng = np.random.default_rng(0)
by_hand = []
for _epoch in range(5):
    order = rng.permutation(len(X_train))
    losses = []
    for start in range(0, len(order), 32):
        batch = order[start:start + 32]
        result = model.compute_gradients(X_train[batch], y_train[batch])   # forward + backward
        optimizer.step(model.parameters(), result.parameters)               # update
        losses.append(result.loss)
    by_hand.append(float(np.mean(losses)))
print("loss per epoch, loop by hand:", np.round(by_hand, 4))

# %%
# ``fit`` runs the same loop (its own seeded shuffling, so the batches differ) and records each epoch's mean
# batch loss in its ``History``:

history = make_model(bn.optimizers.SGD(0.1)).fit(X_train, y_train, epochs=5, batch_size=32, verbose=0)
print("loss per epoch, fit:         ", np.round(history.history["loss"], 4))

# %%
# Four update rules on a valley
# -----------------------------
# With gradient :math:`g` and learning rate :math:`\eta`:
#
# - **SGD**: :math:`\theta \leftarrow \theta - \eta g`.
# - **Momentum**: a velocity :math:`v \leftarrow \mu v - \eta g`, :math:`\theta \leftarrow \theta + v`; steps
#   along a consistent direction add up, zig-zags across a valley cancel.
# - **RMSprop**: divide each coordinate's step by the root of a running mean of its squared gradients,
#   :math:`s \leftarrow \rho s + (1-\rho) g^2`, :math:`\theta \leftarrow \theta - \eta g/\sqrt{s + \epsilon}`:
#   steep and flat directions move at similar speeds.
# - **Adam**: both, a running mean of the gradient (momentum) divided by the root of a running mean of its
#   square, with a correction for their start at zero.
#
# The optimizers work on any dictionary of arrays, so they can be run on a function of two numbers, the
# elongated valley :math:`f(a, b) = a^2/20 + b^2`, starting from :math:`(-9, 2.5)`.


def valley_gradient(point):
    a, b = point
    return np.array([a / 10, 2 * b])


optimizers = {
    "SGD": lambda: bn.optimizers.SGD(0.4),
    "SGD + momentum 0.9": lambda: bn.optimizers.SGD(0.05, momentum=0.9),
    "RMSprop": lambda: bn.optimizers.RMSprop(0.3),
    "Adam": lambda: bn.optimizers.Adam(0.5),
}
paths = {}
for name, make in optimizers.items():
    opt, point = make(), np.array([-9.0, 2.5])
    path = [point.copy()]
    for _ in range(60):
        opt.step({"point": point}, {"point": valley_gradient(point)})
        path.append(point.copy())
    paths[name] = np.array(path)

a, b = np.meshgrid(np.linspace(-10, 3, 300), np.linspace(-3.5, 3.5, 300))
fig, ax = plt.subplots(figsize=(10, 5))
ax.contour(a, b, a ** 2 / 20 + b ** 2, levels=np.geomspace(0.01, 20, 14), colors="lightgray")
for name, path in paths.items():
    ax.plot(path[:, 0], path[:, 1], marker="o", markersize=2.5, lw=1, label=name)
ax.plot(0, 0, "k*", markersize=12)
ax.set(xlabel="a", ylabel="b", title="60 steps on $f(a, b) = a^2/20 + b^2$ from (-9, 2.5)", aspect="equal")
ax.legend(loc="lower right")
fig.tight_layout()

# %%
# Plain SGD's learning rate is limited by the steep direction (a larger one would make :math:`b` diverge), so
# it crawls along the flat one; momentum builds speed along the valley; RMSprop and Adam scale each coordinate
# by its own gradient history and head for the minimum more directly.
#
# Four optimizers on one network
# ------------------------------
# The same 64-32-10 network and the same initial weights, trained for 30 epochs by each optimizer with a common
# learning rate for its kind (0.05 for the two SGDs, 0.001, the default, for RMSprop and Adam).

settings = {
    "SGD 0.05": bn.optimizers.SGD(0.05),
    "SGD 0.05 + momentum 0.9": bn.optimizers.SGD(0.05, momentum=0.9),
    "RMSprop 0.001": bn.optimizers.RMSprop(0.001),
    "Adam 0.001": bn.optimizers.Adam(0.001),
}
histories = {}
for name, opt in settings.items():
    model = make_model(opt)
    histories[name] = model.fit(X_train, y_train, epochs=30, batch_size=32, validation_data=(X_test, y_test),
                                verbose=0).history
    print(f"{name:<26} final training loss {histories[name]['loss'][-1]:.4f}, "
          f"test accuracy {histories[name]['val_accuracy'][-1]:.3f}")

fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(12, 4))
for name, h in histories.items():
    epochs = np.arange(1, len(h["loss"]) + 1)
    ax_loss.plot(epochs, h["loss"], label=name)
    ax_acc.plot(epochs, h["val_accuracy"], label=name)
ax_loss.set(xlabel="epoch", ylabel="training loss (cross-entropy)", yscale="log", title="training loss")
ax_acc.set(xlabel="epoch", ylabel="accuracy", title="held-out accuracy", ylim=(0.5, 1))
ax_loss.legend()
fig.tight_layout()

# %%
# In 30 epochs momentum brings the training loss down furthest; RMSprop and Adam, at the default rate that
# suits most problems without tuning, end close to plain SGD at a rate picked for this one. None of this is a
# law: which optimizer is best depends on the problem, the network, the learning rate and the budget, which is
# why all four are in barenet.
