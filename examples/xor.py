"""XOR: the smallest problem a linear model cannot solve and one hidden layer can.

A 2-10-1 network (ReLU hidden layer, sigmoid output) is trained with binary cross-entropy by
full-batch gradient descent: every step uses all four samples (``batch_size=None``) and plain
SGD with learning rate 0.01. The script prints the probability the network gives each input,
then the predicted classes as a list, which is ``[0, 1, 1, 0]`` once it has learned XOR.

Run::

    python examples/xor.py                 # 10,000 steps, seed 42
    python examples/xor.py --epochs 20000 --seed 7
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

import barenet as bn

X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
Y = np.array([0, 1, 1, 0])


def build_model(seed: int) -> bn.Sequential:
    """2-10-1: ``(batch, 2)`` -> ReLU ``(batch, 10)`` -> sigmoid ``(batch, 1)``, float64."""
    model = bn.Sequential([
        bn.layers.Dense(10, activation="relu", input_dim=2),
        bn.layers.Dense(1, activation="sigmoid"),
    ], seed=seed, dtype="float64")
    model.compile(loss="binary_crossentropy", optimizer=bn.optimizers.SGD(learning_rate=0.01),
                  metrics=["accuracy"])
    return model


def main(argv: Sequence[str] | None = None) -> list[int]:
    """Train on the four XOR points and print the predictions; returns the predicted classes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10_000, help="full-batch gradient steps (default 10000)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the weight initialization (default 42)")
    args = parser.parse_args(argv)

    model = build_model(args.seed)
    history = model.fit(X, Y, epochs=args.epochs, batch_size=None, shuffle=False, verbose=0)
    probs = model.predict(X)[:, 0]
    print(f"after {args.epochs} steps: loss {history.history['loss'][-1]:.4f}, "
          f"accuracy {history.history['accuracy'][-1]:.2f}")
    print("x1 x2  target  P(y=1)")
    for (x1, x2), target, p in zip(X.astype(int), Y, probs, strict=True):
        print(f" {x1}  {x2}     {target}    {p:.3f}")
    classes = (probs > 0.5).astype(int).tolist()
    print("predicted classes:")
    print(classes)
    return classes


if __name__ == "__main__":
    main()
