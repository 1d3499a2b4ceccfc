"""Model-level gradient checks, and checks that the gradient checker itself catches mistakes."""

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError
from barenet.gradcheck import numerical_gradient, relative_error
from barenet.layers import BatchNormalization, Dense, Dropout
from barenet.losses import BinaryCrossentropy, CategoricalCrossentropy

RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 4))

# (id, final layers, loss, targets, uses the fused logits path)
PAIRINGS = [
    ("sigmoid-bce-fused", [Dense(1, activation="sigmoid")], "binary_crossentropy", RNG.integers(0, 2, 8), True),
    ("sigmoid-multilabel-fused", [Dense(3, activation="sigmoid")], "binary_crossentropy",
     RNG.integers(0, 2, (8, 3)), True),
    ("softmax-ce-fused", [Dense(3, activation="softmax")], "categorical_crossentropy", RNG.integers(0, 3, 8), True),
    ("softmax-layer-ce-fused", [Dense(3), bn.layers.Softmax()], "categorical_crossentropy",
     RNG.integers(0, 3, 8), True),
    ("linear-mse", [Dense(2)], "mse", RNG.standard_normal((8, 2)), False),
    ("linear-huber", [Dense(2)], bn.losses.Huber(0.5), RNG.standard_normal((8, 2)), False),
    ("tanh-mae", [Dense(1, activation="tanh")], "mae", RNG.uniform(-0.9, 0.9, 8), False),
    ("sigmoid-mse-unfused", [Dense(1, activation="sigmoid")], "mse", RNG.uniform(0, 1, 8), False),
    ("linear-bce-from-logits", [Dense(1)], BinaryCrossentropy(from_logits=True), RNG.integers(0, 2, 8), False),
    ("linear-ce-from-logits", [Dense(3)], CategoricalCrossentropy(from_logits=True), RNG.integers(0, 3, 8), False),
]


def _model(final_layers, loss, hidden=None):
    layers = hidden if hidden is not None else [
        Dense(5, activation="tanh", input_dim=4, l2=0.01), BatchNormalization(), Dense(4, activation="elu", l2=0.02)]
    model = bn.Sequential([*layers, *final_layers], seed=1, dtype="float64")
    model.compile(loss, "sgd")
    model.build()
    return model


@pytest.mark.parametrize("name, final, loss, y, fused", PAIRINGS, ids=[p[0] for p in PAIRINGS])
def test_model_gradients_with_l2_and_batchnorm_match_finite_differences(name, final, loss, y, fused):
    model = _model([type(layer).from_config(layer.get_config()) for layer in final], loss)
    assert model._fusable() is fused
    result = bn.gradcheck(model, X, y)
    assert set(result.errors) == set(model.parameters())
    assert result.max_error < 1e-6, result


def test_model_gradients_with_dropout_under_a_fixed_mask():
    model = _model([Dense(3, activation="softmax")], "categorical_crossentropy",
                   hidden=[Dense(6, activation="relu", input_dim=4), Dropout(0.3), Dense(5, activation="gelu")])
    dropout = model.layers[1]
    result = bn.gradcheck(model, X, RNG.integers(0, 3, 8),
                          before_forward=lambda: setattr(dropout, "rng", np.random.default_rng(4)))
    assert result.max_error < 1e-6, result


def test_l2_penalty_is_in_the_loss_and_its_gradient():
    model = _model([Dense(1)], "mse", hidden=[Dense(3, input_dim=4, l2=0.5)])
    y = RNG.standard_normal(8)
    with_penalty = model.compute_gradients(X, y).loss
    W = model.layers[0].params["kernel"]
    plain = bn.losses.MeanSquaredError()(model.predict(X), model.check_targets(y, 8))
    assert with_penalty == pytest.approx(plain + 0.5 * np.sum(W**2), rel=1e-12)
    assert bn.gradcheck(model, X, y).max_error < 1e-6


class _WrongDense(Dense):
    """A deliberately broken layer: its bias gradient is off by a factor of 2."""

    def backward_logits(self, grad, cache):
        out = super().backward_logits(grad, cache)
        self.grads["bias"] *= 2
        return out


def test_gradcheck_catches_a_wrong_gradient():
    layer = _WrongDense(3)
    layer.build((4,), np.random.default_rng(0), "float64")
    result = bn.gradcheck(layer, X)
    assert result.errors["kernel"] < 1e-6 and result.errors["input"] < 1e-6
    assert result.errors["bias"] > 0.1
    assert not result
    assert "bias: " in repr(result)


def test_numerical_gradient_and_relative_error():
    x = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(numerical_gradient(lambda: float(np.sum(x**3)), x), 3 * x**2, rtol=1e-8)
    np.testing.assert_array_equal(x, [1.0, -2.0, 3.0])  # restored after perturbation
    assert relative_error(np.array([1.0, 0.0]), np.array([1.0, 0.0])) == 0.0
    assert relative_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match=r"analytic gradient has shape \(2,\), numeric \(3,\)"):
        relative_error(np.zeros(2), np.zeros(3))


def test_gradcheck_argument_errors():
    model = bn.Sequential([Dense(1, input_dim=4)])
    model.compile("mse", "sgd")
    with pytest.raises(ConfigError, match=r"gradcheck needs a float64 model \(Sequential\(\.\.\., dtype='float64'\)\), "
                                          r"got float32"):
        bn.gradcheck(model, X, np.zeros(8))
    layer = Dense(2)
    layer.build((4,), np.random.default_rng(0))
    with pytest.raises(ConfigError, match=r"gradcheck needs float64; parameter 'kernel' is float32"):
        bn.gradcheck(layer, X)
    with pytest.raises(ConfigError, match=r"gradcheck takes a Layer, a Loss or a Sequential model, got int"):
        bn.gradcheck(3)
    with pytest.raises(ConfigError, match=r"gradcheck of a loss needs predictions x and targets y"):
        bn.gradcheck(bn.losses.MeanSquaredError(), X)
