"""Keras 3 as an independent reference for the optimizers named as Keras's, in float64 (torch backend).

Two levels: each optimizer fed the same gradients as ``keras.optimizers`` over several steps (the update
rules alone), and a small network trained by both frameworks from the same weights on the same batches
(the rules inside training, batch normalization included, so that AdamW's choice of what decays shows).
Barenet's Dense kernel is ``(in, out)`` like Keras's, and ``get_weights`` orders arrays as Keras does, so
weights copy over as they are. Runs only where Keras 3 and PyTorch are installed.
"""

import os

import numpy as np
import pytest

import barenet as bn

pytest.importorskip("torch")
os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported: its backend is chosen once, at import
keras = pytest.importorskip("keras", minversion="3")

# Keras's torch backend converts its tensors with np.array(x, copy=False), which NumPy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")

#: Largest difference allowed, relative to the largest weight of the array.
RTOL = 1e-9

SHAPES = {"layers.0.kernel": (4, 5), "layers.0.bias": (5,), "layers.1.gamma": (5,), "layers.1.beta": (5,),
          "layers.2.kernel": (5, 3), "layers.2.bias": (3,)}
STEPS = 6


@pytest.fixture(autouse=True)
def float64_keras(monkeypatch):
    """Keras in float64 throughout, for the duration of a test.

    Keras creates an optimizer's learning-rate variable in ``floatx``. And outside TensorFlow it gives
    operations on two float64 operands a float32 result, as JAX does by default (the table
    ``BIT64_TO_BIT32_DTYPE`` of ``keras/src/backend/common/dtypes.py``), so a float64 Dense layer multiplies
    in float32 and training agrees with barenet to only about 3e-7. The table is lifted for float64 here.
    """
    dtypes = pytest.importorskip("keras.src.backend.common.dtypes")
    if "float64" not in getattr(dtypes, "BIT64_TO_BIT32_DTYPE", {}):
        pytest.skip("this Keras promotes float64 in another way; the float64 comparison needs updating")
    monkeypatch.setitem(dtypes.BIT64_TO_BIT32_DTYPE, "float64", "float64")
    before, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")  # the global policy, fixed at Keras's first layer in the process
    yield
    keras.config.set_floatx(before)
    keras.config.set_dtype_policy(policy)


def _problem(seed=0):
    """Initial weights and ``STEPS`` gradients whose entries span four decades, so that epsilon matters."""
    rng = np.random.default_rng(seed)
    theta = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s) * 10.0 ** rng.uniform(-4, 0, s) for k, s in SHAPES.items()}
             for _ in range(STEPS)]
    return theta, grads


def _ours(optimizer, theta, grads):
    params = {k: v.copy() for k, v in theta.items()}
    for g in grads:
        optimizer.step(params, {k: v.copy() for k, v in g.items()})
    return params


def _keras(optimizer, theta, grads):
    variables = {k: keras.Variable(v.copy(), name=k.rsplit(".", 1)[1], dtype="float64") for k, v in theta.items()}
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g[k]) for k in variables], list(variables.values()))
    return {k: keras.ops.convert_to_numpy(v) for k, v in variables.items()}


def _relative_difference(ours, theirs):
    return max(float(np.max(np.abs(ours[k] - theirs[k])) / np.max(np.abs(theirs[k]))) for k in theirs)


def _keras_adamw(*args, **kwargs):
    optimizer = keras.optimizers.AdamW(*args, **kwargs)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # barenet's rule, Layer.decays
    return optimizer


# (id, barenet optimizer, Keras optimizer): the defaults of both where no argument is given.
CASES = [
    ("sgd", lambda: bn.optimizers.SGD(0.1), lambda: keras.optimizers.SGD(0.1)),
    ("sgd-momentum", lambda: bn.optimizers.SGD(0.1, momentum=0.9),
     lambda: keras.optimizers.SGD(0.1, momentum=0.9)),
    ("sgd-nesterov", lambda: bn.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
     lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)),
    ("sgd-clipnorm", lambda: bn.optimizers.SGD(0.1, clipnorm=0.05), lambda: keras.optimizers.SGD(0.1, clipnorm=0.05)),
    ("adam", lambda: bn.optimizers.Adam(0.01), lambda: keras.optimizers.Adam(0.01)),
    ("adam-settings", lambda: bn.optimizers.Adam(0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
     lambda: keras.optimizers.Adam(0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4)),
    ("adam-global-clipnorm", lambda: bn.optimizers.Adam(0.01, global_clipnorm=0.1),
     lambda: keras.optimizers.Adam(0.01, global_clipnorm=0.1)),
    ("adamw", lambda: bn.optimizers.AdamW(0.01, weight_decay=0.1), lambda: _keras_adamw(0.01, weight_decay=0.1)),
    ("rmsprop", lambda: bn.optimizers.RMSprop(0.01), lambda: keras.optimizers.RMSprop(0.01)),
    ("rmsprop-settings", lambda: bn.optimizers.RMSprop(0.02, rho=0.8, epsilon=1e-4),
     lambda: keras.optimizers.RMSprop(0.02, rho=0.8, epsilon=1e-4)),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize("ours, theirs", [case[1:] for case in CASES], ids=IDS)
def test_optimizer_steps_match_keras(ours, theirs):
    theta, grads = _problem()
    assert _relative_difference(_ours(ours(), theta, grads), _keras(theirs(), theta, grads)) < RTOL


@pytest.mark.parametrize("make", [
    lambda **kw: bn.optimizers.Adam(0.01, **kw), lambda **kw: bn.optimizers.AdamW(0.01, weight_decay=0.1, **kw),
    lambda **kw: bn.optimizers.RMSprop(0.01, **kw),
], ids=["adam", "adamw", "rmsprop"])
def test_pytorch_placement_is_not_keras(make):
    # The comparison above can tell the two placements apart: PyTorch's differs from Keras far beyond RTOL.
    theta, grads = _problem()
    keras_steps = _ours(make(), theta, grads)
    assert _relative_difference(_ours(make(epsilon_placement="pytorch"), theta, grads), keras_steps) > 1e-4


def _trained_pair(ours, theirs, steps=5, batch=8):
    """The same network trained ``steps`` mini-batches by barenet and by Keras; both weight lists."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((steps * batch, 4))
    y = rng.integers(0, 3, steps * batch)
    model = bn.Sequential([bn.layers.Dense(6, activation="relu", input_dim=4), bn.layers.BatchNormalization(),
                           bn.layers.Dense(3)], seed=2, dtype="float64")
    model.compile(loss=bn.losses.CategoricalCrossentropy(from_logits=True), optimizer=ours())
    net = keras.Sequential([keras.Input((4,), dtype="float64"),
                            keras.layers.Dense(6, activation="relu", dtype="float64"),
                            keras.layers.BatchNormalization(dtype="float64"), keras.layers.Dense(3, dtype="float64")])
    net.set_weights(model.get_weights())
    net.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), optimizer=theirs())
    model.fit(X, y, epochs=1, batch_size=batch, shuffle=False, verbose=0)
    net.fit(X, y, epochs=1, batch_size=batch, shuffle=False, verbose=0)
    return model.get_weights(), [np.asarray(w) for w in net.get_weights()]


@pytest.mark.parametrize("ours, theirs", [case[1:] for case in CASES], ids=IDS)
def test_training_matches_keras(ours, theirs):
    mine, reference = _trained_pair(ours, theirs)
    assert _relative_difference(dict(enumerate(mine)), dict(enumerate(reference))) < RTOL
