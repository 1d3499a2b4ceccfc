"""
Attention: a tiny Transformer that writes Python
================================================

In a recurrent layer, information from far back must survive every step in between. Attention lets each
position look at every earlier position directly: it compares its *query* with each position's *key*, turns the
scores into weights with a softmax, and takes the weighted mean of their *values*,
:math:`\\mathrm{softmax}(QK^\\top/\\sqrt{d})\\,V`. A Transformer block is multi-head attention and a small
feed-forward network, each in a residual branch with layer normalization.

This page trains a very small character-level language model, one block of width 32 with a context of 32
characters, on a few files of Python's own standard library for a few hundred steps: enough to see it learn,
and to look at what its attention does. The full model of
``examples/char_transformer.py`` (four blocks of width 128, context 128, ten minutes of training) is
``python examples/char_transformer.py``.
"""

# %%
# The text
# --------
# Every machine with Python has the standard library's source files; the characters become ids 0..127 (anything
# else is 128). The last file is kept apart to measure how well the model predicts code it never saw.
import math
import sysconfig
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import barenet as bn

L = bn.layers
VOCABULARY, CONTEXT, WIDTH, HEADS = 129, 32, 32, 2


def read_text(names):
    root = Path(sysconfig.get_paths()["stdlib"])
    data = b"\n".join((root / name).read_bytes() for name in names if (root / name).exists())
    ids = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    ids[ids >= 128] = 128
    return ids


def text_of(ids):
    return bytes(int(i) if i < 128 else ord("?") for i in ids).decode("ascii")


train = read_text(["textwrap.py", "string.py", "calendar.py", "fractions.py", "heapq.py", "bisect.py"])
valid = read_text(["contextlib.py"])
print(f"{len(train):,} training and {len(valid):,} validation characters")

# %%
# The model
# ---------
# ``TokenAndPositionEmbedding`` gives each character id a learned vector and adds a learned vector for its
# position. Each block is ten lines of functional code, the ``transformer_block`` of
# ``examples/char_transformer.py``: pre-norm, causal self-attention (``use_causal_mask=True``: a position sees
# itself and the ones before it, never the future), then a GELU feed-forward network. The output at every
# position is a softmax over the next character.


def transformer_block(x, heads, width, dropout):
    attention = L.MultiHeadAttention(heads, width // heads, dropout=dropout)
    norm1, norm2 = L.LayerNormalization(epsilon=1e-5), L.LayerNormalization(epsilon=1e-5)
    up, down = L.Dense(4 * width, activation="gelu"), L.Dense(width)
    a = norm1(x)
    h = L.Add()([x, L.Dropout(dropout)(attention(a, a, use_causal_mask=True))])
    return L.Add()([h, L.Dropout(dropout)(down(L.Dropout(dropout)(up(norm2(h)))))])


STEPS, BATCH = 500, 32
tokens = bn.Input(shape=(CONTEXT,), dtype="int64", name="tokens")
x = L.TokenAndPositionEmbedding(VOCABULARY, CONTEXT, WIDTH, name="embedding")(tokens)
for _ in range(1):
    x = transformer_block(x, HEADS, WIDTH, dropout=0.0)
outputs = L.Dense(VOCABULARY, activation="softmax", name="next_char")(L.LayerNormalization(epsilon=1e-5)(x))
model = bn.Model(tokens, outputs, seed=0)
model.compile(loss="sparse_categorical_crossentropy",
              optimizer=bn.optimizers.AdamW(bn.optimizers.CosineDecay(1e-2, STEPS), weight_decay=0.01))
print(f"{model.count_params():,} parameters")

# %%
# Training
# --------
# Each step takes 32 random windows of 32 characters; the target of each position is the character after it,
# so one window teaches 32 predictions at once. The loss is reported in bits per character (cross-entropy in
# base 2): 7 bits would be a uniform guess among 128 characters.

rng = np.random.default_rng(0)


def windows(ids, n):
    starts = rng.integers(0, len(ids) - CONTEXT - 1, n)
    index = starts[:, None] + np.arange(CONTEXT)
    return ids[index], ids[index + 1]


def bits_per_char(ids, limit=32):
    n = min(limit, (len(ids) - 1) // CONTEXT)
    index = np.arange(n)[:, None] * CONTEXT + np.arange(CONTEXT)
    return model.evaluate(ids[index], ids[index + 1])["loss"] / math.log(2)


losses, start = [], time.perf_counter()
for _step in range(0, STEPS, 25):
    X, Y = windows(train, 25 * BATCH)
    history = model.fit(X, Y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    losses.append(history.history["loss"][-1] / math.log(2))
print(f"{STEPS} steps in {time.perf_counter() - start:.0f} s")

counts = np.ones((VOCABULARY, VOCABULARY))                     # a bigram model, for comparison
np.add.at(counts, (train[:-1], train[1:]), 1)
bigram = float(-np.mean(np.log2((counts / counts.sum(axis=1, keepdims=True))[valid[:-1], valid[1:]])))
print(f"validation bits per character: {bits_per_char(valid):.2f} (a bigram model: {bigram:.2f})")

fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(np.arange(25, STEPS + 1, 25), losses, marker="o", label="training (mean of each 25 steps)")
ax.axhline(bigram, color="gray", ls=":", label="bigram model, validation")
ax.set(xlabel="step", ylabel="bits per character", title="learning to predict the next character")
ax.legend()
fig.tight_layout()

# %%
# A few hundred steps bring this small model to about where a bigram model is, one that has counted which
# character follows which over the whole training text. The full example trains a larger model for ten minutes
# and prints the same comparison.
#
# What attention looks at
# -----------------------
# A layer called on an array runs in inference mode, so the trained embedding and the block's first layer
# normalization give what the attention layer reads. Called with ``return_attention_scores=True``, the attention
# layer also returns its weights, one row per position: how much that position takes from each earlier one.
# (``model.layers`` lists the layers in the order the model calls them.)

attention = next(layer for layer in model.layers if isinstance(layer, L.MultiHeadAttention))
norm = next(layer for layer in model.layers if isinstance(layer, L.LayerNormalization))
embedding = model.get_layer("embedding")
sample = valid[200:200 + CONTEXT][None, :]
a = norm(embedding(sample))
_, weights = attention(a, a, use_causal_mask=True, return_attention_scores=True)   # (1, heads, 32, 32)

chars = [c if c.isprintable() and c != " " else {" ": "_", "\n": "\\n"}.get(c, "?") for c in text_of(sample[0])]
fig, axes = plt.subplots(1, HEADS, figsize=(13, 6.5))
for head, ax in enumerate(axes):
    ax.imshow(weights[0, head], cmap="viridis")
    ax.set_xticks(range(CONTEXT), chars, fontsize=6)
    ax.set_yticks(range(CONTEXT), chars, fontsize=6)
    ax.set(title=f"head {head + 1}", xlabel="attended position")
axes[0].set_ylabel("position")
fig.suptitle("first block's attention weights on a validation window: each row sums to 1 over earlier positions")
fig.tight_layout()

# %%
# Writing code
# ------------
# Generation feeds the model its own output: predict the next character's distribution, sample one (sharpened by
# a temperature below 1 and limited to the 10 likeliest), append it, repeat. Here is what this small model writes
# after the first lines of ``textwrap.py``:


def generate(prompt, n, temperature=0.8, top_k=10, seed=0):
    sampler, ids = np.random.default_rng(seed), list(prompt)
    for _ in range(n):
        window = ids[-CONTEXT:]
        padded = np.zeros((1, CONTEXT), np.int64)
        padded[0, :len(window)] = window
        probabilities = model.predict(padded)[0, len(window) - 1].astype(np.float64)
        logits = np.log(np.maximum(probabilities, 1e-30)) / temperature
        logits[logits < np.sort(logits)[-top_k]] = -np.inf
        p = np.exp(logits - logits.max())
        ids.append(int(sampler.choice(VOCABULARY, p=p / p.sum())))
    return np.array(ids[len(prompt):])


prompt = read_text(["textwrap.py"])[:48]
print(text_of(prompt) + text_of(generate(prompt, 200)))
