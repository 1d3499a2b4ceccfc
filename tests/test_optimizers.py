"""Optimizers: update rules against steps worked out here, clipping, schedules, state save and resume."""

import math
from pathlib import Path

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError
from barenet.optimizers import SGD, Adam, AdamW, CosineDecay, ExponentialDecay, RMSprop, StepDecay

DATA = Path(__file__).parent / "data"

# Three gradients for a (2, 2) "kernel" and a (2,) "bias", one per step.
THETA0 = {"kernel": np.array([[0.5, -1.0], [2.0, 0.0]]), "bias": np.array([0.1, -0.2])}
GRADS = [
    {"kernel": np.array([[1.0, -2.0], [0.5, 0.0]]), "bias": np.array([0.3, -0.1])},
    {"kernel": np.array([[-0.5, 1.0], [0.25, 4.0]]), "bias": np.array([0.0, 0.2])},
    {"kernel": np.array([[2.0, 0.5], [-1.0, -3.0]]), "bias": np.array([-0.4, 0.6])},
]


def _run(optimizer, steps=3):
    params = {k: v.copy() for k, v in THETA0.items()}
    trace = []
    for g in GRADS[:steps]:
        optimizer.step(params, {k: v.copy() for k, v in g.items()})
        trace.append({k: v.copy() for k, v in params.items()})
    return trace


def _assert_trace(trace, expected):
    for got, want in zip(trace, expected, strict=True):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=1e-15)


def test_plain_sgd():
    lr = 0.1
    theta = {k: v.copy() for k, v in THETA0.items()}
    expected = []
    for g in GRADS:
        theta = {k: theta[k] - lr * g[k] for k in theta}
        expected.append(theta)
    _assert_trace(_run(SGD(lr)), expected)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_momentum(nesterov):
    lr, mu = 0.1, 0.9
    theta = {k: v.copy() for k, v in THETA0.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    expected = []
    for g in GRADS:
        for k in theta:
            v[k] = mu * v[k] - lr * g[k]
            theta[k] = theta[k] + (mu * v[k] - lr * g[k] if nesterov else v[k])
        expected.append({k: x.copy() for k, x in theta.items()})
    _assert_trace(_run(SGD(lr, momentum=mu, nesterov=nesterov)), expected)


def test_sgd_momentum_first_two_steps_by_hand():
    # One scalar: theta0 = 1, g = 2 then 1, lr = 0.1, mu = 0.5.
    # v1 = -0.2, theta1 = 0.8;  v2 = 0.5 * -0.2 - 0.1 = -0.2, theta2 = 0.6.
    # Nesterov: theta1 = 1 + 0.5 * -0.2 - 0.2 = 0.7;  theta2 = 0.7 + 0.5 * -0.2 - 0.1 = 0.5.
    for nesterov, want in ((False, [0.8, 0.6]), (True, [0.7, 0.5])):
        p = {"w": np.array([1.0])}
        opt = SGD(0.1, momentum=0.5, nesterov=nesterov)
        got = []
        for g in (2.0, 1.0):
            opt.step(p, {"w": np.array([g])})
            got.append(p["w"][0])
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("placement", ["keras", "pytorch"])
def test_rmsprop(placement):
    lr, rho, eps = 0.01, 0.9, 1e-4
    theta = {k: v.copy() for k, v in THETA0.items()}
    s = {k: np.zeros_like(x) for k, x in theta.items()}
    expected = []
    for g in GRADS:
        for k in theta:
            s[k] = rho * s[k] + (1 - rho) * g[k] ** 2
            root = np.sqrt(s[k] + eps) if placement == "keras" else np.sqrt(s[k]) + eps
            theta[k] = theta[k] - lr * g[k] / root
        expected.append({k: x.copy() for k, x in theta.items()})
    _assert_trace(_run(RMSprop(lr, rho=rho, epsilon=eps, epsilon_placement=placement)), expected)


def _adam_reference(lr, b1, b2, eps, weight_decay=0.0, placement="keras"):
    theta = {k: v.copy() for k, v in THETA0.items()}
    m = {k: np.zeros_like(x) for k, x in theta.items()}
    v = {k: np.zeros_like(x) for k, x in theta.items()}
    expected = []
    for t, g in enumerate(GRADS, start=1):
        for k in theta:
            if weight_decay and k == "kernel":
                theta[k] = theta[k] * (1 - lr * weight_decay)
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            if placement == "keras":  # epsilon outside the bias correction
                theta[k] = theta[k] - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m[k] / (np.sqrt(v[k]) + eps)
            else:
                m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
                theta[k] = theta[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
        expected.append({k: x.copy() for k, x in theta.items()})
    return expected


@pytest.mark.parametrize("placement", ["keras", "pytorch"])
def test_adam(placement):
    # epsilon large enough that its placement shows beyond the tolerance
    _assert_trace(_run(Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3, epsilon_placement=placement)),
                  _adam_reference(0.01, 0.8, 0.99, 1e-3, placement=placement))


def test_adam_first_step_moves_each_weight_by_about_the_learning_rate():
    # With bias correction, step 1 is lr * g / (|g| + eps / sqrt(1 - beta_2)): a sign step of size lr.
    p = {"w": np.array([1.0, 1.0, 1.0])}
    Adam(0.05).step(p, {"w": np.array([3.0, -0.01, 0.0])})
    np.testing.assert_allclose(p["w"], [0.95, 1.05, 1.0], rtol=2e-5)
    eps = 1e-7 / math.sqrt(1 - 0.999)
    np.testing.assert_allclose(p["w"], [1 - 0.05 * 3 / (3 + eps), 1 + 0.05 * 0.01 / (0.01 + eps), 1.0], rtol=1e-15)


def test_adamw_decays_kernels_but_not_biases():
    expected = _adam_reference(0.01, 0.9, 0.999, 1e-7, weight_decay=0.1)
    _assert_trace(_run(AdamW(0.01, weight_decay=0.1)), expected)
    expected = _adam_reference(0.01, 0.9, 0.999, 1e-8, weight_decay=0.1, placement="pytorch")
    _assert_trace(_run(AdamW(0.01, weight_decay=0.1, epsilon=1e-8, epsilon_placement="pytorch")), expected)
    # With zero gradients only the decay acts, and only on the kernel.
    p = {"kernel": np.ones((2, 2)), "bias": np.ones(2)}
    AdamW(0.1, weight_decay=0.5).step(p, {"kernel": np.zeros((2, 2)), "bias": np.zeros(2)})
    np.testing.assert_allclose(p["kernel"], 0.95)
    np.testing.assert_array_equal(p["bias"], 1.0)


def _zero_gradient_adamw_step(model, lr=0.1, weight_decay=0.5):
    """One AdamW step on ``model``'s packed parameters with zero gradients: only the decay can act."""
    before = {k: v.copy() for k, v in model.parameters().items()}
    grads = model.gradients()
    for g in grads.values():
        g[...] = 0
    AdamW(lr, weight_decay=weight_decay).step(model.parameters(), grads)
    return before, model.parameters()


def test_adamw_leaves_gru_bias_and_batchnorm_parameters_undecayed():
    model = bn.Sequential([bn.layers.GRU(4, input_shape=(3, 2)), bn.layers.BatchNormalization(),
                           bn.layers.Dense(2)], seed=0, dtype="float64")
    model.build()
    assert model.layers[0].params["bias"].shape == (2, 12)  # 2-d, yet a bias
    for value in model.parameters().values():  # non-zero everywhere, so that any decay shows
        value += 0.5
    before, after = _zero_gradient_adamw_step(model)
    decayed = {k for k in before if not np.array_equal(after[k], before[k])}
    assert decayed == {"layers.0.kernel", "layers.0.recurrent_kernel", "layers.2.kernel"}
    for key in decayed:
        np.testing.assert_allclose(after[key], before[key] * (1 - 0.1 * 0.5), rtol=1e-15)


def test_adamw_and_l2_read_the_one_decay_rule(monkeypatch):
    # Swap the rule: both the optimizer's decay and the model's L2 penalty must follow it.
    monkeypatch.setattr(bn.layers.Layer, "decays", staticmethod(lambda name: name.endswith("bias")))
    model = bn.Sequential([bn.layers.Dense(3, input_dim=2, l2=0.5, bias_initializer="ones")], seed=0)
    model.build()
    before, after = _zero_gradient_adamw_step(model)
    np.testing.assert_array_equal(after["layers.0.kernel"], before["layers.0.kernel"])
    np.testing.assert_allclose(after["layers.0.bias"], 0.95)
    penalty = model._penalty(add_grads=False)
    assert penalty == pytest.approx(0.5 * 3 * 0.95**2)


def test_l2_penalizes_kernels_only_by_the_rule():
    model = bn.Sequential([bn.layers.Dense(3, input_dim=2, l2=0.5, bias_initializer="ones")], seed=0,
                          dtype="float64")
    model.build()
    kernel = model.layers[0].params["kernel"]
    for g in model.gradients().values():
        g[...] = 0
    assert model._penalty(add_grads=True) == pytest.approx(0.5 * float(np.sum(kernel**2)))
    np.testing.assert_allclose(model.gradients()["layers.0.kernel"], 2 * 0.5 * kernel)
    np.testing.assert_array_equal(model.gradients()["layers.0.bias"], 0)
    names = ("kernel", "layers.1.recurrent_kernel", "forward_kernel", "embeddings", "bias", "gamma", "beta",
             "layers.0.bias")
    assert [bn.layers.Layer.decays(k) for k in names] == [True, True, True, True, False, False, False, False]


def test_adamw_matches_torch_with_decay_only_on_weights():
    torch = pytest.importorskip("torch")
    model = bn.Sequential([bn.layers.Dense(5, input_dim=4), bn.layers.BatchNormalization(), bn.layers.Dense(3)],
                          seed=0, dtype="float64")
    model.build()
    params, grads = model.parameters(), model.gradients()
    ours = AdamW(0.01, weight_decay=0.3, beta_1=0.8, beta_2=0.99, epsilon=1e-7, epsilon_placement="pytorch")
    tensors = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    groups = [{"params": [t for k, t in tensors.items() if k.endswith("kernel")], "weight_decay": 0.3},
              {"params": [t for k, t in tensors.items() if not k.endswith("kernel")], "weight_decay": 0.0}]
    theirs = torch.optim.AdamW(groups, lr=0.01, betas=(0.8, 0.99), eps=1e-7)
    rng = np.random.default_rng(1)
    for _ in range(5):
        for key, g in grads.items():
            g[...] = rng.standard_normal(g.shape)
            tensors[key].grad = torch.tensor(g.copy())
        ours.step(params, grads)
        theirs.step()
    for key in params:
        np.testing.assert_allclose(params[key], tensors[key].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_global_clipnorm_scales_all_gradients_by_their_global_norm():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]])}  # global norm 5
    p = {"a": np.zeros(2), "b": np.zeros((2, 1))}
    SGD(1.0, global_clipnorm=1.0).step(p, {k: v.copy() for k, v in g.items()})
    np.testing.assert_allclose(p["a"], [-0.6, 0.0])
    np.testing.assert_allclose(p["b"], [[0.0], [-0.8]])
    # Below the threshold nothing changes.
    p = {"a": np.zeros(2), "b": np.zeros((2, 1))}
    SGD(1.0, global_clipnorm=10.0).step(p, {k: v.copy() for k, v in g.items()})
    np.testing.assert_allclose(p["a"], [-3.0, 0.0])


def test_clipnorm_clips_each_gradient_array_on_its_own():
    g = {"a": np.array([3.0, 0.0]), "b": np.array([[0.0], [4.0]]), "c": np.array([0.1])}  # norms 3, 4, 0.1
    p = {k: np.zeros_like(v) for k, v in g.items()}
    SGD(1.0, clipnorm=2.0).step(p, {k: v.copy() for k, v in g.items()})
    np.testing.assert_allclose(p["a"], [-2.0, 0.0])
    np.testing.assert_allclose(p["b"], [[0.0], [-2.0]])
    np.testing.assert_allclose(p["c"], [-0.1])  # under the threshold: untouched


def _random_gradients(seed=0):
    rng = np.random.default_rng(seed)
    return {"layers.0.kernel": rng.standard_normal((6, 4)) * 3, "layers.0.bias": rng.standard_normal(4) * 0.1,
            "layers.1.kernel": rng.standard_normal((4, 2))}


@pytest.mark.parametrize("max_norm", [0.05, 1.0, 100.0])
def test_clipping_matches_torch_clip_grad_norm(max_norm):
    torch = pytest.importorskip("torch")
    grads = _random_gradients()
    tensors = {k: torch.zeros(v.shape, dtype=torch.float64, requires_grad=True) for k, v in grads.items()}
    for key, t in tensors.items():
        t.grad = torch.tensor(grads[key].copy())
    torch.nn.utils.clip_grad_norm_(list(tensors.values()), max_norm)  # global
    ours = {k: v.copy() for k, v in grads.items()}
    SGD(1.0, global_clipnorm=max_norm)._clip(ours)
    for key in grads:  # torch divides by norm + 1e-6
        np.testing.assert_allclose(ours[key], tensors[key].grad.numpy(), rtol=1e-5)
    for key, t in tensors.items():  # per array: torch's clip applied to each parameter alone
        t.grad = torch.tensor(grads[key].copy())
        torch.nn.utils.clip_grad_norm_([t], max_norm)
    ours = {k: v.copy() for k, v in grads.items()}
    SGD(1.0, clipnorm=max_norm)._clip(ours)
    for key in grads:
        np.testing.assert_allclose(ours[key], tensors[key].grad.numpy(), rtol=1e-5)


def test_clipnorm_and_global_clipnorm_round_trip_and_exclude_each_other():
    for make in (lambda: Adam(0.01, clipnorm=0.5), lambda: SGD(0.1, global_clipnorm=2.0)):
        opt = make()
        back = bn.optimizers.deserialize(bn.optimizers.serialize(opt))
        assert (back.clipnorm, back.global_clipnorm) == (opt.clipnorm, opt.global_clipnorm)
    assert repr(Adam(0.01, clipnorm=0.5)) == ("Adam(learning_rate=0.01, clipnorm=0.5, beta_1=0.9, beta_2=0.999, "
                                              "epsilon=1e-07, epsilon_placement='keras')")
    with pytest.raises(ConfigError, match=r"set at most one of clipnorm \(each gradient's norm\) and "
                                          r"global_clipnorm \(the norm of all gradients together\), got 1.0 and 2.0"):
        SGD(0.1, clipnorm=1.0, global_clipnorm=2.0)
    with pytest.raises(ConfigError, match=r"global_clipnorm must be a number > 0, got -1"):
        SGD(0.1, global_clipnorm=-1)


def test_config_saved_with_the_old_global_clipnorm_keeps_its_meaning(tmp_path):
    # Written by the code of before global_clipnorm existed: Adam(0.01, clipnorm=0.5), a global norm then.
    old = bn.load(DATA / "adam_global_clipnorm_v1.barenet")
    assert (old.optimizer.global_clipnorm, old.optimizer.clipnorm) == (0.5, None)
    assert bn.optimizers.deserialize({"name": "sgd", "config": {"learning_rate": 0.1, "clipnorm": 3.0}}
                                     ).global_clipnorm == 3.0
    # A file saved now keeps the per-array meaning.
    old.compile(loss="categorical_crossentropy", optimizer=Adam(0.01, clipnorm=0.25))
    bn.save(old, tmp_path / "new.barenet")
    new = bn.load(tmp_path / "new.barenet")
    assert (new.optimizer.clipnorm, new.optimizer.global_clipnorm) == (0.25, None)


def test_keras_named_optimizers_default_to_keras_epsilon():
    for opt in (Adam(), AdamW(), RMSprop()):
        assert (opt.epsilon, opt.epsilon_placement) == (1e-7, "keras")
        assert opt.get_config()["epsilon_placement"] == "keras"
        again = bn.optimizers.deserialize(bn.optimizers.serialize(opt))
        assert again.get_config() == opt.get_config()


def test_config_saved_before_epsilon_placement_keeps_pytorch_placement():
    for name in ("adam", "adamw", "rmsprop"):
        old = bn.optimizers.deserialize({"name": name, "config": {"learning_rate": 0.01, "epsilon": 1e-8}})
        assert old.epsilon_placement == "pytorch"


@pytest.mark.parametrize("name", ["adam", "rmsprop"])
def test_model_saved_before_epsilon_placement_continues_training_as_it_was_trained(name, tmp_path):
    # Both files were written by the code of before epsilon_placement existed: a float64 model trained two
    # epochs (Adam(0.01) or RMSprop(0.01), defaults), and the same model after three more epochs.
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((16, 4)), rng.integers(0, 3, 16)
    model = bn.load(DATA / f"{name}_pytorch_epsilon_v1.barenet")
    assert model.optimizer.epsilon_placement == "pytorch"
    model.fit(X, y, epochs=3, batch_size=8, verbose=0)
    continued = bn.load(DATA / f"{name}_pytorch_epsilon_v1_continued.barenet")
    for ours, theirs in zip(model.get_weights(), continued.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)
    # Saved again, the file says which placement it uses.
    bn.save(model, tmp_path / "again.barenet")
    assert bn.load(tmp_path / "again.barenet").optimizer.get_config()["epsilon_placement"] == "pytorch"


def test_schedules_values():
    step = StepDecay(0.1, step_size=10, factor=0.5)
    assert [step(t) for t in (0, 9, 10, 25)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    exp = ExponentialDecay(0.1, decay_steps=100, decay_rate=0.5)
    assert [exp(t) for t in (0, 50, 100, 200)] == pytest.approx([0.1, 0.1 / math.sqrt(2), 0.05, 0.025])
    cos = CosineDecay(0.1, decay_steps=100, alpha=0.1)
    assert [cos(t) for t in (0, 50, 100, 500)] == pytest.approx([0.1, 0.1 * (0.1 + 0.9 * 0.5), 0.01, 0.01])


def test_optimizer_follows_its_schedule():
    opt = SGD(StepDecay(1.0, step_size=1, factor=0.5))
    p = {"w": np.array([0.0])}
    for _ in range(3):
        opt.step(p, {"w": np.array([1.0])})
    np.testing.assert_allclose(p["w"], [-(1.0 + 0.5 + 0.25)])
    assert opt.current_learning_rate() == 0.125


@pytest.mark.parametrize("make", [
    lambda: SGD(0.1, momentum=0.9, nesterov=True), lambda: RMSprop(0.01), lambda: Adam(0.01),
    lambda: AdamW(0.01, weight_decay=0.1), lambda: Adam(CosineDecay(0.01, 10), clipnorm=1.0),
], ids=["sgd", "rmsprop", "adam", "adamw", "adam-schedule"])
def test_get_state_set_state_resumes_with_identical_steps(make):
    straight = _run(make(), steps=3)
    first = make()
    params = {k: v.copy() for k, v in THETA0.items()}
    for g in GRADS[:2]:
        first.step(params, {k: v.copy() for k, v in g.items()})
    state = {k: v.copy() for k, v in first.get_state().items()}
    resumed = bn.optimizers.deserialize(bn.optimizers.serialize(first))
    resumed.set_state(state)
    resumed.step(params, {k: v.copy() for k, v in GRADS[2].items()})
    for key in params:
        np.testing.assert_array_equal(params[key], straight[2][key])
    assert resumed.iterations == 3


def _packed(arrays):
    """The arrays as consecutive views of one 1-d buffer, the layout Sequential gives its parameters."""
    flat = np.concatenate([a.ravel() for a in arrays.values()])
    out, start = {}, 0
    for key, a in arrays.items():
        out[key] = flat[start:start + a.size].reshape(a.shape)
        start += a.size
    return out


OPTIMIZERS = [
    lambda: SGD(0.1), lambda: SGD(0.1, momentum=0.9, nesterov=True), lambda: RMSprop(0.01), lambda: Adam(0.01),
    lambda: AdamW(0.01, weight_decay=0.1), lambda: Adam(CosineDecay(0.01, 10), clipnorm=1.0),
]
OPTIMIZER_IDS = ["sgd", "sgd-nesterov", "rmsprop", "adam", "adamw", "adam-schedule-clipnorm"]


@pytest.mark.parametrize("make", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_packed_parameters_take_the_same_steps_and_keep_per_parameter_state(make):
    separate, packed = make(), make()
    params, flat_params = {k: v.copy() for k, v in THETA0.items()}, _packed(THETA0)
    grads = _packed(GRADS[0])
    assert packed._packed(flat_params, grads) is not None
    for step, g in enumerate(GRADS):
        separate.step(params, {k: v.copy() for k, v in g.items()})
        for key in grads:
            grads[key][...] = g[key]
        packed.step(flat_params, grads)
        for key in params:  # the same element-wise operations: the same bits
            np.testing.assert_array_equal(flat_params[key], params[key])
        if step == 1:  # state saved and restored between steps is picked up by the packed update
            packed.set_state({k: v.copy() for k, v in packed.get_state().items()})
    a, b = separate.get_state(), packed.get_state()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_parameters_that_do_not_tile_one_buffer_are_updated_one_by_one():
    flat = np.zeros(7)
    opt = Adam(0.01)
    gaps = {"a": flat[:2], "b": flat[3:]}  # a hole between the two
    assert opt._packed(gaps, {"a": np.ones(2), "b": np.ones(4)}) is None
    reordered = {"b": flat[2:], "a": flat[:2]}
    assert opt._packed(reordered, _packed({"b": np.ones(5), "a": np.ones(2)})) is None
    opt.step(gaps, {"a": np.ones(2), "b": np.ones(4)})
    assert flat[2] == 0 and np.all(flat[:2] < 0) and np.all(flat[3:] < 0)


def test_adam_keeps_moment_sums_and_converts_state_saved_as_moments():
    straight = _run(Adam(0.01, beta_1=0.8, beta_2=0.99), steps=3)
    first = Adam(0.01, beta_1=0.8, beta_2=0.99)
    params = {k: v.copy() for k, v in THETA0.items()}
    for g in GRADS[:2]:
        first.step(params, {k: v.copy() for k, v in g.items()})
    # Two steps in, the sums are M = g2 + 0.8 g1 and V = g2^2 + 0.99 g1^2.
    g1, g2 = GRADS[0]["kernel"], GRADS[1]["kernel"]
    np.testing.assert_allclose(first.slots["m_sum"]["kernel"], g2 + 0.8 * g1, rtol=1e-15)
    np.testing.assert_allclose(first.slots["v_sum"]["kernel"], g2**2 + 0.99 * g1**2, rtol=1e-15)
    # The moments themselves, as earlier versions saved them: m = (1 - beta_1) M, v = (1 - beta_2) V.
    legacy = {"iterations": np.array(2)}
    for key in params:
        legacy[f"m/{key}"] = first.slots["m_sum"][key] * 0.2
        legacy[f"v/{key}"] = first.slots["v_sum"][key] * 0.01
    resumed = Adam(0.01, beta_1=0.8, beta_2=0.99)
    resumed.set_state(legacy)
    resumed.step(params, {k: v.copy() for k, v in GRADS[2].items()})
    for key in params:
        np.testing.assert_allclose(params[key], straight[2][key], rtol=1e-13)


def test_set_state_rejects_unknown_slots():
    with pytest.raises(ConfigError, match=r"optimizer state has unknown slot 'm'; SGD has \['velocity'\]"):
        SGD(0.1, momentum=0.5).set_state({"m/layers.0.kernel": np.zeros(2)})


def test_float32_parameters_stay_float32():
    for opt in (SGD(0.1, momentum=0.9), RMSprop(), Adam(), AdamW()):
        p = {"kernel": np.ones((2, 2), np.float32)}
        opt.step(p, {"kernel": np.full((2, 2), 0.5, np.float32)})
        assert p["kernel"].dtype == np.float32


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match=r"learning_rate must be a positive number or a Schedule, got -0.1"):
        SGD(-0.1)
    with pytest.raises(ConfigError, match=r"SGD nesterov=True needs momentum > 0"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ConfigError, match=r"Adam beta_1 must be in \[0, 1\), got 1.0"):
        Adam(beta_1=1.0)
    with pytest.raises(ConfigError, match=r"clipnorm must be a number > 0, got 0"):
        Adam(clipnorm=0)
    with pytest.raises(ConfigError, match=r"RMSprop epsilon must be a number > 0, got 0"):
        RMSprop(epsilon=0)
    with pytest.raises(ConfigError, match=r"AdamW epsilon_placement must be one of \['keras', 'pytorch'\], "
                                          r"got 'torch'"):
        AdamW(epsilon_placement="torch")
    with pytest.raises(ConfigError, match=r"unknown optimizer 'adagrad'; expected one of \['adam', 'adamw', "
                                          r"'rmsprop', 'sgd'\] or an Optimizer"):
        bn.optimizers.get("adagrad")
    with pytest.raises(ConfigError, match=r"decay_steps must be > 0, got 0"):
        CosineDecay(0.1, decay_steps=0)


def test_repr_shows_the_configuration():
    assert repr(SGD(0.1, momentum=0.9)) == "SGD(learning_rate=0.1, momentum=0.9, nesterov=False)"
    assert "StepDecay" in repr(Adam(StepDecay(0.1, 5)))


@pytest.mark.parametrize("make", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_parameters_that_are_not_contiguous_are_updated_in_place(make):
    # A transposed view updates exactly like a contiguous copy of it, and the view's base sees it.
    base = np.array([[0.5, -1.0, 2.0], [0.0, 0.3, -0.7]])
    grad = np.array([[1.0, -2.0], [0.5, 0.0], [0.25, 4.0]])
    view, copy = {"kernel": base.T}, {"kernel": base.T.copy()}
    for params in (view, copy):
        opt = make()
        for _ in range(2):
            opt.step(params, {"kernel": grad.copy()})
    np.testing.assert_array_equal(view["kernel"], copy["kernel"])
    assert not np.array_equal(base.T, np.array([[0.5, 0.0], [-1.0, 0.3], [2.0, -0.7]]))
