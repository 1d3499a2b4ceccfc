"""Rain prediction on real weather data: will it rain in Seattle today?

Data: the Seattle daily weather records for 2012-2015 bundled with the ``vega_datasets`` package
(1,461 days; read from the package's local copy, so no network is needed).

Target: whether the day had any precipitation (``precipitation > 0``, 43% of days). The other
candidate, the ``weather`` label being ``"rain"``, is a coarse summary that often contradicts the
rain gauge: 18% of days labelled "rain" recorded no precipitation, while 75% of "fog" days and
all "snow" days recorded some. The measurement is the ground truth, and the label would also leave
a rare class (18% of days) where a majority-class guess is already right 82% of the time.

Features: ``temp_max``, ``temp_min``, ``wind``, the daily temperature range
``temp_max - temp_min`` (clouds keep days cool and nights warm, so wet days have a small range)
and the day of the year as a point on the unit circle, ``(sin, cos)(2 pi day / 365.25)``, so
that December 31 sits next to January 1. ``precipitation`` and ``weather`` are left out: they
describe the answer.

Method: a stratified, seeded train/test split; features standardized with a ``StandardScaler``
fitted on the training days only; a 6-16-1 barenet network (ReLU, sigmoid output) trained with
binary cross-entropy and Adam. Accuracy, precision, recall and F1 of the "rain" class on the
held-out days are computed with ``sklearn.metrics`` and, as a cross-check, by barenet's own
``evaluate``; a majority-class baseline shows what the network adds.

Run::

    python examples/rain.py
    python examples/rain.py --epochs 100 --hidden 32 --seed 3
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

import barenet as bn

FEATURES = ["temp_max", "temp_min", "wind", "temp_range", "day_sin", "day_cos"]


def load_weather() -> tuple[np.ndarray, np.ndarray]:
    """Features ``X : (days, 6)`` float64 in :data:`FEATURES` order and targets ``y : (days,)`` int (1 = rain)."""
    from vega_datasets import local_data

    df = local_data.seattle_weather()
    angle = 2 * np.pi * df["date"].dt.day_of_year.to_numpy() / 365.25
    X = np.column_stack([
        df["temp_max"], df["temp_min"], df["wind"], df["temp_max"] - df["temp_min"], np.sin(angle), np.cos(angle),
    ]).astype(np.float64)
    y = (df["precipitation"].to_numpy() > 0).astype(int)
    return X, y


def build_model(n_features: int, hidden: int, learning_rate: float, seed: int) -> bn.Sequential:
    """``(batch, n_features)`` -> ReLU ``(batch, hidden)`` -> sigmoid ``(batch, 1)``: P(rain)."""
    model = bn.Sequential([
        bn.layers.Dense(hidden, activation="relu", input_dim=n_features, kernel_initializer="he_normal"),
        bn.layers.Dense(1, activation="sigmoid"),
    ], seed=seed)
    model.compile(loss="binary_crossentropy", optimizer=bn.optimizers.Adam(learning_rate),
                  metrics=["accuracy", "precision", "recall", "f1"])
    return model


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, and precision, recall and F1 of the positive (rain) class, from ``sklearn.metrics``."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": precision_score(y_true, y_pred, zero_division=0),
        "recall": recall_score(y_true, y_pred, zero_division=0),
        "f1": f1_score(y_true, y_pred, zero_division=0),
    }


def report(label: str, values: dict[str, float]) -> None:
    """One row of the results table."""
    cells = "  ".join(f"{name} {values[name]:.4f}" for name in ("accuracy", "precision", "recall", "f1"))
    print(f"{label:<30}{cells}")


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Train and print the held-out metrics of the baseline and the network; returns the network's."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=50, help="passes over the training days (default 50)")
    parser.add_argument("--hidden", type=int, default=16, help="hidden units (default 16)")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="Adam step size (default 0.01)")
    parser.add_argument("--test-size", type=float, default=0.25, help="held-out fraction (default 0.25)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and the network (default 0)")
    args = parser.parse_args(argv)

    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_weather()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=args.test_size, stratify=y,
                                                        random_state=args.seed)
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    print(f"Seattle weather: {len(y)} days, {y.mean():.1%} with precipitation; "
          f"{len(y_train)} for training, {len(y_test)} held out")
    print(f"features: {', '.join(FEATURES)}")

    baseline = DummyClassifier(strategy="most_frequent").fit(X_train, y_train)
    majority = "rain" if baseline.predict(X_test[:1])[0] == 1 else "no rain"

    model = build_model(X.shape[1], args.hidden, args.learning_rate, args.seed)
    model.fit(X_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)
    y_pred = (model.predict(X_test)[:, 0] >= 0.5).astype(int)
    ours = scores(y_test, y_pred)

    print(f"\nheld-out metrics (positive class: rain, {len(y_test)} days)")
    report(f"baseline (always {majority!r})", scores(y_test, baseline.predict(X_test)))
    report("network, sklearn.metrics", ours)
    evaluated = model.evaluate(X_test, y_test)
    report("network, barenet evaluate", evaluated)
    print(f"held-out cross-entropy: {evaluated['loss']:.4f}")
    return ours


if __name__ == "__main__":
    main()
