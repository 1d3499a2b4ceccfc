"""A character-level Transformer language model trained from scratch on Python's own standard library.

Data: a fixed list of the running interpreter's standard-library source files (every machine with Python
has them), the last few kept apart for validation: the split is by file, so validation text is code the
model never saw. Characters are bytes below 128 (anything else maps to one "other" id).

The model (``build_model``) is a stack of pre-norm Transformer blocks, each ten lines of functional code
(``transformer_block``):

    tokens (batch, T) -> TokenAndPositionEmbedding -> [block] x layers -> LayerNormalization
                      -> Dense(vocabulary, softmax): the next character's distribution at every position

(with ``--tie``, the last step is the embedding's own token table, ``softmax(h @ token_embeddings.T)``: input
and output weights tied, as in GPT-2)

    block(x):  h = x + MultiHeadAttention(LN(x), LN(x), causal)      (dropout on both residual branches)
               y = h + Dense(width)(GELU(Dense(4 width)(LN(h))))

trained with AdamW and a cosine-annealed learning rate on random windows of the training text, the
softmax fused with the cross-entropy of every position's next character. The script reports validation
bits per character (the cross-entropy in base 2) beside a bigram model's, then generates text with
temperature and top-k sampling, once with a key/value cache (each new character attends to the cached
keys and values of the ones before: O(N) work for N characters) and once by running the whole window
again for each character, and prints both speeds.

Run::

    python examples/char_transformer.py                       # 4 layers, width 128, 4 heads, context 128
    python examples/char_transformer.py --minutes 1 --layers 2 --width 64 --context 64
    python examples/char_transformer.py --tie                 # the output layer reuses the token embeddings
"""

from __future__ import annotations

import argparse
import math
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import barenet as bn
from barenet.attention import scaled_dot_product_attention

L = bn.layers
VOCABULARY = 129  # bytes 0..127, and 128 for anything else
TRAIN_FILES = ["argparse.py", "ast.py", "calendar.py", "configparser.py", "csv.py", "dataclasses.py", "difflib.py",
               "enum.py", "fractions.py", "functools.py", "gettext.py", "heapq.py", "inspect.py", "ipaddress.py",
               "logging/__init__.py", "pathlib.py", "pprint.py", "random.py", "shutil.py", "statistics.py",
               "string.py", "subprocess.py", "tarfile.py", "textwrap.py", "threading.py", "typing.py",
               "zipfile.py", "zipfile/__init__.py"]  # one of the two, by Python version; a missing file is skipped
VALIDATION_FILES = ["json/decoder.py", "json/encoder.py", "json/__init__.py", "contextlib.py", "bisect.py",
                    "operator.py"]


def read_text(names: Sequence[str]) -> np.ndarray:
    """The files ``names`` of the standard library, joined, as int64 character ids ``(n,)``."""
    root = Path(sysconfig.get_paths()["stdlib"])
    data = b"\n".join((root / name).read_bytes() for name in names if (root / name).exists())
    ids = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    ids[ids >= 128] = 128
    return ids


def transformer_block(x, heads: int, width: int, dropout: float, *, norm_first: bool = True, causal: bool = True,
                      feed_forward: int | None = None):
    """One Transformer block: self-attention and a GELU feed-forward, each in a residual branch."""
    attention = L.MultiHeadAttention(heads, width // heads, dropout=dropout)
    norm1, norm2 = L.LayerNormalization(epsilon=1e-5), L.LayerNormalization(epsilon=1e-5)
    up, down = L.Dense(feed_forward or 4 * width, activation="gelu"), L.Dense(width)
    if norm_first:  # pre-norm (GPT-2): x + f(LN(x))
        a = norm1(x)
        h = L.Add()([x, L.Dropout(dropout)(attention(a, a, use_causal_mask=causal))])
        return L.Add()([h, L.Dropout(dropout)(down(L.Dropout(dropout)(up(norm2(h)))))])
    h = norm1(L.Add()([x, L.Dropout(dropout)(attention(x, x, use_causal_mask=causal))]))  # post-norm: LN(x + f(x))
    return norm2(L.Add()([h, L.Dropout(dropout)(down(L.Dropout(dropout)(up(h))))]))


def build_model(layers: int = 4, width: int = 128, heads: int = 4, context: int = 128, dropout: float = 0.1,
                seed: int = 0, learning_rate: float = 3e-3, decay_steps: int | None = None,
                tie: bool = False) -> bn.Model:
    """``(batch, context)`` character ids -> ``(batch, context, VOCABULARY)`` next-character probabilities; with
    ``tie`` the output layer is the embedding's token table (``embedding(x, reverse=True)``), not a Dense."""
    tokens = bn.Input(shape=(context,), dtype="int64", name="tokens")
    embedding = L.TokenAndPositionEmbedding(VOCABULARY, context, width, name="embedding")
    x = embedding(tokens)
    for _ in range(layers):
        x = transformer_block(x, heads, width, dropout)
    x = L.LayerNormalization(epsilon=1e-5, name="final_norm")(x)
    if tie:
        out = L.Activation("softmax", name="next_char")(embedding(x, reverse=True))
    else:
        out = L.Dense(VOCABULARY, activation="softmax", name="next_char")(x)
    model = bn.Model(tokens, out, name="char_transformer", seed=seed)
    rate = learning_rate if decay_steps is None else bn.optimizers.CosineDecay(learning_rate, decay_steps)
    model.compile(loss="sparse_categorical_crossentropy", optimizer=bn.optimizers.AdamW(rate, weight_decay=0.01))
    return model


def windows(ids: np.ndarray, context: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random windows of ``context`` ids and, for each position, the id that follows it."""
    starts = rng.integers(0, len(ids) - context - 1, n)
    index = starts[:, None] + np.arange(context)
    return ids[index], ids[index + 1]


def bits_per_char(model: bn.Model, ids: np.ndarray, context: int, limit: int = 64) -> float:
    """Mean cross-entropy in bits of the next character over up to ``limit`` disjoint windows of ``ids``."""
    n = min(limit, (len(ids) - 1) // context)
    index = np.arange(n)[:, None] * context + np.arange(context)
    return model.evaluate(ids[index], ids[index + 1])["loss"] / math.log(2)


def bigram_bits_per_char(train: np.ndarray, valid: np.ndarray) -> float:
    """Bits per character of a bigram model (add-one smoothed counts of the training text) on ``valid``."""
    counts = np.ones((VOCABULARY, VOCABULARY))
    np.add.at(counts, (train[:-1], train[1:]), 1)
    probs = counts / counts.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log2(probs[valid[:-1], valid[1:]])))


class Generator:
    """Sampling from a trained model, with or without a key/value cache.

    Without the cache each new character runs the model on the whole window again. With it, each block's
    attention keeps the keys and values of the characters seen so far, and a new character costs one
    position's work in every layer: its embedding, its projections, its attention over the cache.
    """

    def __init__(self, model: bn.Model) -> None:
        self.model = model
        self.context = model.input_shape[0]
        self.embedding = next(layer for layer in model.layers if isinstance(layer, L.TokenAndPositionEmbedding))
        # each block: norm1, attention, norm2, up, down, in call order
        blocks, current = [], []
        for node in model.nodes:
            layer = node.layer
            if isinstance(layer, (L.LayerNormalization, L.MultiHeadAttention, L.Dense)) and layer.name not in (
                    "final_norm", "next_char"):
                current.append(layer)
                if len(current) == 5:
                    blocks.append(current)
                    current = []
        self.blocks = blocks
        self.final_norm = next(layer for layer in model.layers if layer.name == "final_norm")
        self.head = next(layer for layer in model.layers if layer.name == "next_char")  # Dense, or the tied softmax

    def _sample(self, probs: np.ndarray, temperature: float, top_k: int, rng: np.random.Generator) -> int:
        logits = np.log(np.maximum(probs.astype(np.float64), 1e-30)) / max(temperature, 1e-6)
        if top_k:
            cut = np.sort(logits)[-top_k]
            logits = np.where(logits < cut, -np.inf, logits)
        p = np.exp(logits - logits.max())
        return int(rng.choice(len(p), p=p / p.sum()))

    def _start(self, start: int, length: int) -> int:
        """Where the window begins: once ``context`` ids fill it, it starts over on the last half of them."""
        return length - self.context // 2 if length - start >= self.context else start

    def without_cache(self, prompt: np.ndarray, n: int, temperature: float = 0.8, top_k: int = 10,
                      seed: int = 0) -> np.ndarray:
        """``n`` characters after ``prompt``, running the model on the whole window again for each."""
        rng, ids = np.random.default_rng(seed), list(prompt[-self.context:])
        start = 0
        for _ in range(n):
            start = self._start(start, len(ids))
            window = ids[start:]
            padded = np.zeros((1, self.context), np.int64)
            padded[0, :len(window)] = window
            probs = self.model.predict(padded)[0, len(window) - 1]
            ids.append(self._sample(probs, temperature, top_k, rng))
        return np.array(ids[-n:])

    def with_cache(self, prompt: np.ndarray, n: int, temperature: float = 0.8, top_k: int = 10,
                   seed: int = 0) -> np.ndarray:
        """The same as :meth:`without_cache` (the same characters for the same seed, up to rounding in the
        probabilities), one position at a time; when the window is full the cache starts over on its last
        half, as :meth:`without_cache`'s window does."""
        rng, ids = np.random.default_rng(seed), list(prompt[-self.context:])
        out: list[int] = []
        start = 0
        while len(out) < n:
            start = self._start(start, len(ids))
            caches: list[list[np.ndarray]] = [[] for _ in self.blocks]
            probs = None
            for position, token in enumerate(ids[start:]):
                probs = self._step(token, position, caches)
            while len(out) < n and len(ids) - start < self.context:
                token = self._sample(probs, temperature, top_k, rng)
                ids.append(token)
                out.append(token)
                probs = self._step(token, len(ids) - 1 - start, caches)
        return np.array(out)

    @staticmethod
    def _norm(layer: L.LayerNormalization, x: np.ndarray) -> np.ndarray:
        """``layer`` on one position (the layers themselves take whole windows)."""
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + layer.epsilon) * layer.params["gamma"] + layer.params["beta"]

    @staticmethod
    def _dense(layer: L.Dense, x: np.ndarray) -> np.ndarray:
        return layer.activation.function(x @ layer.params["kernel"] + layer.params["bias"])

    @staticmethod
    def _heads(layer: L.MultiHeadAttention, name: str, x: np.ndarray) -> np.ndarray:
        """The ``name`` projection (query, key or value) of ``x : (1, 1, d)`` in the heads' layout ``(1, heads, 1,
        width)``: Keras's kernel ``(d, heads, width)`` and bias ``(heads, width)``."""
        y = np.einsum("btd,dhw->bhtw", x, layer.params[f"{name}_kernel"])
        return y + layer.params[f"{name}_bias"][None, :, None, :]

    def _step(self, token: int, position: int, caches: list[list[np.ndarray]]) -> np.ndarray:
        """Run one position through the network, appending its keys and values to ``caches``."""
        p = self.embedding.params
        x = (p["token_embeddings"][token] + p["position_embeddings"][position])[None, None, :]
        for (norm1, attention, norm2, up, down), cache in zip(self.blocks, caches, strict=True):
            a = self._norm(norm1, x)
            q, k, v = (self._heads(attention, name, a) for name in ("query", "key", "value"))
            if not cache:
                cache.extend([k, v])
            else:
                cache[0], cache[1] = np.concatenate([cache[0], k], axis=2), np.concatenate([cache[1], v], axis=2)
            o = scaled_dot_product_attention(q, cache[0], cache[1])  # the new position sees every cached one
            o = o.transpose(0, 2, 1, 3).reshape(1, -1) @ attention.params["output_kernel"].reshape(
                -1, x.shape[-1]) + attention.params["output_bias"]
            h = x + o[:, None, :]
            x = h + self._dense(down, self._dense(up, self._norm(norm2, h)))
        h = self._norm(self.final_norm, x)
        if isinstance(self.head, L.Dense):
            return self._dense(self.head, h)[0, 0]
        return self.head.function(h @ p["token_embeddings"].T)[0, 0]  # the tied output layer


def text_of(ids: np.ndarray) -> str:
    return bytes(int(i) if i < 128 else ord("?") for i in ids).decode("ascii")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget (default 10)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: as many as the budget)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generate", type=int, default=200, help="characters to generate (default 200)")
    parser.add_argument("--tie", action="store_true", help="the output layer reuses the token embeddings")
    args = parser.parse_args(argv)
    if min(args.layers, args.width, args.heads, args.context, args.batch) < 1 or args.minutes <= 0:
        parser.error("sizes and --minutes must be positive")

    train, valid = read_text(TRAIN_FILES), read_text(VALIDATION_FILES)
    print(f"standard library text: {len(train):,} training and {len(valid):,} validation characters")
    rng = np.random.default_rng(args.seed)
    probe = build_model(args.layers, args.width, args.heads, args.context, seed=args.seed, tie=args.tie)
    print(f"model: {args.layers} layers, width {args.width}, {args.heads} heads, context {args.context}, "
          f"{probe.n_params:,} parameters{' (output layer tied to the token embeddings)' if args.tie else ''}")
    # time one step to size the cosine schedule to the budget
    X, Y = windows(train, args.context, args.batch, rng)
    start = time.perf_counter()
    probe.fit(X, Y, epochs=1, batch_size=args.batch, verbose=0)
    per_step = time.perf_counter() - start
    steps = args.steps or max(1, int(args.minutes * 60 / per_step))
    model = build_model(args.layers, args.width, args.heads, args.context, seed=args.seed, decay_steps=steps,
                        tie=args.tie)
    chunk = 50
    start = time.perf_counter()
    done = 0
    while done < steps:
        n = min(chunk, steps - done)
        X, Y = windows(train, args.context, n * args.batch, rng)
        history = model.fit(X, Y, epochs=1, batch_size=args.batch, shuffle=False, verbose=0)
        done += n
        print(f"step {done}/{steps}: training loss {history.history['loss'][-1] / math.log(2):.3f} bits/char "
              f"({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    bpc = bits_per_char(model, valid, args.context)
    bigram = bigram_bits_per_char(train, valid)
    print(f"training time: {seconds:.0f} s ({seconds / steps * 1000:.0f} ms/step)")
    print(f"validation bits per character: {bpc:.3f} (bigram model: {bigram:.3f})")

    generator = Generator(model)
    prompt = read_text(["textwrap.py"])[:64]
    n = args.generate
    start = time.perf_counter()
    cached = generator.with_cache(prompt, n, seed=args.seed)
    with_cache = n / (time.perf_counter() - start)
    start = time.perf_counter()
    plain = generator.without_cache(prompt, n, seed=args.seed)
    without_cache = n / (time.perf_counter() - start)
    print(f"generation: {with_cache:.0f} characters/s with the key/value cache, {without_cache:.0f} without")
    print(f"same characters both ways: {int(np.sum(cached == plain))}/{n}")
    print("sample:\n" + text_of(prompt) + text_of(cached))
    return {"bpc": bpc, "bigram": bigram, "with_cache": with_cache, "without_cache": without_cache}


if __name__ == "__main__":
    main()
