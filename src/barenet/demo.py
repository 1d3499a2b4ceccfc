"""The quick-start job: a small network on scikit-learn's bundled handwritten digits."""

from __future__ import annotations

import time

import numpy as np

from . import layers, optimizers
from .models import Sequential


def run(epochs: int = 30, seed: int = 0, verbose: int = 2) -> dict[str, float]:
    """Train 64-64-10 (ReLU, softmax) with Adam on 8x8 digits; print progress and test accuracy.

    Returns the test metrics. Needs scikit-learn (for the data set and the split).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)
    model = Sequential([
        layers.Dense(64, activation="relu", input_dim=X.shape[1], kernel_initializer="he_normal"),
        layers.Dense(10, activation="softmax"),
    ], seed=seed)
    model.compile(loss="categorical_crossentropy", optimizer=optimizers.Adam(1e-3),
                  metrics=["accuracy", "f1"])
    model.summary()
    start = time.perf_counter()
    model.fit(X_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1, verbose=verbose)
    result = model.evaluate(X_test, y_test)
    print(f"test accuracy: {result['accuracy']:.4f}  macro F1: {result['f1']:.4f}  "
          f"({len(X_train)} training digits, {time.perf_counter() - start:.1f}s)")
    return {k: float(np.asarray(v)) for k, v in result.items()}
