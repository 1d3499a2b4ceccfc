"""Metrics against scikit-learn on random data (scikit-learn is the independent reference)."""

import numpy as np
import pytest
from sklearn import metrics as skm

import barenet as bn
from barenet.errors import ConfigError

SEEDS = range(5)


def _binary(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, (60, 1)).astype(float)
    p = rng.uniform(0, 1, (60, 1))
    return t, p, t[:, 0].astype(int), (p[:, 0] >= 0.5).astype(int)


def _multiclass(seed, k=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, 80)
    logits = rng.standard_normal((80, k)) + 1.5 * np.eye(k)[labels]  # better than chance, not perfect
    probs = bn.functional.softmax(logits)
    return np.eye(k)[labels], probs, labels, probs.argmax(axis=1)


def _multilabel(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, (50, 3)).astype(float)
    p = np.clip(0.35 * t + rng.uniform(0, 0.7, (50, 3)), 0, 1)
    return t, p, t.astype(int), (p >= 0.5).astype(int)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_metrics_match_sklearn(seed):
    t, p, t_lab, p_lab = _binary(seed)
    m = bn.metrics
    assert m.accuracy(t, p, "binary") == pytest.approx(skm.accuracy_score(t_lab, p_lab))
    assert m.precision(t, p, "binary") == pytest.approx(skm.precision_score(t_lab, p_lab, zero_division=0))
    assert m.recall(t, p, "binary") == pytest.approx(skm.recall_score(t_lab, p_lab, zero_division=0))
    assert m.f1(t, p, "binary") == pytest.approx(skm.f1_score(t_lab, p_lab, zero_division=0))
    for name, fn in (("precision_macro", skm.precision_score), ("recall_macro", skm.recall_score),
                     ("f1_macro", skm.f1_score)):
        expected = fn(t_lab, p_lab, average="macro", labels=[0, 1], zero_division=0)
        assert m.get(name)(t, p, "binary") == pytest.approx(expected), name


@pytest.mark.parametrize("seed", SEEDS)
def test_multiclass_metrics_match_sklearn_macro_average(seed):
    t, p, t_lab, p_lab = _multiclass(seed)
    kw = {"average": "macro", "labels": range(4), "zero_division": 0}
    m = bn.metrics
    assert m.accuracy(t, p, "multiclass") == pytest.approx(skm.accuracy_score(t_lab, p_lab))
    assert m.precision(t, p, "multiclass") == pytest.approx(skm.precision_score(t_lab, p_lab, **kw))
    assert m.recall(t, p, "multiclass") == pytest.approx(skm.recall_score(t_lab, p_lab, **kw))
    assert m.f1(t, p, "multiclass") == pytest.approx(skm.f1_score(t_lab, p_lab, **kw))
    assert m.f1_macro(t, p, "multiclass") == pytest.approx(skm.f1_score(t_lab, p_lab, **kw))


def test_multiclass_class_never_predicted_counts_as_zero():
    t = np.eye(3)[[0, 1, 2, 2]]
    p = np.eye(3)[[0, 1, 1, 1]]  # class 2 never predicted
    expected = skm.precision_score([0, 1, 2, 2], [0, 1, 1, 1], average="macro", zero_division=0)
    assert bn.metrics.precision(t, p, "multiclass") == pytest.approx(expected) == pytest.approx((1 + 1 / 3) / 3)


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_metrics_match_sklearn(seed):
    t, p, t_lab, p_lab = _multilabel(seed)
    kw = {"average": "macro", "zero_division": 0}
    m = bn.metrics
    assert m.accuracy(t, p, "multilabel") == pytest.approx(skm.accuracy_score(t_lab, p_lab))  # exact match
    assert m.precision(t, p, "multilabel") == pytest.approx(skm.precision_score(t_lab, p_lab, **kw))
    assert m.recall(t, p, "multilabel") == pytest.approx(skm.recall_score(t_lab, p_lab, **kw))
    assert m.f1(t, p, "multilabel") == pytest.approx(skm.f1_score(t_lab, p_lab, **kw))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("outputs", [1, 3])
def test_regression_metrics_match_sklearn(seed, outputs):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((40, outputs)) * [3.0, 1.0, 0.2][:outputs]
    p = t + 0.5 * rng.standard_normal((40, outputs))
    m = bn.metrics
    assert m.mean_squared_error(t, p, "regression") == pytest.approx(skm.mean_squared_error(t, p))
    assert m.mean_absolute_error(t, p, "regression") == pytest.approx(skm.mean_absolute_error(t, p))
    assert m.r2(t, p, "regression") == pytest.approx(skm.r2_score(t, p))


def test_r2_with_constant_targets_follows_sklearn():
    t = np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])
    exact = t.copy()
    off = t + [[0.5, 0.0], [0.0, 0.0], [0.0, 0.0]]
    assert bn.metrics.r2(t, exact, "regression") == pytest.approx(skm.r2_score(t, exact)) == 1.0
    assert bn.metrics.r2(t, off, "regression") == pytest.approx(skm.r2_score(t, off))


def test_metric_names_and_errors():
    assert bn.metrics.get("acc") is bn.metrics.accuracy
    assert bn.metrics.get("MSE") is bn.metrics.mean_squared_error
    with pytest.raises(ConfigError, match=r"unknown metric 'auc'; expected one of \[.*'accuracy'.*\]"):
        bn.metrics.get("auc")
    with pytest.raises(ConfigError, match=r"metric 'accuracy' is for binary or multiclass or multilabel tasks, "
                                          r"but this model does regression"):
        bn.metrics.accuracy(np.zeros((2, 1)), np.zeros((2, 1)), "regression")
