"""
Overfitting and its cures
=========================

A network with many more weights than it has examples can learn its training set by heart: the training loss
keeps falling while the loss on new data stops falling and climbs. This page provokes that on purpose, with a
wide network and only 150 training digits, then tries the four standard cures one at a time, each with its
curves: an L2 penalty on the weights, dropout, early stopping, and batch normalization.
"""

# %%
# A small training set and a large network
# ----------------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import barenet as bn

L = bn.layers
X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_held, y_train, y_held = train_test_split(X, y, train_size=150, stratify=y, random_state=0)
X_val, X_test, y_val, y_test = train_test_split(X_held, y_held, test_size=0.5, stratify=y_held, random_state=0)
print(f"{len(X_train)} training, {len(X_val)} validation and {len(X_test)} test digits")

# %%
# Every variant is the same 64-256-256-10 network (about 85,000 weights for 150 examples), trained with Adam
# for 100 epochs; only the cure differs. The validation digits are watched during training; the test digits are
# kept for the end.
#
# The loss ``fit`` reports includes the L2 penalty when there is one, so to compare the runs fairly a small
# callback of our own measures the plain cross-entropy, :math:`-\frac1n\sum_i \log p_{i, y_i}`, on the
# training and validation digits after every epoch (in inference mode, so dropout is off), and adds it to the
# epoch's logs, which ``fit`` records in the history beside its own figures.

EPOCHS = 100


def cross_entropy(model, X, y):
    probabilities = model.predict(X)
    return float(-np.mean(np.log(np.maximum(probabilities[np.arange(len(y)), y], 1e-12))))


class CrossEntropy(bn.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        logs["train_ce"] = cross_entropy(self.model, X_train, y_train)
        logs["val_ce"] = cross_entropy(self.model, X_val, y_val)


def train(layers, callbacks=(), label=""):
    model = bn.Sequential(layers, seed=0)
    model.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(1e-3), metrics=["accuracy"])
    history = model.fit(X_train, y_train, epochs=EPOCHS, batch_size=32, validation_data=(X_val, y_val),
                        callbacks=[CrossEntropy(), *callbacks], verbose=0)
    test = {"loss": cross_entropy(model, X_test, y_test),
            "accuracy": float(np.mean(model.predict(X_test).argmax(axis=1) == y_test))}
    print(f"{label:<22} epochs run {len(history.epoch):>3}, test cross-entropy {test['loss']:.3f}, "
          f"test accuracy {test['accuracy']:.3f}")
    return history, test


def dense_stack(**options):
    return [L.Dense(256, activation="relu", input_dim=64, **options), L.Dense(256, activation="relu", **options),
            L.Dense(10, activation="softmax")]


runs = {}
runs["no cure"] = train(dense_stack(), label="no cure")

# %%
# The four cures
# --------------
# - **L2 penalty** (``l2=`` on each ``Dense``): adds :math:`\lambda\sum W^2` to the loss, so every step also
#   shrinks the weights; large weights, which a network needs to fit single examples exactly, cost something.
# - **Dropout** (a ``Dropout`` layer): in training, each unit of the previous layer is zeroed with probability
#   :math:`p` (and the others scaled by :math:`1/(1-p)`), so no unit can rely on any particular other one; at
#   inference it does nothing.
# - **Early stopping** (the ``EarlyStopping`` callback): stop when the validation loss has not improved for
#   ``patience`` epochs and give the model back the weights of its best epoch.
# - **Batch normalization** (a ``BatchNormalization`` layer): standardizes each unit over the batch; it is there
#   to make training faster and steadier, and the noise of batch statistics regularizes a little on the side.

runs["L2 penalty 3e-3"] = train(dense_stack(l2=3e-3), label="L2 penalty 3e-3")
runs["dropout 0.5"] = train([L.Dense(256, activation="relu", input_dim=64), L.Dropout(0.5),
                             L.Dense(256, activation="relu"), L.Dropout(0.5), L.Dense(10, activation="softmax")],
                            label="dropout 0.5")
stopper = bn.callbacks.EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
runs["early stopping"] = train(dense_stack(), callbacks=[stopper], label="early stopping")
print(f"early stopping kept epoch {stopper.best_epoch + 1} (counted from 1)")
runs["batch normalization"] = train([L.Dense(256, input_dim=64), L.BatchNormalization(), L.ReLU(),
                                     L.Dense(256), L.BatchNormalization(), L.ReLU(),
                                     L.Dense(10, activation="softmax")], label="batch normalization")

# %%
# The curves
# ----------
# Without a cure, the training loss heads for zero while the validation loss stops falling after about 30 epochs
# and then creeps up: the network grows more and more confident, including on the digits it gets wrong. The gap
# between the two curves is the overfitting.

fig, axes = plt.subplots(1, len(runs), figsize=(17, 3.6), sharey=True)
for ax, (name, (history, _)) in zip(axes, runs.items(), strict=True):
    epochs = np.arange(1, len(history.epoch) + 1)
    ax.plot(epochs, history.history["train_ce"], label="training")
    ax.plot(epochs, history.history["val_ce"], label="validation")
    if history.kept_epoch is not None and len(history.epoch) < EPOCHS:
        ax.axvline(history.kept_epoch + 1, color="gray", ls=":", label="kept epoch")
    ax.set(title=name, xlabel="epoch", yscale="log", xlim=(0, EPOCHS))
axes[0].set_ylabel("cross-entropy")
axes[0].legend()
fig.tight_layout()

# %%
# And on the test digits, which none of the runs looked at:

fig, ax = plt.subplots(figsize=(8, 3.2))
names = list(runs)
ax.barh(names, [runs[n][1]["loss"] for n in names], color="tab:blue")
for i, n in enumerate(names):
    ax.text(runs[n][1]["loss"], i, f"  accuracy {runs[n][1]['accuracy']:.3f}", va="center")
ax.set(xlabel="test cross-entropy (lower is better)", xlim=(0, 1.4 * max(runs[n][1]["loss"] for n in names)))
ax.invert_yaxis()
fig.tight_layout()

# %%
# Each cure lowers the test cross-entropy: L2 and dropout by making the training set harder to memorize, early
# stopping by not letting training run on, and batch normalization, though it is there to make training faster
# and steadier, does as well here. The accuracies move less than the cross-entropy: an overfitted network often
# still ranks the right class first, but with a confidence it has not earned, and the cross-entropy is what
# measures that. With 150 examples every choice is fragile; more data is the cure that works best, when there
# is more to be had.
