"""TablePreprocessor: column kinds, scaling from training data only, one-hot, labels, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barenet.errors import ConfigError, DataError
from barenet.preprocessing import MAX_AUTO_CLASSES, TablePreprocessor, infer_task, numeric_values


def table(**columns) -> dict[str, np.ndarray]:
    return {name: np.asarray(values, dtype=object if isinstance(values[0], str) else None)
            for name, values in columns.items()}


def test_standard_scaling_uses_training_statistics_only():
    train = table(x=[1.0, 2.0, 3.0, 4.0], y=[0.5, 1.5, 2.5, 3.5])
    prep = TablePreprocessor("y", task="regression").fit(train)
    X = prep.transform(train, dtype=np.float64)
    assert X[:, 0].mean() == pytest.approx(0.0) and X[:, 0].std() == pytest.approx(1.0)
    later = prep.transform(table(x=[5.0]), dtype=np.float64)  # the target column may be absent
    assert later[0, 0] == pytest.approx((5.0 - 2.5) / np.std([1, 2, 3, 4]))


def test_minmax_and_none_scaling_and_constant_columns():
    train = table(x=[2.0, 4.0, 6.0], c=[7.0, 7.0, 7.0], y=[0, 1, 0])
    X = TablePreprocessor("y", scale="minmax").fit(train).transform(train, dtype=np.float64)
    np.testing.assert_allclose(X, [[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]])
    X = TablePreprocessor("y", scale="none").fit(train).transform(train, dtype=np.float64)
    np.testing.assert_allclose(X, [[2.0, 7.0], [4.0, 7.0], [6.0, 7.0]])


def test_one_hot_with_unknown_and_missing_categories_as_zeros():
    train = table(color=["red", "blue", "red", "green"], y=[0, 1, 0, 1])
    prep = TablePreprocessor("y").fit(train)
    assert prep.feature_names == ["color=blue", "color=green", "color=red"]
    later = {"color": np.array(["green", "purple", None], dtype=object)}
    np.testing.assert_array_equal(prep.transform(later), [[0, 1, 0], [0, 0, 0], [0, 0, 0]])


def test_class_labels_map_to_indices_and_back():
    prep = TablePreprocessor("label").fit(table(x=[1.0, 2.0, 3.0], label=["cat", "dog", "ant"]))
    assert prep.classes == ["ant", "cat", "dog"] and prep.n_outputs == 3
    np.testing.assert_array_equal(prep.encode_target(np.array(["dog", "ant"], dtype=object)), [2, 0])
    probs = np.array([[0.1, 0.2, 0.7], [0.8, 0.1, 0.1]])
    assert prep.decode_target(probs).tolist() == ["dog", "ant"]
    with pytest.raises(DataError, match=r"labels \['emu'\] the model was not trained on"):
        prep.encode_target(np.array(["emu"], dtype=object))


def test_integer_labels_stay_integers():
    prep = TablePreprocessor("y").fit(table(x=[1.0, 2.0, 3.0], y=[3.0, 1.0, 3.0]))
    assert prep.classes == [1, 3] and all(type(c) is int for c in prep.classes)
    assert prep.decode_target(np.array([[0.9, 0.1]])).tolist() == [1]


def test_regression_target_is_standardized_and_restored():
    y = np.array([100.5, 200.0, 400.0])
    prep = TablePreprocessor("y").fit({"x": np.array([1.0, 2.0, 3.0]), "y": y})
    assert prep.task == "regression" and prep.classes is None
    encoded = prep.encode_target(y)
    assert encoded.mean() == pytest.approx(0.0) and encoded.std() == pytest.approx(1.0)
    np.testing.assert_allclose(prep.decode_target(encoded[:, None]), y)


@pytest.mark.parametrize(("values", "task"), [
    (np.array(["a", "b"], dtype=object), "classification"),
    (np.array([True, False]), "classification"),
    (np.arange(MAX_AUTO_CLASSES), "classification"),
    (np.arange(MAX_AUTO_CLASSES + 1), "regression"),
    (np.array([0.0, 1.0, 1.0, 2.0]), "classification"),
    (np.array([0.5, 1.0, 2.0]), "regression"),
])
def test_auto_task_rule(values, task):
    assert infer_task(values) == task


def test_numeric_column_with_a_typo_is_refused_with_its_row():
    column = np.array(["1.5", "2", "oops", "4"], dtype=object)
    with pytest.raises(DataError, match=r"column 'x' is numeric but row 2 holds 'oops'"):
        numeric_values("x", column)
    assert numeric_values("x", np.array(["a", "b", "3"], dtype=object)) is None  # mostly text: categorical


def test_missing_values_are_refused_where_numbers_are_needed():
    with pytest.raises(DataError, match=r"column 'x' has 1 missing values \(first in row 1\)"):
        TablePreprocessor("y").fit({"x": np.array([1.0, np.nan]), "y": np.array([0, 1])})
    with pytest.raises(DataError, match=r"target column 'y' has 1 missing values"):
        TablePreprocessor("y").fit({"x": np.array([1.0, 2.0]), "y": np.array(["a", None], dtype=object)})
    prep = TablePreprocessor("y").fit({"x": np.array([1.0, 2.0]), "y": np.array([0, 1])})
    with pytest.raises(DataError, match="holds text, but the model was trained on numbers"):
        prep.transform({"x": np.array(["a", "b"], dtype=object)})


def test_unusable_tables_and_options():
    with pytest.raises(DataError, match=r"single class 'a'"):
        TablePreprocessor("y").fit(table(x=[1.0, 2.0], y=["a", "a"]))
    with pytest.raises(DataError, match=r"no column named 'z'; the columns are \['x', 'y'\]"):
        TablePreprocessor("z").fit(table(x=[1.0, 2.0], y=[0, 1]))
    with pytest.raises(DataError, match="only the target column"):
        TablePreprocessor("y").fit(table(y=[0, 1]))
    with pytest.raises(DataError, match="regression needs numbers"):
        TablePreprocessor("y", task="regression").fit(table(x=[1.0, 2.0], y=["a", "b"]))
    with pytest.raises(ConfigError, match="scale must be one of"):
        TablePreprocessor("y", scale="log")
    with pytest.raises(DataError, match=r"lacks the feature columns \['x'\]"):
        TablePreprocessor("y").fit(table(x=[1.0, 2.0], y=[0, 1])).transform({"w": np.array([1.0])})
    with pytest.raises(DataError, match=r"^no column named 'Label' \(did you mean 'label'\?\); the columns are"):
        TablePreprocessor("Label").fit(table(size=[1.0, 2.0], label=[0, 1]))
    with pytest.raises(DataError, match=r"lacks the feature columns \['size'\] the model was trained on \(did you "
                                        r"mean 'Size'\?\); it has \['Size'\]"):
        TablePreprocessor("label").fit(table(size=[1.0, 2.0], label=[0, 1])).transform({"Size": np.array([1.0])})
    with pytest.raises(ConfigError, match="not fitted"):
        TablePreprocessor("y").transform({"x": np.array([1.0])})


def test_json_round_trip_applies_the_same_encoding():
    train = table(size=[1.0, 5.0, 3.0], kind=["b", "a", "b"], label=["no", "yes", "no"])
    prep = TablePreprocessor("label", scale="minmax").fit(train)
    again = TablePreprocessor.from_json(json.loads(json.dumps(prep.to_json())))
    np.testing.assert_array_equal(again.transform(train), prep.transform(train))
    assert again.classes == prep.classes and again.task == "classification"
    with pytest.raises(ConfigError, match="version"):
        TablePreprocessor.from_json({"version": 99})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.sampled_from(["p", "q", "r"]), st.integers(0, 1)),
                min_size=2, max_size=30),
       st.sampled_from(["standard", "minmax", "none"]))
def test_transform_is_finite_and_survives_json(rows, scale):
    data = {"num": np.array([r[0] for r in rows]), "cat": np.array([r[1] for r in rows], dtype=object),
            "y": np.array([r[2] for r in rows])}
    if len(set(data["y"].tolist())) < 2:
        data["y"][0] = 1 - data["y"][0]
    prep = TablePreprocessor("y", scale=scale).fit(data)
    X = prep.transform(data, dtype=np.float64)
    assert X.shape == (len(rows), 1 + len(set(data["cat"].tolist())))
    assert np.all(np.isfinite(X))
    np.testing.assert_array_equal(np.sort(X[:, 1:].sum(axis=1)), np.ones(len(rows)))
    again = TablePreprocessor.from_json(json.loads(json.dumps(prep.to_json())))
    np.testing.assert_array_equal(again.transform(data, dtype=np.float64), X)


def _numbers_row_by_row(values: list) -> tuple[str, object]:
    """numeric_values's decision for text values, one value at a time (the rule it implements): the present
    values (not None) parsed with float(); ``text`` when at least half of them are not numbers; refused, naming
    the first row that is not a number, when fewer are; refused when a number is infinite; else the numbers,
    NaN where missing."""
    present = [(i, v) for i, v in enumerate(values) if v is not None]
    bad = []
    for i, v in present:
        try:
            float(v)
        except ValueError:
            bad.append((i, v))
    if bad and len(bad) * 2 >= len(present):
        return "text", None
    if bad:
        return "refused", f"row {bad[0][0]} holds {bad[0][1]!r} ({len(bad)} non-numeric"
    numbers = [np.nan if v is None else float(v) for v in values]
    if any(np.isinf(numbers)):
        return "refused", "infinite"
    return "numbers", numbers


# text as CSV and Parquet files give it: numbers as text (with spaces, exponents, signs, underscores, nan and inf),
# words, the empty string and None for missing
_cells = st.one_of(st.none(), st.sampled_from(["1", " 2.5 ", "-0.0", "1e3", "1_000", "nan", "inf", "red", "", "x1"]),
                   st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{1,3})?", fullmatch=True), st.text(max_size=4))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_cells, min_size=1, max_size=40))
def test_text_columns_parse_as_row_by_row(values):
    kind, expected = _numbers_row_by_row(values)
    column = np.array(values, dtype=object)
    if kind == "refused":
        with pytest.raises(DataError) as caught:
            numeric_values("c", column, allow_missing=True)
        assert expected in str(caught.value)
    elif kind == "text":
        assert numeric_values("c", column, allow_missing=True) is None
    else:
        got = numeric_values("c", column, allow_missing=True)
        np.testing.assert_array_equal(got, np.array(expected, dtype=np.float64))
        assert [str(v) for v in got] == [str(v) for v in expected]  # -0.0 stays -0.0


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_cells, min_size=1, max_size=40), known=st.lists(st.text(max_size=4), max_size=6))
def test_category_codes_of_text_match_a_lookup_per_row(values, known):
    from barenet.preprocessing import category_codes

    categories = sorted(set(known) | {"red", "1"})
    index = {c: j for j, c in enumerate(categories)}
    expected = [-1 if v is None else index.get(v, -1) for v in values]
    np.testing.assert_array_equal(category_codes(np.array(values, dtype=object), categories), expected)
    mixed = [*values, 1, True, 1.0]  # not all text: the value-by-value path, numbers by their JSON text
    codes = category_codes(np.array(mixed, dtype=object), categories)
    np.testing.assert_array_equal(codes[:len(values)], expected)
    assert codes[-3:].tolist() == [index["1"], index.get("True", -1), index["1"]]
