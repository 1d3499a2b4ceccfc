"""Fashion-MNIST with a small residual network, written with the functional API.

Why graphs matter: a residual block adds its input to its output, ``y = x + F(x)``, which a stack of layers
cannot express. The sum gives every block an identity path, so the gradient reaches the first layers
undiminished and a deeper network trains as easily as a shallow one (He et al., 2016). The network is

    stem:   Conv2D(48, 3x3, same) -> BN -> ReLU -> MaxPooling2D(2)            28x28x1 -> 14x14x48
    stage1: 2 residual blocks of 48 channels                                 14x14x48
    stage2: a block of 96 channels with stride 2 (1x1 projection shortcut),  7x7x96
            then a block of 96
    head:   GlobalAveragePooling2D -> Dropout(0.3) -> Dense(10, softmax)

where a block is ``ReLU(x + BN(Conv(ReLU(BN(Conv(x))))))`` (the original "basic block"), its
shortcut a strided 1x1 convolution with batch normalization where the shape changes. Training: random
horizontal flips and shifts of up to 5% (``RandomTranslation``), Adam with a learning rate annealed from 2e-3
to 0 on a cosine, batches of 128,
categorical cross-entropy fused with the softmax. The script prints one line per epoch, the training time
per epoch and the test accuracy.

Run::

    python examples/fashion_resnet.py                     # 20 epochs on the full training set: 0.9396
    python examples/fashion_resnet.py --epochs 1 --limit 2000
    python examples/fashion_resnet.py --width 32 --shift 0 --epochs 15   # the smaller first version: 0.9321
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

import barenet as bn

BATCH = 128
EPOCHS = 20
WIDTH = 48
SHIFT = 0.05
L = bn.layers


def conv_bn(x: bn.models.SymbolicTensor, filters: int, kernel: int, strides: int = 1) -> bn.models.SymbolicTensor:
    """Convolution without bias (batch normalization's beta takes that role), then batch normalization."""
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                 kernel_initializer="he_normal")(x)
    return L.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)


def residual_block(x: bn.models.SymbolicTensor, filters: int, strides: int = 1) -> bn.models.SymbolicTensor:
    """``ReLU(shortcut(x) + BN(Conv(ReLU(BN(Conv(x))))))``; the shortcut is ``x`` itself unless the block
    changes the shape, then a strided 1x1 convolution with batch normalization."""
    h = L.ReLU()(conv_bn(x, filters, 3, strides))
    h = conv_bn(h, filters, 3)
    shortcut = x if strides == 1 and x.shape[-1] == filters else conv_bn(x, filters, 1, strides)
    return L.ReLU()(L.Add()([shortcut, h]))


def build_model(seed: int = 0, learning_rate: float = 2e-3, decay_steps: int | None = None,
                label_smoothing: float = 0.0, shift: float = SHIFT, width: int = WIDTH) -> bn.Model:
    """``(batch, 28, 28, 1)`` images -> ``(batch, 10)`` class probabilities, compiled, float32; with
    ``label_smoothing`` the targets are mixed with the uniform distribution by that fraction, with ``shift``
    training images are moved by up to that fraction of their height and width (``RandomTranslation``);
    ``width`` is the channels of the stem and the first stage (the second has twice as many)."""
    images = bn.Input(shape=(28, 28, 1), name="image")
    x = L.RandomFlip("horizontal")(images)
    if shift:
        x = L.RandomTranslation(shift, shift)(x)
    x = L.MaxPooling2D(2)(L.ReLU()(conv_bn(x, width, 3)))
    x = residual_block(x, width)
    x = residual_block(x, width)
    x = residual_block(x, 2 * width, strides=2)
    x = residual_block(x, 2 * width)
    x = L.Dropout(0.3)(L.GlobalAveragePooling2D()(x))
    out = L.Dense(10, activation="softmax", name="classes")(x)
    model = bn.Model(images, out, name="fashion_resnet", seed=seed)
    rate = learning_rate if decay_steps is None else bn.optimizers.CosineDecay(learning_rate, decay_steps)
    model.compile(loss=bn.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  optimizer=bn.optimizers.Adam(rate), metrics=["accuracy"])
    return model


def images_of(X: np.ndarray) -> np.ndarray:
    """uint8 ``(n, 28, 28)`` -> float32 ``(n, 28, 28, 1)`` in [0, 1]."""
    return (X.astype(np.float32) * np.float32(1 / 255))[..., None]


def main(argv: Sequence[str] | None = None) -> float:
    """Train, print per-epoch progress, seconds per epoch and the test accuracy; returns the accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help=f"passes over the training set (default {EPOCHS})")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="train on the first N training images only (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, flips, dropout and shuffling")
    parser.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                        help="mix the targets with the uniform distribution by EPS (default 0)")
    parser.add_argument("--width", type=int, default=WIDTH, metavar="C",
                        help=f"channels of the stem and first stage; the second stage has 2C (default {WIDTH})")
    parser.add_argument("--shift", type=float, default=SHIFT, metavar="F",
                        help=f"shift training images by up to F of their size, 0 for none (default {SHIFT})")
    args = parser.parse_args(argv)
    if args.epochs < 1 or (args.limit is not None and args.limit < 1) or args.width < 1:
        parser.error("--epochs, --limit and --width must be positive")

    (X_train, y_train), (X_test, y_test) = bn.datasets.load_fashion_mnist()
    X_train, y_train = images_of(X_train[:args.limit]), y_train[:args.limit]
    X_test = images_of(X_test)
    print(f"Fashion-MNIST: {len(X_train)} training and {len(X_test)} test images")
    model = build_model(args.seed, decay_steps=args.epochs * -(-len(X_train) // BATCH),
                        label_smoothing=args.label_smoothing, shift=args.shift, width=args.width)
    model.summary()
    start = time.perf_counter()
    model.fit(X_train, y_train, epochs=args.epochs, batch_size=BATCH, verbose=2)
    seconds = (time.perf_counter() - start) / args.epochs
    print(f"training time: {seconds:.1f} s/epoch ({len(X_train) / seconds:,.0f} samples/s)")
    test_accuracy = float(np.mean(model.predict(X_test, batch_size=500).argmax(axis=1) == y_test))
    print(f"test accuracy: {test_accuracy:.4f}")
    return test_accuracy


if __name__ == "__main__":
    main()
