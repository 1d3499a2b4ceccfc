"""Losses: finite-difference gradients, hand-worked values, stability at extreme logits, target checks."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, DataError
from barenet.gradcheck import numerical_gradient
from barenet.losses import BinaryCrossentropy, CategoricalCrossentropy, Huber, MeanAbsoluteError, MeanSquaredError


def _probabilities(rng, shape):
    return rng.uniform(0.05, 0.95, shape)


def _one_hot(rng, n, k):
    return np.eye(k)[rng.integers(0, k, n)]


def _cases():
    """(id, loss, predictions, targets) in float64; predictions are probabilities or logits as the loss expects."""
    rng = np.random.default_rng(0)
    return [
        ("mse", MeanSquaredError(), rng.standard_normal((5, 3)), rng.standard_normal((5, 3))),
        ("mae", MeanAbsoluteError(), rng.standard_normal((5, 3)), rng.standard_normal((5, 3))),
        ("huber", Huber(delta=0.7), 2 * rng.standard_normal((6, 2)), rng.standard_normal((6, 2))),
        ("bce-probabilities", BinaryCrossentropy(), _probabilities(rng, (6, 1)), rng.integers(0, 2, (6, 1))),
        ("bce-multilabel", BinaryCrossentropy(), _probabilities(rng, (6, 3)), rng.integers(0, 2, (6, 3))),
        ("bce-soft-targets", BinaryCrossentropy(), _probabilities(rng, (4, 2)), rng.uniform(0, 1, (4, 2))),
        ("bce-logits", BinaryCrossentropy(from_logits=True), 2 * rng.standard_normal((6, 2)),
         rng.integers(0, 2, (6, 2))),
        ("cce-one-hot", CategoricalCrossentropy(), _probabilities(rng, (5, 4)), _one_hot(rng, 5, 4)),
        ("cce-logits", CategoricalCrossentropy(from_logits=True), rng.standard_normal((5, 4)),
         _one_hot(rng, 5, 4)),
        ("cce-sequence", CategoricalCrossentropy(from_logits=True), rng.standard_normal((3, 2, 4)),
         np.eye(4)[rng.integers(0, 4, (3, 2))]),
        ("cce-label-smoothing", CategoricalCrossentropy(label_smoothing=0.2), _probabilities(rng, (5, 4)),
         _one_hot(rng, 5, 4)),
        ("cce-logits-label-smoothing", CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
         rng.standard_normal((3, 2, 4)), np.eye(4)[rng.integers(0, 4, (3, 2))]),
    ]


@pytest.mark.parametrize("name, loss, y_pred, y_true", _cases(), ids=[c[0] for c in _cases()])
def test_loss_gradient_matches_finite_differences(name, loss, y_pred, y_true):
    result = bn.gradcheck(loss, y_pred, y_true)
    assert result.max_error < 1e-6, result
    if loss.fuses_with is not None:
        assert "logits" in result.errors  # the fused form was checked too


def test_categorical_crossentropy_integer_labels_equal_one_hot():
    rng = np.random.default_rng(1)
    loss = CategoricalCrossentropy()
    labels = rng.integers(0, 4, 7)
    targets = loss.prepare_targets(labels, (4,), np.float64)
    np.testing.assert_array_equal(targets, labels)  # labels stay labels (no n x classes one-hot array)
    one_hot = np.eye(4)[labels]
    p = _probabilities(rng, (7, 4))
    z = rng.standard_normal((7, 4))
    assert loss(p, targets) == loss(p, one_hot)
    np.testing.assert_array_equal(loss.gradient(p, targets), loss.gradient(p, one_hot))
    for a, b in zip(loss.fused(z, targets), loss.fused(z, one_hot), strict=True):  # labels: one compiled pass
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-16)
    assert bn.gradcheck(loss, p, one_hot).max_error < 1e-6


@pytest.mark.parametrize("loss", [BinaryCrossentropy(), CategoricalCrossentropy()], ids=repr)
def test_fused_gradient_with_sample_weights_matches_finite_differences(loss):
    rng = np.random.default_rng(2)
    z = rng.standard_normal((5, 3))
    t = _one_hot(rng, 5, 3)
    w = rng.uniform(0.1, 2.0, 5)
    value, grad, _ = loss.fused(z, t, w)
    numeric = numerical_gradient(lambda: loss.fused(z, t, w)[0], z)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_mean_squared_error_by_hand():
    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = np.array([[0.0, 2.0], [3.0, 6.0]])
    # per sample: (1 + 0)/2 = 0.5 and (0 + 4)/2 = 2; mean 1.25. dL/dp = 2 (p - t) / (k n) with k = n = 2.
    assert MeanSquaredError()(p, t) == pytest.approx(1.25)
    np.testing.assert_allclose(MeanSquaredError().gradient(p, t), [[0.5, 0.0], [0.0, -1.0]])


def test_huber_by_hand():
    p, t = np.array([[0.5], [3.0]]), np.zeros((2, 1))
    # |r| = 0.5 <= 1: 0.5 * 0.25 = 0.125;  |r| = 3 > 1: 1 * (3 - 0.5) = 2.5;  mean 1.3125
    assert Huber(delta=1.0)(p, t) == pytest.approx(1.3125)
    np.testing.assert_allclose(Huber(delta=1.0).gradient(p, t), [[0.25], [0.5]])


def test_binary_crossentropy_by_hand():
    p, t = np.array([[0.8], [0.3]]), np.array([[1.0], [0.0]])
    expected = (-np.log(0.8) - np.log(0.7)) / 2  # 0.289909...
    assert BinaryCrossentropy()(p, t) == pytest.approx(expected, rel=1e-12)
    assert BinaryCrossentropy()(p, t) == pytest.approx(0.2899092476, rel=1e-9)


def test_categorical_crossentropy_by_hand_and_sample_weights():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    t = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    assert CategoricalCrossentropy()(p, t) == pytest.approx((-np.log(0.7) - np.log(0.8)) / 2, rel=1e-12)
    # weighted: sum_i w_i l_i / n
    w = np.array([2.0, 0.0])
    assert CategoricalCrossentropy()(p, t, w) == pytest.approx(2 * -np.log(0.7) / 2, rel=1e-12)


def test_fused_softmax_crossentropy_by_hand():
    z = np.log(np.array([[1.0, 2.0, 3.0]]))  # softmax = [1/6, 2/6, 3/6]
    t = np.array([[0.0, 0.0, 1.0]])
    value, grad, probs = CategoricalCrossentropy().fused(z, t)
    assert value == pytest.approx(np.log(2.0), rel=1e-12)
    np.testing.assert_allclose(probs, [[1 / 6, 2 / 6, 3 / 6]], rtol=1e-12)
    np.testing.assert_allclose(grad, [[1 / 6, 2 / 6, -1 / 2]], rtol=1e-12)


def test_fused_sigmoid_crossentropy_by_hand():
    z, t = np.array([[0.0], [np.log(3.0)]]), np.array([[1.0], [0.0]])
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4; losses ln 2 and -ln(1/4) = ln 4
    value, grad, probs = BinaryCrossentropy().fused(z, t)
    assert value == pytest.approx((np.log(2.0) + np.log(4.0)) / 2, rel=1e-12)
    np.testing.assert_allclose(probs, [[0.5], [0.75]], rtol=1e-12)
    np.testing.assert_allclose(grad, [[-0.25], [0.375]], rtol=1e-12)


EXTREME = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0], [-1e4, -1e4, -1e4]])
EXTREME_TARGETS = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss", [BinaryCrossentropy(), CategoricalCrossentropy()], ids=repr)
def test_fused_forms_are_finite_and_silent_at_extreme_logits(loss, dtype):
    z, t = EXTREME.astype(dtype), EXTREME_TARGETS.astype(dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        value, grad, probs = loss.fused(z, t)
    assert np.isfinite(value) and value > 1000  # the confidently wrong rows cost about 1e4
    assert grad.dtype == dtype and np.all(np.isfinite(grad))
    assert np.all((probs >= 0) & (probs <= 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "loss", [BinaryCrossentropy(from_logits=True), CategoricalCrossentropy(from_logits=True),
             BinaryCrossentropy(), CategoricalCrossentropy()], ids=repr)
def test_losses_are_finite_and_silent_at_extreme_inputs(loss, dtype):
    z = EXTREME.astype(dtype)
    if not loss.from_logits:  # probabilities at exactly 0 and 1
        z = (z > 0).astype(dtype)
    t = EXTREME_TARGETS.astype(dtype)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        value = loss(z, t)
        grad = loss.gradient(z, t)
    assert np.isfinite(value)
    assert grad.dtype == dtype and np.all(np.isfinite(grad))


def test_fused_and_unfused_agree_on_moderate_logits():
    rng = np.random.default_rng(3)
    z, t = rng.standard_normal((6, 4)), _one_hot(rng, 6, 4)
    for fused_loss, from_logits in ((CategoricalCrossentropy(), CategoricalCrossentropy(from_logits=True)),
                                    (BinaryCrossentropy(), BinaryCrossentropy(from_logits=True))):
        value, grad, _ = fused_loss.fused(z, t)
        assert value == pytest.approx(from_logits(z, t), rel=1e-12)
        np.testing.assert_allclose(grad, from_logits.gradient(z, t), rtol=1e-10, atol=1e-15)


# ----------------------------------------------------------------- prepare_targets
def test_labels_out_of_range_are_rejected():
    with pytest.raises(DataError, match=r"labels must be integers in \[0, 2\] for a model with 3 outputs, "
                                        r"got values from 0 to 3"):
        CategoricalCrossentropy().prepare_targets([0, 1, 3], (3,), np.float32)
    with pytest.raises(DataError, match=r"got values from -1 to 1"):
        CategoricalCrossentropy().prepare_targets([0, -1, 1], (3,), np.float32)


# A label is an index into each row of predictions: fit checks labels in prepare_targets, but __call__, gradient
# and fused are public too, and the compiled kernel behind fused would write past the row. Each entry point is
# tried in a fresh interpreter with and without the compiled kernels (BARENET_NUMBA is read at import).
_LABEL_PROBE = """
import json, numpy as np
from barenet.kernels import NUMBA_ENABLED
from barenet.losses import CategoricalCrossentropy
out = {"numba": NUMBA_ENABLED}
cases = {"5": ((4, 5), [0, 1, 2, 5]), "-1": ((4, 5), [0, 1, 2, -1]), "seq": ((2, 3, 5), [[0, 1, 2], [3, 4, 7]]),
         "short": ((4, 5), [0, 1]), "uint": ((4, 5), np.array([0, 1, 2, 9], np.uint8))}
for name, (shape, y) in cases.items():
    for logits in (True, False):
        loss = CategoricalCrossentropy(from_logits=logits)
        z = np.full(shape, 0.2, np.float32)
        calls = {"fused": loss.fused, "call": loss, "gradient": loss.gradient}
        for entry, call in calls.items():
            try:
                call(z, np.asarray(y))
                out[f"{name} {entry} {logits}"] = None
            except Exception as exc:
                out[f"{name} {entry} {logits}"] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=["1", "0"], ids=["compiled", "numpy"])
def label_probe(request):
    if request.param == "1" and importlib.util.find_spec("numba") is None:
        pytest.skip("numba not installed")
    env = {**os.environ, "BARENET_NUMBA": request.param}
    result = subprocess.run([sys.executable, "-c", _LABEL_PROBE], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]  # a kernel that writes past its arrays can abort
    outcome = json.loads(result.stdout)
    assert outcome.pop("numba") == (request.param == "1")
    return outcome


@pytest.mark.parametrize("entry", ["fused", "call", "gradient"])
@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("case, label", [("5", 5), ("-1", -1), ("seq", 7), ("uint", 9)])
def test_labels_outside_the_classes_are_refused_at_every_entry_point(label_probe, entry, from_logits, case,
                                                                      label):
    assert label_probe[f"{case} {entry} {from_logits}"] == [
        "DataError", f"categorical_crossentropy got label {label}; labels must be integers in [0, 4] for 5 classes"]


@pytest.mark.parametrize("entry", ["fused", "call", "gradient"])
def test_labels_of_another_shape_than_the_predictions_rows_are_refused(label_probe, entry):
    assert label_probe[f"short {entry} True"] == [
        "ShapeError", "categorical_crossentropy got labels of shape (2,) for predictions of shape (4, 5); "
                      "expected labels of shape (4,)"]


def test_non_integer_labels_are_rejected():
    with pytest.raises(DataError, match=r"labels must be integers in \[0, 2\].*from 0 to 1.5"):
        CategoricalCrossentropy().prepare_targets([0.0, 1.5], (3,), np.float32)


def test_categorical_crossentropy_needs_one_unit_per_class():
    with pytest.raises(DataError, match=r"one unit per class \(>= 2 units\), got output shape \(1,\); "
                                        r"for two classes with one unit use binary_crossentropy"):
        CategoricalCrossentropy().prepare_targets([0, 1], (1,), np.float32)


def test_binary_targets_outside_unit_interval_are_rejected():
    with pytest.raises(DataError, match=r"binary_crossentropy needs targets in \[0, 1\] \(labels 0/1\), "
                                        r"got values from 0 to 2; for more than two classes"):
        BinaryCrossentropy().prepare_targets([0, 1, 2], (1,), np.float32)


def test_wrong_target_shape_is_rejected():
    with pytest.raises(DataError, match=r"targets have shape \(4, 3\), but the model outputs \(n, 2\); "
                                        r"mean_squared_error needs targets of the same shape"):
        MeanSquaredError().prepare_targets(np.zeros((4, 3)), (2,), np.float32)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_targets_are_rejected(bad):
    with pytest.raises(DataError, match=r"targets contain 1 NaN or infinite values"):
        MeanSquaredError().prepare_targets([0.0, bad, 1.0], (1,), np.float32)


def test_empty_and_non_numeric_targets_are_rejected():
    with pytest.raises(DataError, match=r"targets are empty \(shape \(0,\)\)"):
        MeanSquaredError().prepare_targets([], (1,), np.float32)
    with pytest.raises(DataError, match=r"targets must be numeric"):
        MeanSquaredError().prepare_targets(["a", "b"], (1,), np.float32)


def test_prepare_targets_returns_requested_dtype_and_column():
    y = BinaryCrossentropy().prepare_targets([0, 1, 1], (1,), np.float64)
    assert y.shape == (3, 1) and y.dtype == np.float64


def test_unknown_loss_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown loss 'hinge'; expected one of \[.*'mse'.*\] or a Loss object"):
        bn.losses.get("hinge")


def test_label_smoothing_by_hand():
    # Three classes, smoothing 0.3: the one-hot target (0, 1, 0) becomes (0.1, 0.8, 0.1).
    p = np.array([[0.2, 0.5, 0.3]])
    loss = CategoricalCrossentropy(label_smoothing=0.3)
    expected = -(0.1 * np.log(0.2) + 0.8 * np.log(0.5) + 0.1 * np.log(0.3))
    assert loss(p, np.array([[0.0, 1.0, 0.0]])) == pytest.approx(expected, rel=1e-12)
    z = np.log(p)  # softmax(log p) = p
    value, grad, _ = loss.fused(z, np.array([[0.0, 1.0, 0.0]]))
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, p - [[0.1, 0.8, 0.1]], rtol=1e-12)
    # A row of zeros (a sample with no target) stays without one.
    assert loss(p, np.zeros((1, 3))) == 0.0


def test_label_smoothing_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    z, labels = rng.standard_normal((6, 5)), rng.integers(0, 5, 6)
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(z), torch.from_numpy(labels), label_smoothing=0.15)
    loss = CategoricalCrossentropy(label_smoothing=0.15)
    value, _, _ = loss.fused(z, loss.prepare_targets(labels, (5,), np.float64))
    assert value == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, float("nan"), "0.1"])
def test_label_smoothing_out_of_range_is_rejected(bad):
    with pytest.raises(ConfigError, match="label_smoothing must be a number in \\[0, 1\\)"):
        CategoricalCrossentropy(label_smoothing=bad)


def test_loss_serialization_round_trip():
    for loss in (Huber(delta=2.5), BinaryCrossentropy(from_logits=True), MeanSquaredError(),
                 CategoricalCrossentropy(label_smoothing=0.1)):
        again = bn.losses.deserialize(bn.losses.serialize(loss))
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
    assert repr(Huber(delta=2.5)) == "Huber(delta=2.5)"
