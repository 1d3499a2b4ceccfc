"""Handwritten digits with batch normalization, dropout, Adam and early stopping.

Data: scikit-learn's bundled 8x8 digits (1,797 images, 64 pixel values 0-16, scaled to [0, 1]).
They are split, stratified and seeded, into training, validation and test sets. The network is

    Dense(128) -> BatchNormalization -> ReLU -> Dropout
    Dense(64)  -> BatchNormalization -> ReLU -> Dropout
    Dense(10, softmax)

(the Dense layers before batch normalization have no bias: the normalization's ``beta`` plays
that part). It is trained with categorical cross-entropy and Adam; ``EarlyStopping`` watches the
validation loss, stops once it has not improved for ``--patience`` epochs and restores the
weights of the best epoch. The script prints the test accuracy and scikit-learn's per-class
``classification_report``.

Run::

    python examples/digits.py
    python examples/digits.py --dropout 0.5 --patience 12 --seed 1
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import barenet as bn


def build_model(dropout: float, learning_rate: float, seed: int) -> bn.Sequential:
    """``(batch, 64)`` pixels -> ``(batch, 10)`` class probabilities."""
    def block(units: int, **first: int) -> list[bn.layers.Layer]:
        return [bn.layers.Dense(units, use_bias=False, kernel_initializer="he_normal", **first),
                bn.layers.BatchNormalization(), bn.layers.ReLU(), bn.layers.Dropout(dropout)]

    model = bn.Sequential([*block(128, input_dim=64), *block(64), bn.layers.Dense(10, activation="softmax")],
                          seed=seed)
    model.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(learning_rate),
                  metrics=["accuracy"])
    return model


def main(argv: Sequence[str] | None = None) -> float:
    """Train with early stopping, print the test accuracy and the per-class report; returns the accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=100, help="most epochs to train (default 100)")
    parser.add_argument("--patience", type=int, default=8, help="epochs without a better val_loss (default 8)")
    parser.add_argument("--dropout", type=float, default=0.3, help="dropout rate (default 0.3)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam step size (default 0.001)")
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the splits and the network (default 0)")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_digits
    from sklearn.metrics import classification_report
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=args.seed)
    X_train, X_val, y_train, y_val = train_test_split(X_train, y_train, test_size=0.15, stratify=y_train,
                                                      random_state=args.seed)
    print(f"digits: {len(X_train)} training, {len(X_val)} validation, {len(X_test)} test images")

    model = build_model(args.dropout, args.learning_rate, args.seed)
    model.build((64,))
    model.summary()
    stopper = bn.callbacks.EarlyStopping(monitor="val_loss", patience=args.patience, restore_best_weights=True)
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=(X_val, y_val), callbacks=[stopper], verbose=0)
    print(f"trained {len(history.epoch)} epochs; best val_loss {stopper.best:.6f} at epoch {stopper.best_epoch + 1}")
    print(f"val_loss of the restored weights: {model.evaluate(X_val, y_val)['loss']:.6f}")

    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    print(f"test accuracy: {accuracy:.4f}")
    y_pred = model.predict(X_test).argmax(axis=1)
    print(classification_report(y_test, y_pred, digits=3))
    return accuracy


if __name__ == "__main__":
    main()
