"""
Convolutional networks: digits and Fashion-MNIST
================================================

A dense layer treats an image as a list of unrelated numbers; a convolution slides one small filter over the
whole image, so the same feature (an edge, a corner, a stroke) is found wherever it appears, with a handful of
weights. Pooling then keeps the strongest response of each neighbourhood and halves the resolution, and a
stack of the two sees ever larger patterns. This page trains a small convolutional network on scikit-learn's
8x8 digits, then on a part of Fashion-MNIST (28x28 photographs of clothes in 10 classes), and looks at what it
gets wrong: a confusion matrix and the misclassified images.

The full Fashion-MNIST run, a larger network on all 60,000 training images for 12 epochs, is
``python examples/fashion_cnn.py``; ``python examples/digits.py`` is a dense network on the digits.
"""

# %%
# Digits
# ------
# Images are channels-last arrays, ``(batch, height, width, channels)``: the digits are ``(n, 8, 8, 1)``.
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import train_test_split

import barenet as bn

L = bn.layers
digits_X, digits_y = load_digits(return_X_y=True)
digits_X = (digits_X / 16.0).reshape(-1, 8, 8, 1).astype(np.float32)
Xd_train, Xd_test, yd_train, yd_test = train_test_split(digits_X, digits_y, test_size=0.25, stratify=digits_y,
                                                        random_state=0)

digits_model = bn.Sequential([
    L.Conv2D(16, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),   # 16 filters of 3x3
    L.MaxPooling2D(2),                                                            # 8x8 -> 4x4
    L.Conv2D(32, 3, padding="same", activation="relu"),
    L.GlobalAveragePooling2D(),                                                   # one number per filter
    L.Dense(10, activation="softmax"),
], seed=0)
digits_model.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(3e-3), metrics=["accuracy"])
digits_model.summary()
history = digits_model.fit(Xd_train, yd_train, epochs=20, batch_size=32, validation_data=(Xd_test, yd_test),
                           verbose=0)
print(f"digits test accuracy: {history.history['val_accuracy'][-1]:.3f} with "
      f"{digits_model.count_params():,} weights")

# %%
# The first layer's 16 filters are 3x3 weight patterns; each one's output is a map of where the image matches
# it.

kernels = digits_model.layers[0].params["kernel"][:, :, 0, :]      # (3, 3, 16)
fig, axes = plt.subplots(2, 16, figsize=(14, 2.2))
maps = digits_model.layers[0].forward(Xd_test[:1])[0]                # (8, 8, 16) for one test digit
for k in range(16):
    axes[0, k].imshow(kernels[:, :, k], cmap="RdBu_r")
    axes[1, k].imshow(maps[:, :, k], cmap="gray")
for ax in axes.ravel():
    ax.set_axis_off()
fig.suptitle(f"top: the 16 learned 3x3 filters; bottom: their ReLU outputs on a test digit (a {yd_test[0]})")
fig.tight_layout()

# %%
# Fashion-MNIST
# -------------
# ``bn.datasets.load_fashion_mnist()`` reads the four standard files from a folder (``$BARENET_DATA``, or
# ``/usr/share/datasets/fashion-mnist`` where the Debian package ``dataset-fashion-mnist`` is installed); barenet
# never downloads. To keep this page under a minute it trains on the first 5,000 training images for 3 epochs
# and tests on 2,000. Where the files are not installed, the page says so and runs the same code on the digits,
# upscaled to 28x28, instead.

try:
    (X_train, y_train), (X_test, y_test) = bn.datasets.load_fashion_mnist()
    X_train, y_train, X_test, y_test = X_train[:5000], y_train[:5000], X_test[:2000], y_test[:2000]
    class_names = list(bn.datasets.FASHION_MNIST_CLASSES)
    data_name = "Fashion-MNIST"
except bn.errors.DataError as error:
    print(f"Fashion-MNIST is not installed here ({str(error).split('.')[0]}); using the digits instead")
    upscaled = np.kron(digits_X[..., 0], np.ones((4, 4), dtype=np.float32))[:, 2:30, 2:30]  # 32x32 -> 28x28
    X_train, X_test, y_train, y_test = train_test_split((upscaled * 255).astype(np.uint8), digits_y,
                                                        test_size=0.25, stratify=digits_y, random_state=0)
    class_names = [str(d) for d in range(10)]
    data_name = "digits (upscaled)"
X_train = (X_train.astype(np.float32) / 255)[..., None]          # uint8 (n, 28, 28) -> float32 (n, 28, 28, 1)
X_test = (X_test.astype(np.float32) / 255)[..., None]
print(f"{data_name}: {len(X_train)} training and {len(X_test)} test images of {X_train.shape[1:]}")

fig, axes = plt.subplots(2, 10, figsize=(12, 2.8))
for k, ax in enumerate(axes.ravel()):
    ax.imshow(X_train[k, :, :, 0], cmap="gray_r")
    ax.set_title(class_names[y_train[k]], fontsize=8)
    ax.set_axis_off()
fig.tight_layout()

# %%
# Two convolution blocks, each convolution followed by batch normalization and pooling, then a small dense head
# with dropout. ``"same"`` padding keeps the size, each pooling halves it: 28 -> 14 -> 7. Batch normalization's
# moving averages, which it uses at inference, get ``momentum=0.9`` (Keras's default is 0.99): a run of a few
# hundred steps is too short for the slower average to forget its starting values.

model = bn.Sequential([
    L.Conv2D(16, 3, padding="same", use_bias=False, input_shape=(28, 28, 1)),
    L.BatchNormalization(momentum=0.9), L.ReLU(), L.MaxPooling2D(2),
    L.Conv2D(32, 3, padding="same", use_bias=False),
    L.BatchNormalization(momentum=0.9), L.ReLU(), L.MaxPooling2D(2),
    L.Flatten(), L.Dropout(0.3), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax"),
], seed=0)
model.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(2e-3), metrics=["accuracy"])
model.summary()
start = time.perf_counter()
history = model.fit(X_train, y_train, epochs=3, batch_size=64, validation_data=(X_test, y_test), verbose=2)
print(f"{time.perf_counter() - start:.1f} s of training")

# %%
# What it gets wrong
# ------------------
# The confusion matrix counts, for each true class (row), which class the network predicted (column); the
# diagonal holds the correct answers.

probabilities = model.predict(X_test)
predicted = probabilities.argmax(axis=1)
print(f"test accuracy: {np.mean(predicted == y_test):.3f}")
matrix = confusion_matrix(y_test, predicted, labels=range(10))

fig, ax = plt.subplots(figsize=(7.5, 6.5))
image = ax.imshow(matrix, cmap="Blues")
for i in range(10):
    for j in range(10):
        ax.text(j, i, matrix[i, j], ha="center", va="center", fontsize=8,
                color="white" if matrix[i, j] > matrix.max() / 2 else "black")
ax.set_xticks(range(10), class_names, rotation=45, ha="right")
ax.set_yticks(range(10), class_names)
ax.set(xlabel="predicted", ylabel="true", title=f"{data_name}: confusion matrix on {len(y_test)} test images")
fig.colorbar(image, ax=ax, shrink=0.8)
fig.tight_layout()

# %%
# The mistakes the network was most sure of, with the class it gave and its probability, and the true class:

wrong = np.flatnonzero(predicted != y_test)
worst = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:12]
fig, axes = plt.subplots(2, 6, figsize=(12, 4.6))
for ax, k in zip(axes.ravel(), worst, strict=False):
    ax.imshow(X_test[k, :, :, 0], cmap="gray_r")
    ax.set_title(f"said {class_names[predicted[k]]} ({probabilities[k, predicted[k]]:.2f})\n"
                 f"is {class_names[y_test[k]]}", fontsize=8)
for ax in axes.ravel():
    ax.set_axis_off()
fig.tight_layout()

# %%
# On Fashion-MNIST most confusions are between garments of similar shape: shirts, T-shirts, pullovers and
# coats. Training longer on all 60,000 images, with a wider network, takes ``examples/fashion_cnn.py`` past 0.92.
