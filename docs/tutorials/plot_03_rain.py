"""
Will it rain in Seattle today?
==============================

A first classifier on real data: the daily weather records of Seattle, 2012 to 2015, that ship with the
``vega_datasets`` package (1,461 days, read from the package's own copy, so nothing is downloaded). The question
is whether a day had any precipitation, from its temperatures, its wind and the time of year.

This page follows ``examples/rain.py`` (run it with ``python examples/rain.py``; its defaults are the ones used
here) and adds what a script does not show: the data, and the curves of training.
"""

# %%
# The data
# --------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from vega_datasets import local_data

import barenet as bn

weather = local_data.seattle_weather()
print(weather.head())

# %%
# The target is the rain gauge, ``precipitation > 0`` (43% of the days), rather than the ``weather`` label, which
# often contradicts the gauge. ``precipitation`` and ``weather`` are left out of the inputs: they describe the
# answer. The features are the two temperatures, the wind, the day's temperature range (clouds keep days cool
# and nights warm, so wet days have a small range), and the day of the year as a point on the unit circle, so
# that December 31 sits next to January 1.

angle = 2 * np.pi * weather["date"].dt.day_of_year.to_numpy() / 365.25
features = ["temp_max", "temp_min", "wind", "temp_range", "day_sin", "day_cos"]
X = np.column_stack([weather["temp_max"], weather["temp_min"], weather["wind"],
                     weather["temp_max"] - weather["temp_min"], np.sin(angle), np.cos(angle)]).astype(np.float64)
y = (weather["precipitation"].to_numpy() > 0).astype(int)
print(f"{len(y)} days, {y.mean():.1%} with precipitation")

fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
for ax, column, name in zip(axes, (3, 2, 0), ("temperature range (C)", "wind (m/s)", "maximum temperature (C)"),
                            strict=True):
    ax.hist([X[y == 0, column], X[y == 1, column]], bins=30, label=["dry", "wet"], histtype="stepfilled",
            alpha=0.6)
    ax.set(xlabel=name, ylabel="days")
axes[0].legend()
fig.tight_layout()

# %%
# A stratified split keeps a quarter of the days for testing; the scaler learns its means and deviations from
# the training days only, so nothing of the test days leaks into training.

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)

# %%
# The network
# -----------
# 6 inputs, 16 ReLU units, one sigmoid output: the probability of rain, trained with binary cross-entropy and
# Adam. ``validation_data`` is only watched, never trained on; here it is the test split, to draw the curves.

model = bn.Sequential([
    bn.layers.Dense(16, activation="relu", input_dim=X.shape[1], kernel_initializer="he_normal"),
    bn.layers.Dense(1, activation="sigmoid"),
], seed=0)
model.compile(loss="binary_crossentropy", optimizer=bn.optimizers.Adam(0.01),
              metrics=["accuracy", "precision", "recall", "f1"])
history = model.fit(X_train, y_train, epochs=50, batch_size=32, validation_data=(X_test, y_test), verbose=0)

# %%
# Is that good? A model that always answers the more common class sets the bar.

baseline = DummyClassifier(strategy="most_frequent").fit(X_train, y_train)
for name, predicted in (("always 'no rain'", baseline.predict(X_test)),
                        ("network", (model.predict(X_test)[:, 0] >= 0.5).astype(int))):
    print(f"{name:<18} accuracy {accuracy_score(y_test, predicted):.3f}  "
          f"precision {precision_score(y_test, predicted, zero_division=0):.3f}  "
          f"recall {recall_score(y_test, predicted):.3f}  f1 {f1_score(y_test, predicted):.3f}")
print("barenet's own evaluate:", {k: round(v, 3) for k, v in model.evaluate(X_test, y_test).items()})

# %%
# The curves: the loss falls quickly and the held-out loss levels off close to the training loss, so this small
# network barely overfits its 1,095 training days; the probabilities it gives spread the wet and dry days apart,
# though not completely: weather is not fully decided by these six numbers.

epochs = np.arange(1, 51)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
axes[0].plot(epochs, history.history["loss"], label="training")
axes[0].plot(epochs, history.history["val_loss"], label="held out")
axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss")
axes[0].legend()
axes[1].plot(epochs, history.history["accuracy"], label="training")
axes[1].plot(epochs, history.history["val_accuracy"], label="held out")
axes[1].axhline(1 - y_test.mean(), color="gray", ls=":", label="always 'no rain'")
axes[1].set(xlabel="epoch", ylabel="accuracy", title="accuracy")
axes[1].legend()
probability = model.predict(X_test)[:, 0]
axes[2].hist([probability[y_test == 0], probability[y_test == 1]], bins=20, label=["dry", "wet"],
             histtype="stepfilled", alpha=0.6)
axes[2].set(xlabel="predicted probability of rain", ylabel="held-out days", title="what the network says")
axes[2].legend()
fig.tight_layout()
