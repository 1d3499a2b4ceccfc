import numpy as np

import barenet as bn


def test_xor_full_batch_gradient_descent_learns_xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0])
    model = bn.Sequential([bn.layers.Dense(10, activation="relu", input_dim=2),
                           bn.layers.Dense(1, activation="sigmoid")], seed=42, dtype="float64")
    model.compile(loss="binary_crossentropy", optimizer=bn.optimizers.SGD(learning_rate=0.01), metrics=["accuracy"])
    history = model.fit(X, y, epochs=10_000, batch_size=None, shuffle=False, verbose=0)
    assert (model.predict(X)[:, 0] > 0.5).astype(int).tolist() == [0, 1, 1, 0]
    assert len(history.history["loss"]) == 10_000
    assert history.history["accuracy"][-1] == 1.0
