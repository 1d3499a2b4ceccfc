"""Keras's model-level habits (models/keras_api.py): save and load_model, count_params, get_layer, the weight
lists, summary's totals, layer get_weights, and evaluate/predict with verbose and batch_size.

Where Keras 3 is installed, the counts and the order of the weight lists are checked against it.
"""

import os

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, ModelFileError, NotFittedError
from barenet.layers import BatchNormalization, Dense


def _model(**kwargs):
    """Dense(4) -> BatchNormalization -> Dense(3, softmax) on 3 features, compiled."""
    model = bn.Sequential([Dense(4, activation="relu", input_dim=3, name="hidden"), BatchNormalization(),
                           Dense(3, activation="softmax")], seed=0, **kwargs)
    model.compile("categorical_crossentropy", "adam", metrics=["accuracy"])
    return model


def _data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0).astype(int)


# --------------------------------------------------------------------- save / load_model
def test_model_save_and_load_model_round_trip(tmp_path):
    model = _model()
    X, y = _data()
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.barenet")
    again = bn.load_model(tmp_path / "m.barenet")
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    assert again.optimizer.get_state().keys() == model.optimizer.get_state().keys()
    # the same file as bn.save writes
    bn.save(model, tmp_path / "n.barenet")
    assert bn.load(tmp_path / "n.barenet").get_config() == again.get_config()


@pytest.mark.parametrize("suffix", [".keras", ".h5", ".HDF5", ".onnx"])
def test_model_save_refuses_other_formats_suffixes(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    with pytest.raises(ModelFileError, match=rf"cannot save to '.*model\{suffix}': '\{suffix}' is the suffix of .*, "
                                             r"a format barenet does not write\. .* named '\.barenet' by convention: "
                                             rf"save to '.*model\.barenet'"):
        _model().save(path)
    with pytest.raises(ModelFileError, match=r"a format barenet does not write"):
        bn.save(_model(), path)
    assert not path.exists() and os.listdir(tmp_path) == []


def test_model_save_without_overwrite_keeps_an_existing_file(tmp_path):
    path = tmp_path / "m.barenet"
    path.write_bytes(b"keep")
    with pytest.raises(ModelFileError, match=r"exists and overwrite=False"):
        _model().save(path, overwrite=False)
    assert path.read_bytes() == b"keep"
    _model().save(path)
    assert bn.load_model(path).built


def test_model_checkpoint_refuses_a_keras_name_before_training(tmp_path):
    with pytest.raises(ModelFileError, match=r"'\.keras' is the suffix of Keras model files"):
        bn.callbacks.ModelCheckpoint(str(tmp_path / "best-{epoch}.keras"))


# --------------------------------------------------------------------- layers and weights
def test_get_layer_by_name_or_index_as_keras_does():
    model = _model()
    hidden, norm, out = model.layers
    assert model.layer_names() == ["hidden", "batchnormalization_1", "dense_2"]
    assert model.get_layer("hidden") is hidden
    assert model.get_layer("batchnormalization_1") is norm  # the names summary shows
    assert model.get_layer(index=2) is out and model.get_layer(index=-1) is out
    assert model.get_layer(name="dense_2") is out


def test_get_layer_errors_say_what_exists():
    model = _model()
    with pytest.raises(ConfigError, match=r"the model has no layer named 'dense'; its layers are "
                                          r"\['hidden', 'batchnormalization_1', 'dense_2'\]"):
        model.get_layer("dense")
    with pytest.raises(ConfigError, match=r"get_layer index 3 is out of range: the model has 3 layers "
                                          r"\(indices 0 to 2, or -3 to -1\)"):
        model.get_layer(index=3)
    with pytest.raises(ConfigError, match=r"exactly one of the two; got name=None, index=None"):
        model.get_layer()
    with pytest.raises(ConfigError, match=r"exactly one of the two; got name='hidden', index=0"):
        model.get_layer("hidden", 0)
    with pytest.raises(ConfigError, match=r"get_layer index must be an integer, got '0'"):
        model.get_layer(index="0")


def test_weight_lists_are_the_live_arrays_in_get_weights_order():
    model = _model()
    shapes = [(3, 4), (4,), (4,), (4,), (4,), (4,), (4, 3), (3,)]
    assert [w.shape for w in model.weights] == shapes
    assert [w.shape for w in model.trainable_weights] == [(3, 4), (4,), (4,), (4,), (4, 3), (3,)]
    assert [w.shape for w in model.non_trainable_weights] == [(4,), (4,)]  # moving mean and variance
    for listed, copied in zip(model.weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(listed, copied)
    # live: a write changes the model, and training shows in an array read before it
    kernel = model.trainable_weights[0]
    assert kernel is model.layers[0].params["kernel"]
    kernel[...] = 0.5
    np.testing.assert_array_equal(model.get_weights()[0], 0.5)
    moving_mean = model.non_trainable_weights[0]
    model.fit(*_data(), epochs=1, verbose=0)
    assert not np.all(kernel == 0.5) and not np.all(moving_mean == 0)


def test_count_params_counts_trainable_and_not():
    model = _model()
    assert model.count_params() == 3 * 4 + 4 + 4 * 4 + 4 * 3 + 3 == 47
    assert model.n_params == 47 - 8


def test_weights_need_a_built_model():
    model = bn.Sequential([Dense(2)])
    for what in ("weights", "trainable_weights", "non_trainable_weights"):
        with pytest.raises(NotFittedError, match=rf"{what} needs a built model"):
            getattr(model, what)
    with pytest.raises(NotFittedError, match=r"count_params needs a built model"):
        model.count_params()
    assert model.summary(print_fn=None).endswith("Not built yet")


def test_layer_get_weights_copies_and_set_weights_takes_them_back():
    layer = _model().layers[1]
    weights = layer.get_weights()
    assert [w.shape for w in weights] == [(4,)] * 4
    for copy, live in zip(weights, layer.weights(), strict=True):
        assert copy is not live
        np.testing.assert_array_equal(copy, live)
    weights[0][...] = 3.0
    assert not np.any(layer.params["gamma"] == 3.0)
    layer.set_weights(weights)
    np.testing.assert_array_equal(layer.params["gamma"], 3.0)


def test_summary_ends_with_keras_totals():
    text = _model(dtype="float64").summary(print_fn=None)
    assert text.splitlines()[-3:] == ["Total params: 47 (376.00 B)", "Trainable params: 39 (312.00 B)",
                                      "Non-trainable params: 8 (64.00 B)"]
    big = bn.Sequential([Dense(1000, input_dim=1000)])
    assert "Total params: 1,001,000 (3.82 MB)" in big.summary(print_fn=None)


@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")
def test_counts_and_weight_order_match_keras():
    os.environ["KERAS_BACKEND"] = "torch"
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras", minversion="3")
    ours = _model()
    theirs = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                               keras.layers.BatchNormalization(), keras.layers.Dense(3, activation="softmax")])
    assert ours.count_params() == theirs.count_params()
    for mine, reference in ((ours.weights, theirs.weights), (ours.trainable_weights, theirs.trainable_weights),
                            (ours.non_trainable_weights, theirs.non_trainable_weights)):
        assert [w.shape for w in mine] == [tuple(w.shape) for w in reference]
    theirs.set_weights(ours.get_weights())  # Keras takes barenet's list as it is
    for layer, reference in zip(ours.layers, theirs.layers, strict=True):
        for mine, copy in zip(layer.get_weights(), reference.get_weights(), strict=True):
            np.testing.assert_array_equal(mine, copy)


# --------------------------------------------------------------------- evaluate / predict
def test_evaluate_and_predict_are_silent_by_default_and_take_verbose(capsys):
    model = _model()
    X, y = _data()
    quiet = model.evaluate(X, y, verbose=0)
    assert model.evaluate(X, y) == quiet
    np.testing.assert_array_equal(model.predict(X, verbose=0), model.predict(X))
    assert capsys.readouterr().out == ""
    for verbose in (1, 2):  # not a terminal: the closing line only
        logs = model.evaluate(X, y, batch_size=16, verbose=verbose)
        assert logs == pytest.approx(quiet, rel=1e-6)
        out = capsys.readouterr().out
        assert out.startswith("evaluate: 3 batches - ") and out.endswith(
            f" - loss: {logs['loss']:.4f} - accuracy: {logs['accuracy']:.4f}\n")
        model.predict(X, batch_size=40, verbose=verbose)
        assert capsys.readouterr().out.startswith("predict: 1 batch - ")


def test_progress_bar_is_drawn_on_a_terminal():
    import io

    from barenet.models.callbacks import StepProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = StepProgress("predict", 2, verbose=1, stream=stream, width=4)
    progress.update(1)
    progress.update(2)
    progress.end()
    text = stream.getvalue()
    # the last batch is always drawn (earlier ones at most every 0.1 s), then the closing line over the bar
    assert "\rpredict [====] 2/2" in text and "\rpredict: 2 batches - " in text and text.endswith("\x1b[K\n")


def test_evaluate_batch_size_does_not_change_the_result():
    model = _model(dtype="float64")
    X, y = _data(n=50)
    whole = model.evaluate(X, y)
    for batch_size in (1, 7, 50, 1000):
        assert model.evaluate(X, y, batch_size=batch_size) == pytest.approx(whole, rel=1e-12)


def test_bad_verbose_and_batch_size_are_config_errors():
    model = _model()
    X, y = _data()
    for call in (lambda v: model.evaluate(X, y, verbose=v), lambda v: model.predict(X, verbose=v)):
        with pytest.raises(ConfigError, match=r"verbose must be 0, 1 or 2, got 3"):
            call(3)
        with pytest.raises(ConfigError, match=r"verbose must be 0, 1 or 2, got True"):
            call(True)
    with pytest.raises(ConfigError, match=r"batch_size"):
        model.evaluate(X, y, batch_size=0)
