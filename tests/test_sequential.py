"""The Sequential model: training end to end, reproducibility, dtypes, weights, and bad input."""

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, DataError, NotFittedError, ShapeError
from barenet.layers import BatchNormalization, Dense, Dropout

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([0, 1, 1, 0])


def _binary_model(seed=0, dtype="float32", **compile_kwargs):
    model = bn.Sequential([Dense(4, activation="relu", input_dim=2), Dense(1, activation="sigmoid")],
                          seed=seed, dtype=dtype)
    model.compile("binary_crossentropy", compile_kwargs.pop("optimizer", "sgd"),
                  metrics=compile_kwargs.pop("metrics", ["accuracy"]))
    return model


def _blobs(seed=0, n=60, classes=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    X = rng.standard_normal((n, 4)) + 3.0 * np.eye(classes, 4)[y]
    return X, y


def _classifier(seed):
    model = bn.Sequential([Dense(8, activation="relu", input_dim=4), Dropout(0.3), BatchNormalization(),
                           Dense(3, activation="softmax")], seed=seed)
    model.compile("categorical_crossentropy", bn.optimizers.Adam(0.01), metrics=["accuracy", "f1"])
    return model


def test_xor_full_batch_gradient_descent_learns_xor():
    model = bn.Sequential([Dense(10, activation="relu", input_dim=2), Dense(1, activation="sigmoid")],
                          seed=42, dtype="float64")
    model.compile(loss="binary_crossentropy", optimizer=bn.optimizers.SGD(learning_rate=0.01), metrics=["accuracy"])
    history = model.fit(XOR_X, XOR_Y, epochs=10_000, batch_size=None, shuffle=False, verbose=0)
    assert (model.predict(XOR_X)[:, 0] > 0.5).astype(int).tolist() == [0, 1, 1, 0]
    assert len(history.history["loss"]) == 10_000
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] == 1.0


def test_learns_three_blobs_with_dropout_and_batchnorm():
    X, y = _blobs()
    model = _classifier(seed=1)
    model.fit(X, y, epochs=30, batch_size=16, verbose=0)
    assert model.evaluate(X, y)["accuracy"] > 0.9


# ----------------------------------------------------------------- reproducibility
def _train(seed):
    X, y = _blobs()
    model = _classifier(seed)
    history = model.fit(X, y, epochs=4, batch_size=8, shuffle=True, validation_split=0.2, verbose=0)
    return model, history


def test_same_seed_gives_identical_weights_and_history_bit_for_bit():
    (m1, h1), (m2, h2) = _train(7), _train(7)
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        assert a.tobytes() == b.tobytes()
    assert h1.history == h2.history  # exact float equality, including val_ keys
    assert set(h1.history) == {"loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1"}


def test_different_seed_gives_different_weights_and_history():
    (m1, h1), (m2, h2) = _train(7), _train(8)
    assert not np.array_equal(m1.get_weights()[0], m2.get_weights()[0])
    assert h1.history["loss"] != h2.history["loss"]


def test_float32_by_default_and_float64_on_request():
    for dtype, expected in ((None, np.float32), ("float64", np.float64)):
        kwargs = {} if dtype is None else {"dtype": dtype}
        model = bn.Sequential([Dense(3, activation="relu", input_dim=2), BatchNormalization(), Dense(1)], seed=0,
                              **kwargs)
        model.compile("mse", "adam")
        model.fit(XOR_X, [0.0, 1.0, 1.0, 0.0], epochs=2, verbose=0)
        assert model.dtype == expected
        assert all(w.dtype == expected for w in model.get_weights())
        assert model.predict(XOR_X.astype(np.float64)).dtype == expected
    with pytest.raises(ConfigError, match=r"dtype must be 'float32' or 'float64', got 'int32'"):
        bn.Sequential([Dense(1)], dtype="int32")


def test_batch_size_none_is_one_full_batch_step_per_epoch():
    model = _binary_model()
    history = model.fit(XOR_X, XOR_Y, epochs=5, batch_size=None, verbose=0)
    assert model.optimizer.iterations == 5
    assert history.params == {"epochs": 5, "batch_size": 4, "samples": 4, "steps": 1}
    model = _binary_model()
    model.fit(np.tile(XOR_X, (5, 1)), np.tile(XOR_Y, 5), epochs=2, batch_size=8, verbose=0)
    assert model.optimizer.iterations == 2 * 3  # ceil(20 / 8) steps per epoch


def test_validation_data_and_split_add_val_keys():
    X, y = _blobs()
    model = _classifier(0)
    history = model.fit(X[:40], y[:40], epochs=2, validation_data=(X[40:], y[40:]), verbose=0)
    assert list(history.history) == ["loss", "accuracy", "f1", "val_loss", "val_accuracy", "val_f1"]
    assert history.epoch == [0, 1]
    history = model.fit(X, y, epochs=1, validation_split=0.25, verbose=0)
    assert history.params["samples"] == 45
    # the split holds out the last samples: val_loss equals evaluate on them
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(X[45:], y[45:])["loss"], rel=1e-5)


def test_validation_split_that_leaves_nothing_is_an_error():
    with pytest.raises(DataError, match=r"validation_split=0.1 of 4 samples leaves 0 for validation and 4 for "
                                        r"training; both need >= 1"):
        _binary_model().fit(XOR_X, XOR_Y, validation_split=0.1, verbose=0)


def _first_epoch_loss(model, X, y, **fit_kwargs):
    """Training loss of one full-batch epoch: the loss at the initial weights."""
    return model.fit(X, y, epochs=1, batch_size=None, shuffle=False, verbose=0, **fit_kwargs).history["loss"][0]


def test_sample_weight_scales_each_samples_loss():
    X, y = XOR_X, XOR_Y
    w = np.array([1.0, 0.0, 2.0, 0.5])
    model = _binary_model(seed=3, dtype="float64")
    model.build()
    p = model.predict(X)[:, 0]
    per_sample = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert _first_epoch_loss(model, X, y, sample_weight=w) == pytest.approx(np.sum(w * per_sample) / 4, rel=1e-12)
    assert model.evaluate(X, y, sample_weight=w)["loss"] == pytest.approx(
        np.sum(w * -(y * np.log(q := model.predict(X)[:, 0]) + (1 - y) * np.log(1 - q))) / 4, rel=1e-12)


def test_class_weight_multiplies_the_loss_of_each_class():
    X, y = _blobs(n=12)
    model = bn.Sequential([Dense(3, activation="softmax", input_dim=4)], seed=0, dtype="float64")
    model.compile("categorical_crossentropy", "sgd")
    model.build()
    p = model.predict(X)
    per_sample = -np.log(p[np.arange(len(y)), y])
    weights = np.array([1.0, 3.0, 0.5])[y]
    got = _first_epoch_loss(model, X, y, class_weight={1: 3.0, 2: 0.5})
    assert got == pytest.approx(np.sum(weights * per_sample) / len(y), rel=1e-12)
    # together with sample_weight, the two multiply
    model2 = bn.Sequential([Dense(3, activation="softmax", input_dim=4)], seed=0, dtype="float64")
    model2.compile("categorical_crossentropy", "sgd")
    sw = np.linspace(0.5, 1.5, len(y))
    got = _first_epoch_loss(model2, X, y, class_weight={1: 3.0, 2: 0.5}, sample_weight=sw)
    assert got == pytest.approx(np.sum(sw * weights * per_sample) / len(y), rel=1e-12)


def test_class_weight_needs_a_classifier():
    model = bn.Sequential([Dense(1, input_dim=2)], seed=0)
    model.compile("mse", "sgd")
    with pytest.raises(ConfigError, match=r"class_weight needs a binary or multi-class model, this one does "
                                          r"regression"):
        model.fit(XOR_X, XOR_Y, class_weight={0: 1.0, 1: 2.0}, verbose=0)


def test_evaluate_returns_loss_and_metrics():
    model = _binary_model(metrics=["accuracy", "precision", "recall"])
    model.fit(XOR_X, XOR_Y, epochs=1, verbose=0)
    result = model.evaluate(XOR_X, XOR_Y)
    assert list(result) == ["loss", "accuracy", "precision", "recall"]
    assert all(isinstance(v, float) for v in result.values())


def test_regression_metrics_in_history():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 2))
    model = bn.Sequential([Dense(1, input_dim=2)], seed=0)
    model.compile("mse", bn.optimizers.SGD(0.1), metrics=["mae", "r2"])
    history = model.fit(X, X @ [1.0, -1.0], epochs=20, verbose=0)
    assert list(history.history) == ["loss", "mae", "r2"]
    assert history.history["r2"][-1] > 0.9


def test_model_is_built_from_the_data_when_no_input_dim_is_given():
    model = bn.Sequential([Dense(3, activation="relu"), Dense(1)], seed=0)
    model.compile("mse", "sgd")
    with pytest.raises(NotFittedError, match=r"predict needs a built model; call fit \(or build\) first"):
        model.predict(XOR_X)
    model.fit(XOR_X, [0.0, 1.0, 1.0, 0.0], epochs=1, verbose=0)
    assert model.input_shape == (2,) and model.predict(XOR_X).shape == (4, 1)


# ----------------------------------------------------------------- construction and description
def test_construction_checks_every_layer_and_builds_once_from_a_declared_input_shape():
    first, second = Dense(4, input_dim=3), Dense(2)
    model = bn.Sequential([first, second, Dropout(0.1)], seed=0)
    assert model.built and model.output_shape == (2,) and second.input_shape == (4,)
    with pytest.raises(ConfigError, match=r"is already in the model; create a new layer to add another"):
        bn.Sequential([Dense(2), first, first])
    with pytest.raises(ConfigError, match=r"Sequential takes Layer objects, got str"):
        bn.Sequential([Dense(2), "relu"])
    with pytest.raises(ShapeError, match=r"Dense\(4.*\) was built for input \(3,\), but the layers before it "
                                         r"output \(5,\)"):
        bn.Sequential([Dense(5, input_dim=2), first])


def test_from_architecture_builds_dense_stack():
    arch = [{"input_dim": 2, "output_dim": 5, "activation": "relu"},
            {"input_dim": 5, "output_dim": 1, "activation": "sigmoid", "kernel_initializer": "he_normal"}]
    model = bn.Sequential.from_architecture(arch, seed=3)
    model.build()
    assert [type(layer) for layer in model.layers] == [Dense, Dense]
    assert [w.shape for w in model.get_weights()] == [(2, 5), (5,), (5, 1), (1,)]
    assert repr(model) == "Sequential([Dense(5, activation='relu'), Dense(1, activation='sigmoid')], dtype='float32')"


def test_from_architecture_errors():
    with pytest.raises(ConfigError, match=r"architecture is empty"):
        bn.Sequential.from_architecture([])
    with pytest.raises(ConfigError, match=r"architecture\[0\] lacks \['output_dim'\]; got keys \['activation', "
                                          r"'input_dim'\]"):
        bn.Sequential.from_architecture([{"input_dim": 2, "activation": "relu"}])
    with pytest.raises(ShapeError, match=r"architecture\[1\] has input_dim 4, but architecture\[0\] outputs 5"):
        bn.Sequential.from_architecture([{"input_dim": 2, "output_dim": 5}, {"input_dim": 4, "output_dim": 1}])
    with pytest.raises(ConfigError, match=r"unknown activation 'softsign'"):
        bn.Sequential.from_architecture([{"input_dim": 2, "output_dim": 1, "activation": "softsign"}])


def test_summary_lists_layers_shapes_and_parameter_counts():
    model = bn.Sequential([Dense(4, activation="relu", input_dim=2), BatchNormalization(name="bn"),
                           Dense(1, activation="sigmoid")], name="tiny")
    lines = model.summary(print_fn=None).splitlines()
    assert lines[0] == "Model: tiny (dtype float32)"
    assert lines[2].split() == ["Layer", "(type)", "Output", "shape", "Params"]
    assert lines[4].split() == ["dense_0", "(Dense(4,", "activation='relu'))", "(None,", "4)", "12"]
    assert lines[5].split()[0] == "bn" and lines[5].split()[-1] == "16"  # gamma, beta and moving statistics
    assert lines[6].split()[-1] == "5"
    assert lines[-3:] == ["Total params: 33 (132.00 B)", "Trainable params: 25 (100.00 B)",
                          "Non-trainable params: 8 (32.00 B)"]


def test_summary_prints_by_default(capsys):
    model = _binary_model()
    model.build()
    text = model.summary()
    assert capsys.readouterr().out == text + "\n"


def test_get_weights_order_and_set_weights_round_trip():
    model = bn.Sequential([Dense(3, input_dim=2), BatchNormalization(), Dense(1)], seed=0)
    model.build()
    weights = model.get_weights()
    assert [w.shape for w in weights] == [(2, 3), (3,), (3,), (3,), (3,), (3,), (3, 1), (1,)]
    np.testing.assert_array_equal(weights[2], 1.0)  # gamma
    np.testing.assert_array_equal(weights[3], 0.0)  # beta
    np.testing.assert_array_equal(weights[4], 0.0)  # moving mean
    np.testing.assert_array_equal(weights[5], 1.0)  # moving variance
    new = [np.full(w.shape, i, dtype=np.float32) for i, w in enumerate(weights)]
    model.set_weights(new)
    assert model.layers[0].params["kernel"][0, 0] == 0 and model.layers[1].buffers["moving_variance"][0] == 5
    for got, want in zip(model.get_weights(), new, strict=True):
        np.testing.assert_array_equal(got, want)
    model.get_weights()[0][...] = 99  # copies, not views
    assert model.layers[0].params["kernel"][0, 0] == 0


def test_build_packs_all_parameters_and_gradients_into_one_buffer_each():
    model = bn.Sequential([bn.layers.Embedding(7, 3, input_shape=(5,)),
                           bn.layers.Bidirectional(bn.layers.GRU(4, return_sequences=True)),
                           bn.layers.BatchNormalization(), bn.layers.Flatten(), Dense(2, activation="softmax")],
                          seed=1, dtype="float64")
    before = bn.Sequential.from_config(model.get_config())
    model.build()
    params, grads = model.parameters(), model.gradients()
    flat = next(iter(params.values())).base
    assert flat.ndim == 1 and flat.size == model.n_params
    assert all(p.base is flat for p in params.values())
    assert all(g.base is next(iter(grads.values())).base for g in grads.values())
    wrapper = model.layers[1]  # the wrapper and its two directions still share their arrays
    assert wrapper.params["forward_kernel"] is wrapper.forward_layer.params["kernel"]
    assert wrapper.grads["backward_bias"] is wrapper.backward_layer.grads["bias"]
    # Packing keeps the values the layers were built with: the same seed gives the same weights.
    before.build()
    for a, b in zip(model.get_weights(), before.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    X = np.random.default_rng(0).integers(0, 7, (40, 5))
    y = np.arange(40) % 2
    start = {key: p.copy() for key, p in params.items()}
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    assert model.optimizer._layout[1] is not None  # the packed update ran
    assert all(p.base is flat for p in model.parameters().values())  # the layers still use the buffer
    for key, p in model.parameters().items():  # and every array was trained through it
        assert not np.array_equal(p, start[key]), key


def test_a_pickled_model_is_packed_again_and_trains_on_exactly_like_the_original():
    import pickle

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
    model = bn.Sequential([Dense(8, activation="relu", input_dim=4), BatchNormalization(),
                           Dense(3, activation="softmax")], seed=0)
    model.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(0.01))
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    copy = pickle.loads(pickle.dumps(model))
    flat = next(iter(copy.parameters().values())).base
    assert flat is not None and all(p.base is flat for p in copy.parameters().values())
    for m in (model, copy):
        m.fit(X, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(model.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_set_weights_errors():
    with pytest.raises(NotFittedError, match=r"set_weights needs a built model"):
        bn.Sequential([Dense(3), Dense(1)], seed=0).set_weights([])
    model = bn.Sequential([Dense(3, input_dim=2), Dense(1)], seed=0)
    with pytest.raises(ShapeError, match=r"set_weights expected 4 arrays for this model, got 3"):
        model.set_weights(model.get_weights()[:3])
    bad = model.get_weights()
    bad[2] = np.zeros((1, 3))
    with pytest.raises(ShapeError, match=r"Dense\(1\) weight 'kernel' has shape \(3, 1\), got \(1, 3\)"):
        model.set_weights(bad)


def test_config_round_trip_rebuilds_the_same_model():
    model = bn.Sequential([Dense(4, activation="tanh", input_dim=3), Dropout(0.2), Dense(2, activation="softmax")],
                          seed=5, dtype="float64", name="m")
    model.build()
    again = bn.Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    for a, b in zip(model.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # same seed, same initial weights


# ----------------------------------------------------------------- bad input
def test_wrong_feature_count_names_the_layer_and_both_shapes():
    model = _binary_model()
    with pytest.raises(ShapeError, match=r"^X has shape \(4, 3\), but the model's first layer "
                                         r"Dense\(4, activation='relu'\) expects \(n_samples, 2\)$"):
        model.fit(np.zeros((4, 3)), XOR_Y, verbose=0)
    model.fit(XOR_X, XOR_Y, epochs=1, verbose=0)
    with pytest.raises(ShapeError, match=r"^X has shape \(2, 5\), but the model's first layer"):
        model.predict(np.zeros((2, 5)))
    with pytest.raises(ShapeError, match=r"^X is 1-d with shape \(4,\); expected \(n_samples, 2\)$"):
        model.predict(np.zeros(4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_and_targets_are_rejected(bad):
    X = XOR_X.copy()
    X[2, 1] = bad
    with pytest.raises(DataError, match=r"^X contains 1 NaN or infinite values \(first in row 2\); "
                                        r"clean or impute them first$"):
        _binary_model().fit(X, XOR_Y, verbose=0)
    with pytest.raises(DataError, match=r"^targets contain 1 NaN or infinite values$"):
        _binary_model().fit(XOR_X, np.array([0, 1, bad, 0]), verbose=0)


def test_finite_inputs_whose_sum_overflows_are_accepted_and_a_nan_among_them_is_found():
    # The input check first sums X (a finite sum clears it without a mask); an overflowing sum of finite values
    # must fall through to the exact check, not be taken for a NaN.
    model = _binary_model()
    model.fit(XOR_X, XOR_Y, epochs=1, verbose=0)
    X = np.full((4, 2), 3e38, np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(X, dtype=np.float32))
    assert model.predict(X).shape == (4, 1)
    X[3, 0] = np.nan
    with pytest.raises(DataError, match=r"^X contains 1 NaN or infinite values \(first in row 3\)"):
        model.predict(X)


def test_a_missing_value_in_a_dataframe_names_its_column():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame({"temp": [0.0, 0.0, 1.0, 1.0], "wind": [0.0, 1.0, np.nan, 1.0]})
    message = r"^X contains 1 NaN or infinite values \(first in row 2, column 'wind'\); clean or impute them first$"
    with pytest.raises(DataError, match=message):
        _binary_model().fit(X, XOR_Y, verbose=0)
    with pytest.raises(DataError, match=message):
        _binary_model().predict(X)
    nullable = pd.DataFrame({"temp": pd.array([0, 0, None, 1], dtype="Int64"), "wind": [0.0, 1.0, 0.0, 1.0]})
    with pytest.raises(DataError, match=r"\(first in row 2, column 'temp'\)"):  # pandas' NA too
        _binary_model().predict(nullable)
    with pytest.raises(DataError, match=r"^y contains 1 NaN or infinite values \(first in row 3, column 'rain'\); "):
        _binary_model().fit(XOR_X, pd.Series([0, 1, 1, None], name="rain", dtype=float), verbose=0)


def test_labels_that_do_not_fit_the_loss():
    with pytest.raises(DataError, match=r"binary_crossentropy needs targets in \[0, 1\] \(labels 0/1\), got "
                                        r"values from 0 to 2"):
        _binary_model().fit(XOR_X, [0, 1, 2, 0], verbose=0)
    X, y = _blobs()
    with pytest.raises(DataError, match=r"labels must be integers in \[0, 2\] for a model with 3 outputs, "
                                        r"got values from 0 to 3"):
        _classifier(0).fit(X[:4], [0, 1, 2, 3], verbose=0)
    model = bn.Sequential([Dense(1, activation="sigmoid", input_dim=4)])
    model.compile("categorical_crossentropy", "sgd")
    with pytest.raises(DataError, match=r"one unit per class \(>= 2 units\), got output shape \(1,\)"):
        model.fit(X, y, verbose=0)


def test_empty_arrays_and_length_mismatch():
    with pytest.raises(DataError, match=r"^X is empty \(shape \(0, 2\)\); expected at least one sample$"):
        _binary_model().fit(np.zeros((0, 2)), [], verbose=0)
    with pytest.raises(DataError, match=r"^X is None"):
        _binary_model().fit(None, XOR_Y, verbose=0)
    with pytest.raises(ShapeError, match=r"^X has 4 samples but y has 3; they must match$"):
        _binary_model().fit(XOR_X, XOR_Y[:3], verbose=0)
    with pytest.raises(ShapeError, match=r"sample_weight has shape \(3,\); expected \(4,\), one weight per sample"):
        _binary_model().fit(XOR_X, XOR_Y, sample_weight=[1, 1, 1], verbose=0)
    with pytest.raises(DataError, match=r"X must be numeric"):
        _binary_model().fit([["a", "b"]] * 4, XOR_Y, verbose=0)


def test_use_before_build_fit_or_compile():
    model = bn.Sequential([Dense(4, activation="relu"), Dense(1, activation="sigmoid")])
    with pytest.raises(NotFittedError, match=r"^predict needs a built model; call fit \(or build\) first$"):
        model.predict(XOR_X)
    with pytest.raises(NotFittedError, match=r"^fit needs a compiled model; call compile\(loss=\.\.\., "
                                             r"optimizer=\.\.\.\) first$"):
        model.fit(XOR_X, XOR_Y)
    with pytest.raises(NotFittedError, match=r"^evaluate needs a compiled model"):
        model.evaluate(XOR_X, XOR_Y)
    model.compile("binary_crossentropy", "sgd")
    with pytest.raises(NotFittedError, match=r"^evaluate needs a built model; call fit \(or build\) first$"):
        model.evaluate(XOR_X, XOR_Y)
    with pytest.raises(NotFittedError, match=r"cannot build: the first layer Dense\(3\) has no input_dim"):
        bn.Sequential([Dense(3)]).build()


def test_unknown_names_are_config_errors():
    model = _binary_model()
    with pytest.raises(ConfigError, match=r"^unknown loss 'hinge'; expected one of \["):
        model.compile("hinge", "sgd")
    with pytest.raises(ConfigError, match=r"^unknown optimizer 'adagrad'; expected one of \['adam', 'adamw', "
                                          r"'rmsprop', 'sgd'\] or an Optimizer$"):
        model.compile("mse", "adagrad")
    with pytest.raises(ConfigError, match=r"^unknown metric 'auc'; expected one of \["):
        model.compile("mse", "sgd", metrics=["auc"])
    with pytest.raises(ConfigError, match=r"^unknown activation 'swoosh'; expected one of \["):
        Dense(2, activation="swoosh")
    with pytest.raises(ConfigError, match=r"^unknown initializer 'lecun_normal'; expected one of \["):
        Dense(2, kernel_initializer="lecun_normal")


@pytest.mark.parametrize("bad", [dict(loss="mse", optimizer="adm"), dict(loss="hinge", optimizer="sgd"),
                                 dict(loss="mse", optimizer="sgd", metrics=["accuracy", "auc"])])
def test_a_failed_compile_leaves_the_model_as_it_was(bad):
    model = _binary_model(optimizer="adam", metrics=["accuracy"])
    loss, optimizer = model.loss, model.optimizer
    with pytest.raises(ConfigError, match="unknown"):
        model.compile(**bad)
    assert model.loss is loss and model.optimizer is optimizer and model.metric_names == ["accuracy"]


def test_bad_fit_arguments():
    model = _binary_model()
    with pytest.raises(ConfigError, match=r"epochs must be a non-negative integer, got 1.5"):
        model.fit(XOR_X, XOR_Y, epochs=1.5)
    with pytest.raises(ConfigError, match=r"batch_size must be a positive integer or None, got 0"):
        model.fit(XOR_X, XOR_Y, batch_size=0)
    with pytest.raises(ConfigError, match=r"validation_split must be in \[0, 1\), got 1.0"):
        model.fit(XOR_X, XOR_Y, validation_split=1.0)
    # booleans are ints to Python, never counts
    with pytest.raises(ConfigError, match=r"^epochs must be a non-negative integer, got True$"):
        model.fit(XOR_X, XOR_Y, epochs=True)
    with pytest.raises(ConfigError, match=r"^batch_size must be a positive integer or None, got True$"):
        model.fit(XOR_X, XOR_Y, batch_size=True)
    with pytest.raises(ConfigError, match=r"^batch_size must be a positive integer or None, got -1$"):
        model.predict(XOR_X, batch_size=-1)
    with pytest.raises(ConfigError, match=r"Sequential takes Layer objects, got str: 'relu'"):
        bn.Sequential(["relu"])
    with pytest.raises(ConfigError, match=r"seed must be an int, a numpy Generator or None, got str"):
        bn.Sequential([Dense(1)], seed="42")
