"""
A sequence model: order matters
===============================

A recurrent layer reads a sequence one step at a time and carries a state from each step to the next, so what
it computes can depend on the order of the steps. The task here is made so that only order matters: each
sequence holds 20 random symbols with exactly one ``A`` and one ``B`` somewhere, and the label says whether
``A`` comes before ``B``. Both classes contain the same symbols, so a network that sees only how many of each
symbol a sequence has cannot do better than a coin toss; a GRU that reads the sequence in order only has to
remember whether it has already seen ``A`` when ``B`` arrives.

This is ``examples/sequence_gru.py`` (``python examples/sequence_gru.py``, with the same sizes), plus the curves.
"""

# %%
# The data
# --------
import matplotlib.pyplot as plt
import numpy as np

import barenet as bn

A, B, VOCABULARY, LENGTH = 0, 1, 8, 20      # symbols 2..7 are fillers


def make_data(n, rng):
    """Token ids (n, LENGTH) and labels (n,): 1 when A precedes B."""
    X = rng.integers(2, VOCABULARY, (n, LENGTH))
    positions = np.argsort(rng.random((n, LENGTH)), axis=1)[:, :2]    # two distinct positions per row
    rows = np.arange(n)
    X[rows, positions[:, 0]] = A
    X[rows, positions[:, 1]] = B
    return X, (positions[:, 0] < positions[:, 1]).astype(int)


rng = np.random.default_rng(0)
X_train, y_train = make_data(2000, rng)
X_test, y_test = make_data(1000, rng)
symbols = "AB" + "cdefgh"
for row, label in zip(X_train[:4], y_train[:4], strict=True):
    print("".join(symbols[i] for i in row), "-> A first" if label else "-> B first")

# %%
# The recurrent network
# ---------------------
# ``Embedding`` turns each symbol id into a learned vector of 8 numbers, ``GRU(16)`` reads the 20 vectors in
# order and returns its last state, and a sigmoid unit reads that state. Inputs are integer ids of shape
# ``(batch, 20)``.

gru = bn.Sequential([
    bn.layers.Embedding(VOCABULARY, 8, input_length=LENGTH),
    bn.layers.GRU(16),
    bn.layers.Dense(1, activation="sigmoid"),
], seed=0)
gru.compile(loss="binary_crossentropy", optimizer=bn.optimizers.Adam(0.01), metrics=["accuracy"])
gru.summary()
gru_history = gru.fit(X_train, y_train, epochs=10, batch_size=32, validation_data=(X_test, y_test), verbose=0)

# %%
# The order-blind baseline
# ------------------------
# A dense network on the bag of symbols: the share of each symbol in the sequence, which is the same for both
# classes by construction.


def bag_of_symbols(X):
    return np.stack([np.bincount(row, minlength=VOCABULARY) for row in X]) / X.shape[1]


dense = bn.Sequential([
    bn.layers.Dense(32, activation="relu", input_dim=VOCABULARY),
    bn.layers.Dense(32, activation="relu"),
    bn.layers.Dense(1, activation="sigmoid"),
], seed=0)
dense.compile(loss="binary_crossentropy", optimizer=bn.optimizers.Adam(0.01), metrics=["accuracy"])
dense_history = dense.fit(bag_of_symbols(X_train), y_train, epochs=10, batch_size=32,
                          validation_data=(bag_of_symbols(X_test), y_test), verbose=0)
print(f"test accuracy, GRU on the sequence:         {gru_history.history['val_accuracy'][-1]:.3f}")
print(f"test accuracy, Dense on the bag of symbols: {dense_history.history['val_accuracy'][-1]:.3f}")

epochs = np.arange(1, 11)
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(epochs, gru_history.history["val_accuracy"], marker="o", label="GRU on the sequence")
ax.plot(epochs, dense_history.history["val_accuracy"], marker="o", label="Dense on the bag of symbols")
ax.axhline(0.5, color="gray", ls=":", label="chance")
ax.set(xlabel="epoch", ylabel="test accuracy", ylim=(0.3, 1.05), title="does A come before B?")
ax.legend()
fig.tight_layout()

# %%
# What the GRU remembers
# ----------------------
# Running the layers by hand with ``return_sequences=True`` on a copy of the GRU's weights shows its state at
# every step. For two sequences, one of each class, the state changes sharply where ``A`` and ``B`` appear and
# barely moves over the fillers.

stepwise = bn.layers.GRU(16, return_sequences=True)
stepwise.build((LENGTH, 8), np.random.default_rng(0))
stepwise.set_weights(gru.layers[1].get_weights())
examples = [np.flatnonzero(y_test == 1)[0], np.flatnonzero(y_test == 0)[0]]
embedded = gru.layers[0].forward(X_test[examples])             # (2, 20, 8)
states = stepwise.forward(embedded)                            # (2, 20, 16)
fig, axes = plt.subplots(2, 1, figsize=(10, 5.6))
for ax, k, state in zip(axes, examples, states, strict=True):
    ax.imshow(state.T, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(LENGTH), [symbols[i] for i in X_test[k]])
    ax.set(ylabel="state unit", title=("A first" if y_test[k] else "B first") + ": GRU state at each step")
fig.tight_layout()
