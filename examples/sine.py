"""Regression: fit y = sin(x) on [-pi, pi] with a 1-20-1 network.

The hidden layer has 20 sigmoid units and the output is linear, so the network is a sum of 20
shifted and scaled sigmoids; mean squared error is minimized with Adam on points drawn
uniformly from [-pi, pi]. The script prints the final training loss and the mean squared error
on an evenly spaced grid of points the network never saw; with ``--plot FILE`` it also saves a
figure with the fit and the loss per epoch.

Run::

    python examples/sine.py                       # 300 epochs, prints the final MSE
    python examples/sine.py --plot sine.png       # and saves the figure
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

import barenet as bn


def make_data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points with x uniform on [-pi, pi]: ``x, y : (n, 1)`` float64, ``y = sin(x)``."""
    x = rng.uniform(-np.pi, np.pi, size=(n, 1))
    return x, np.sin(x)


def build_model(seed: int, learning_rate: float) -> bn.Sequential:
    """1-20-1: ``(batch, 1)`` -> sigmoid ``(batch, 20)`` -> linear ``(batch, 1)``, float64."""
    model = bn.Sequential([
        bn.layers.Dense(20, activation="sigmoid", input_dim=1),
        bn.layers.Dense(1),
    ], seed=seed, dtype="float64")
    model.compile(loss="mean_squared_error", optimizer=bn.optimizers.Adam(learning_rate))
    return model


def plot(path: str, model: bn.Sequential, x_train: np.ndarray, y_train: np.ndarray, losses: list[float]) -> None:
    """Save the fitted curve against sin(x) and the training loss per epoch to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(-np.pi, np.pi, 400)[:, None]
    fig, (ax_fit, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    ax_fit.scatter(x_train[:, 0], y_train[:, 0], s=6, alpha=0.3, color="gray", label="training points")
    ax_fit.plot(grid[:, 0], np.sin(grid[:, 0]), color="black", lw=1, label="sin(x)")
    ax_fit.plot(grid[:, 0], model.predict(grid)[:, 0], color="tab:red", lw=2, ls="--", label="network")
    ax_fit.set(xlabel="x", ylabel="y", title="1-20-1 network fit")
    ax_fit.legend()
    ax_loss.plot(np.arange(1, len(losses) + 1), losses)
    ax_loss.set(xlabel="epoch", ylabel="training MSE", yscale="log", title="loss per epoch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> float:
    """Train, print the final MSE on a held-out grid (and optionally plot); returns that MSE."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=300, help="passes over the training points (default 300)")
    parser.add_argument("--samples", type=int, default=500, help="training points (default 500)")
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="Adam step size (default 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the weights (default 0)")
    parser.add_argument("--plot", metavar="FILE", help="save the fit and the loss curve to this image file")
    args = parser.parse_args(argv)

    x, y = make_data(args.samples, np.random.default_rng(args.seed))
    model = build_model(args.seed, args.learning_rate)
    history = model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0)
    grid = np.linspace(-np.pi, np.pi, 1000)[:, None]
    mse = float(np.mean((model.predict(grid) - np.sin(grid)) ** 2))
    print(f"training loss after {args.epochs} epochs: {history.history['loss'][-1]:.6f}")
    print(f"final MSE on 1000 grid points: {mse:.6f}")
    if args.plot:
        plot(args.plot, model, x, y, history.history["loss"])
        print(f"plot saved to {args.plot}")
    return mse


if __name__ == "__main__":
    main()
