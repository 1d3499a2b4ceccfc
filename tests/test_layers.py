"""Contract tests run over every layer, plus layer-specific behaviour.

Every entry of ``CASES`` is checked for the whole layer contract (see ``barenet.layers.base``):

* ``bn.gradcheck`` in float64 gives a relative error below 1e-6 for the input and every parameter;
* the output shape equals ``compute_output_shape`` of the input shape;
* ``from_config(get_config())`` rebuilds an equivalent layer (same config, same outputs from the same seed);
* ``repr`` names the class and its arguments;
* float32 in gives float32 out (forward and backward, parameters and gradients).

To cover a new layer, add one line to ``CASES``::

    Case("conv2d-same", lambda: Conv2D(4, 3, padding="same"), (6, 6, 2)),

``input_shape`` excludes the batch axis; ``token_ids=n`` feeds integer ids below ``n`` (for Embedding, which
has no input gradient). Set ``training=False`` to check inference mode, ``fixed_rng=True``
for layers that draw random numbers in ``forward`` (the layer's generator is reset before every forward
pass so the finite differences see the same mask), and ``setup`` to prepare a built layer (for example
to give BatchNormalization non-trivial running statistics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, NotFittedError, ShapeError
from barenet.layers import (
    ELU,
    GELU,
    GRU,
    LSTM,
    Activation,
    AveragePooling1D,
    AveragePooling2D,
    BatchNormalization,
    Bidirectional,
    Cache,
    Conv1D,
    Conv2D,
    Cropping1D,
    Dense,
    DepthwiseConv2D,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    HardSigmoid,
    HardSwish,
    Layer,
    LayerNormalization,
    LeakyReLU,
    Linear,
    MaxPooling1D,
    MaxPooling2D,
    Mish,
    PositionEmbedding,
    RandomFlip,
    RandomTranslation,
    Recurrent,
    ReLU,
    ReLU6,
    Reshape,
    SeparableConv2D,
    Sigmoid,
    SiLU,
    SimpleRNN,
    SinusoidalPositionEncoding,
    Softmax,
    Softplus,
    Tanh,
    TokenAndPositionEmbedding,
    UpSampling2D,
    ZeroPadding2D,
)


def _moving_statistics(layer: Layer) -> None:
    n = layer.input_shape[-1]
    layer.buffers["moving_mean"][...] = np.linspace(-0.5, 0.5, n)
    layer.buffers["moving_variance"][...] = np.linspace(0.5, 2.0, n)


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], Layer]
    input_shape: tuple[int, ...]
    training: bool = True
    fixed_rng: bool = False
    setup: Callable[[Layer], None] | None = None
    batch: int = 4
    token_ids: int = 0


CASES = [
    *[Case(f"dense-{act}", lambda act=act: Dense(3, activation=act), (5,))
      for act in ("linear", "relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "softmax")],
    Case("dense-no-bias", lambda: Dense(2, use_bias=False, kernel_initializer="he_normal"), (3,)),
    Case("dense-sequence", lambda: Dense(3, activation="tanh"), (2, 4)),
    Case("dense-leaky-alpha", lambda: Dense(3, activation=LeakyReLU(alpha=0.2)), (4,)),
    Case("relu", ReLU, (6,)),
    Case("leaky_relu", lambda: LeakyReLU(alpha=0.1), (6,)),
    Case("elu", lambda: ELU(alpha=0.5), (6,)),
    Case("gelu", GELU, (6,)),
    Case("sigmoid", Sigmoid, (6,)),
    Case("tanh", Tanh, (6,)),
    Case("softmax", Softmax, (5,)),
    Case("softmax-sequence", Softmax, (3, 4)),
    Case("linear", Linear, (6,)),
    Case("dropout-train", lambda: Dropout(0.4), (8,), fixed_rng=True),
    Case("dropout-infer", lambda: Dropout(0.4), (8,), training=False),
    Case("batchnorm-train", BatchNormalization, (3,), batch=6),
    Case("batchnorm-infer", BatchNormalization, (3,), training=False, setup=_moving_statistics),
    Case("batchnorm-4d-train", lambda: BatchNormalization(momentum=0.9), (3, 3, 2)),
    Case("batchnorm-4d-infer", BatchNormalization, (3, 3, 2), training=False, setup=_moving_statistics),
    Case("flatten", Flatten, (2, 3, 2)),
    Case("reshape", lambda: Reshape((3, -1)), (6,)),
    Case("reshape-4d", lambda: Reshape((2, 2, 3)), (12,)),
    Case("conv2d", lambda: Conv2D(3, 3), (6, 5, 2)),
    Case("conv2d-relu-same", lambda: Conv2D(4, 3, padding="same", activation="relu"), (5, 6, 2)),
    Case("conv2d-strided-same", lambda: Conv2D(3, (3, 2), strides=2, padding="same", activation="tanh"), (7, 6, 3)),
    Case("conv2d-padding-dilation", lambda: Conv2D(2, (2, 3), strides=(2, 1), padding=(1, 2), dilation_rate=(2, 1),
                                                   use_bias=False), (7, 5, 2)),
    Case("conv2d-channels-first", lambda: Conv2D(3, 2, padding=1, data_format="channels_first"), (2, 5, 4)),
    Case("conv2d-groups", lambda: Conv2D(4, 3, groups=2, activation="tanh"), (5, 6, 6)),
    Case("conv2d-groups-strided-dilated", lambda: Conv2D(6, (2, 3), strides=(2, 1), dilation_rate=(1, 2), groups=3,
                                                         padding="same"), (6, 7, 3)),
    Case("conv2d-asymmetric-padding", lambda: Conv2D(2, 3, padding=((0, 2), (1, 0)), strides=2), (5, 6, 2)),
    Case("conv2d-groups-channels-first", lambda: Conv2D(4, 2, groups=2, padding=((1, 0), 2), use_bias=False,
                                                        data_format="channels_first"), (4, 4, 5)),
    Case("conv1d", lambda: Conv1D(3, 3), (7, 2)),
    Case("conv1d-causal-dilated-relu", lambda: Conv1D(4, 2, padding="causal", dilation_rate=2, activation="relu"),
         (6, 3)),
    Case("conv1d-same-strided-groups", lambda: Conv1D(4, 3, strides=2, padding="same", groups=2), (7, 4)),
    Case("conv1d-padding-channels-first", lambda: Conv1D(2, 3, padding=(2, 1), use_bias=False,
                                                         data_format="channels_first"), (3, 5)),
    Case("depthwise", lambda: DepthwiseConv2D(3), (6, 5, 3)),
    Case("depthwise-multiplier-strided-same-relu", lambda: DepthwiseConv2D((3, 2), strides=2, padding="same",
                                                                           depth_multiplier=2, activation="relu"),
         (7, 6, 2)),
    Case("depthwise-dilated-asymmetric-channels-first", lambda: DepthwiseConv2D(2, padding=((1, 0), (0, 2)),
                                                                                dilation_rate=(2, 1), use_bias=False,
                                                                                data_format="channels_first"),
         (3, 5, 4)),
    Case("separable", lambda: SeparableConv2D(4, 3), (5, 6, 3)),
    Case("separable-multiplier-same-tanh", lambda: SeparableConv2D(3, (2, 3), strides=(1, 2), padding="same",
                                                                   depth_multiplier=2, activation="tanh"), (5, 7, 2)),
    Case("separable-channels-first-no-bias", lambda: SeparableConv2D(2, 2, padding=1, dilation_rate=2, use_bias=False,
                                                                     data_format="channels_first"), (3, 5, 5)),
    Case("maxpool", MaxPooling2D, (5, 7, 3)),
    Case("maxpool-overlap-same", lambda: MaxPooling2D(3, strides=2, padding="same"), (6, 7, 2)),
    Case("maxpool-channels-first", lambda: MaxPooling2D((2, 3), data_format="channels_first"), (2, 5, 6)),
    Case("avgpool", AveragePooling2D, (6, 5, 2)),
    Case("avgpool-overlap-same", lambda: AveragePooling2D((3, 2), strides=(2, 1), padding="same"), (5, 5, 2)),
    Case("maxpool-padding", lambda: MaxPooling2D(3, strides=2, padding=1), (6, 5, 2)),
    Case("maxpool-asymmetric-padding", lambda: MaxPooling2D(2, strides=1, padding=((1, 0), (0, 1))), (4, 5, 2)),
    Case("avgpool-padding", lambda: AveragePooling2D(3, strides=2, padding=(1, 2)), (6, 5, 2)),
    Case("avgpool-padding-counted", lambda: AveragePooling2D((3, 2), strides=1, padding=((2, 0), (1, 1)),
                                                             count_include_pad=True), (4, 5, 2)),
    Case("global-avgpool", GlobalAveragePooling2D, (3, 4, 5)),
    Case("randomflip-train", lambda: RandomFlip("horizontal_and_vertical"), (3, 4, 2), fixed_rng=True, batch=8),
    Case("randomflip-channels-first", lambda: RandomFlip(data_format="channels_first"), (2, 3, 4), fixed_rng=True,
         batch=8),
    Case("randomflip-infer", lambda: RandomFlip("vertical"), (3, 4, 2), training=False),
    Case("randomtranslation-bilinear-constant", lambda: RandomTranslation(0.4, (-0.3, 0.5), fill_mode="constant",
                                                                          fill_value=0.5), (5, 4, 2), fixed_rng=True),
    Case("randomtranslation-nearest-reflect-channels-first",
         lambda: RandomTranslation((0.1, 0.6), 0.5, interpolation="nearest", data_format="channels_first"), (2, 5, 6),
         fixed_rng=True),
    Case("randomtranslation-wrap", lambda: RandomTranslation(0.5, 0.5, fill_mode="wrap"), (4, 4, 1), fixed_rng=True),
    Case("randomtranslation-infer", lambda: RandomTranslation(0.2, 0.2), (3, 4, 2), training=False),
    Case("embedding", lambda: Embedding(10, 3), (5,), token_ids=10),
    Case("position-embedding", lambda: PositionEmbedding(7), (5, 3)),
    Case("position-embedding-full-length", lambda: PositionEmbedding(4, initializer="uniform"), (2, 4, 3)),
    Case("sinusoidal-position-encoding", SinusoidalPositionEncoding, (5, 4)),
    Case("sinusoidal-position-encoding-odd", lambda: SinusoidalPositionEncoding(max_wavelength=50.0), (6, 5)),
    Case("token-and-position-embedding", lambda: TokenAndPositionEmbedding(10, 7, 3), (5,), token_ids=10),
    Case("token-and-position-embedding-mask-zero",
         lambda: TokenAndPositionEmbedding(6, 4, 2, embeddings_initializer="glorot_uniform", mask_zero=True), (4,),
         token_ids=6),
    Case("simplernn", lambda: SimpleRNN(4), (7, 3), batch=2),
    Case("simplernn-gelu-sequences", lambda: SimpleRNN(3, activation="gelu", return_sequences=True), (2, 3), batch=2),
    Case("lstm", lambda: LSTM(3), (7, 2), batch=2),
    Case("lstm-sequences", lambda: LSTM(3, return_sequences=True), (2, 3), batch=2),
    Case("gru", lambda: GRU(3), (7, 2), batch=2),
    Case("gru-reset-before-sequences", lambda: GRU(3, reset_after=False, return_sequences=True), (7, 2), batch=2),
    Case("bidirectional-lstm-concat", lambda: Bidirectional(LSTM(3, return_sequences=True)), (4, 3), batch=2),
    Case("bidirectional-gru-ave", lambda: Bidirectional(GRU(2), merge_mode="ave"), (3, 2), batch=2),
    Case("bidirectional-rnn-mul", lambda: Bidirectional(SimpleRNN(2, return_sequences=True), merge_mode="mul"),
         (3, 2), batch=2),
    *[Case(f"dense-{act}", lambda act=act: Dense(3, activation=act), (5,))
      for act in ("silu", "softplus", "relu6", "hard_sigmoid", "hard_swish", "mish")],
    Case("gelu-tanh", lambda: GELU(approximate=True), (6,)),
    Case("silu", SiLU, (6,)),
    Case("softplus", Softplus, (6,)),
    Case("relu6", ReLU6, (6,)),
    Case("hard_sigmoid", HardSigmoid, (6,)),
    Case("hard_swish", HardSwish, (6,)),
    Case("mish", Mish, (6,)),
    Case("layernorm", LayerNormalization, (5,)),
    Case("layernorm-sequence-no-center", lambda: LayerNormalization(center=False, epsilon=1e-5), (3, 4)),
    Case("layernorm-two-axes", lambda: LayerNormalization(axis=[1, -1]), (3, 2, 4)),
    Case("layernorm-no-parameters", lambda: LayerNormalization(axis=[2, 3], center=False, scale=False), (2, 3, 4)),
    Case("global-maxpool", GlobalMaxPooling2D, (3, 4, 5)),
    Case("global-maxpool-channels-first", lambda: GlobalMaxPooling2D(data_format="channels_first"), (2, 3, 4)),
    Case("maxpool1d", MaxPooling1D, (7, 3)),
    Case("maxpool1d-overlap-same", lambda: MaxPooling1D(3, strides=2, padding="same"), (8, 2)),
    Case("maxpool1d-channels-first", lambda: MaxPooling1D(2, strides=1, data_format="channels_first"), (2, 5)),
    Case("avgpool1d", AveragePooling1D, (6, 2)),
    Case("avgpool1d-overlap-same", lambda: AveragePooling1D(3, strides=2, padding="same"), (7, 2)),
    Case("avgpool1d-channels-first", lambda: AveragePooling1D(2, padding="same", data_format="channels_first"),
         (3, 5)),
    Case("global-avgpool1d", GlobalAveragePooling1D, (5, 3)),
    Case("global-avgpool1d-channels-first", lambda: GlobalAveragePooling1D(data_format="channels_first"), (3, 5)),
    Case("global-maxpool1d", GlobalMaxPooling1D, (5, 3)),
    Case("global-maxpool1d-channels-first", lambda: GlobalMaxPooling1D(data_format="channels_first"), (3, 5)),
    Case("upsampling-nearest", UpSampling2D, (3, 2, 2)),
    Case("upsampling-bilinear", lambda: UpSampling2D((2, 3), interpolation="bilinear"), (3, 4, 2)),
    Case("upsampling-bilinear-channels-first", lambda: UpSampling2D(3, "bilinear", data_format="channels_first"),
         (2, 2, 3)),
    Case("zeropadding", ZeroPadding2D, (3, 2, 2)),
    Case("zeropadding-asymmetric", lambda: ZeroPadding2D(((0, 2), (1, 0))), (3, 4, 2)),
    Case("zeropadding-channels-first", lambda: ZeroPadding2D((2, 0), data_format="channels_first"), (2, 3, 3)),
    Case("cropping1d", Cropping1D, (5, 3)),
    Case("cropping1d-first-step", lambda: Cropping1D((0, 4)), (5, 2)),
]


def _built(case: Case, dtype="float64", seed: int = 0) -> Layer:
    layer = case.make()
    layer.build(case.input_shape, np.random.default_rng(seed), dtype)
    if case.setup is not None:
        case.setup(layer)
    # Non-trivial scale and shift, so their gradients are tested away from the identity.
    for name in ("gamma", "beta"):
        if name in layer.params:
            layer.params[name][...] = np.random.default_rng(seed + 1).uniform(0.5, 1.5, layer.params[name].shape)
    return layer


def _input(case: Case, dtype="float64", seed: int = 1) -> np.ndarray:
    if case.token_ids:
        return np.random.default_rng(seed).integers(0, case.token_ids, (case.batch, *case.input_shape)).astype(dtype)
    return np.random.default_rng(seed).standard_normal((case.batch, *case.input_shape)).astype(dtype)


def _reset_rng(layer: Layer, case: Case) -> Callable[[], None] | None:
    if not case.fixed_rng:
        return None
    return lambda: setattr(layer, "rng", np.random.default_rng(123))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradients_match_finite_differences(case):
    layer = _built(case)
    result = bn.gradcheck(layer, _input(case), training=case.training, before_forward=_reset_rng(layer, case),
                          check_input=not layer.takes_indices)
    assert set(result.errors) == {"input", *layer.params} - ({"input"} if layer.takes_indices else set())
    assert result.max_error < 1e-6, result


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_output_shape_matches_compute_output_shape(case):
    layer = _built(case)
    y = layer.forward(_input(case), training=case.training)
    assert y.shape == (case.batch, *layer.compute_output_shape(case.input_shape))
    assert layer.output_shape == y.shape[1:]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_dry_build_announces_what_build_makes_and_leaves_the_layer_unbuilt(case):
    layer = case.make()
    before = layer.get_config()
    params, buffers, output_shape = layer.dry_build(case.input_shape, "float32")
    assert not layer.built and not layer.params and not layer.buffers and layer.get_config() == before
    built = _built(case, dtype="float32")
    assert params == {k: v.shape for k, v in built.params.items()}
    assert buffers == {k: v.shape for k, v in built.buffers.items()}
    assert output_shape == built.output_shape


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_config_round_trip_rebuilds_an_equivalent_layer(case):
    layer = case.make()
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert type(again) is type(layer)
    assert again.get_config() == config
    assert bn.layers.layer_class(type(layer).__name__) is type(layer)
    # Same config and same seed: the same parameters and the same outputs.
    a, b = _built(case), _built(Case(case.id, lambda: again, case.input_shape, case.training, case.fixed_rng,
                                     case.setup, case.batch))
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    if case.fixed_rng:
        a.rng, b.rng = np.random.default_rng(5), np.random.default_rng(5)
    x = _input(case)
    np.testing.assert_array_equal(a.forward(x, training=case.training), b.forward(x, training=case.training))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_repr_names_the_class_and_its_arguments(case):
    layer = case.make()
    text = repr(layer)
    assert text.startswith(type(layer).__name__ + "(") and text.endswith(")")
    assert repr(type(layer).from_config(layer.get_config())) == text
    # these show their main arguments only: see test_dense_repr and test_recurrent.py
    if not isinstance(layer, (Dense, Conv2D, Recurrent, Embedding, Bidirectional, Conv1D, DepthwiseConv2D,
                              SeparableConv2D)):
        for key, value in layer.get_config().items():
            assert f"{key}={value!r}" in text


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float32_in_float32_out(case):
    layer = _built(case, dtype="float32")
    x = _input(case, dtype="float32")
    c = Cache()
    y = layer.forward(x, training=case.training, cache=c)
    assert y.dtype == np.float32
    dx = layer.backward(np.ones_like(y), c)
    assert dx is None if layer.takes_indices else dx.dtype == np.float32
    for key in layer.params:
        assert layer.params[key].dtype == np.float32
        assert layer.grads[key].dtype == np.float32 and layer.grads[key].shape == layer.params[key].shape
    for buffer in layer.buffers.values():
        assert buffer.dtype == np.float32


# Element-wise layers (activations, dropout) work on any shape; every other layer checks its input.
SHAPE_CHECKED = [c for c in CASES if not isinstance(c.make(), (Activation, Dropout))]


@pytest.mark.parametrize("case", SHAPE_CHECKED, ids=lambda c: c.id)
def test_wrong_input_shape_names_the_layer(case):
    layer = _built(case)
    bad = np.zeros((2, *case.input_shape[:-1], case.input_shape[-1] + 1))
    with pytest.raises(ShapeError, match=rf"{type(layer).__name__}.*expected input of shape \(batch, "):
        layer.forward(bad, training=case.training)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_backward_does_not_touch_parameters(case):
    layer = _built(case)
    before = {k: v.copy() for k, v in layer.params.items()}
    c = Cache()
    y = layer.forward(_input(case), training=case.training, cache=c)
    layer.backward(np.ones_like(y), c)
    for key, value in before.items():
        np.testing.assert_array_equal(layer.params[key], value)


def _attributes(layer: Layer) -> dict[str, object]:
    """Every attribute of ``layer`` and its sublayers, arrays by identity (``grads``, ``buffers`` and the
    generator are the model's state, which training updates by design)."""
    from barenet.layers.base import _layer_tree

    return {f"{i}.{key}": id(value) if isinstance(value, np.ndarray) else repr(value)
            for i, sub in enumerate(_layer_tree(layer)) for key, value in vars(sub).items()
            if key not in ("grads", "buffers", "rng")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_call_keeps_nothing_on_the_layer(case):
    """The contract: forward and backward leave the layer object as it was (the call's arrays live in the
    cache), and inference without a cache allocates nothing that outlives the call."""
    layer = _built(case)
    before = _attributes(layer)
    c = Cache()
    y = layer.forward(_input(case), training=case.training, cache=c)
    assert _attributes(layer) == before
    layer.backward(np.ones_like(y), c)
    assert _attributes(layer) == before
    layer.forward(_input(case), training=False)
    assert _attributes(layer) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_two_interleaved_calls_backpropagate_each_its_own_input(case):
    """Two calls in flight at once (one layer used twice in a network, or two threads): each backward
    uses its own call's cache, so the gradients are those of separate calls."""
    layer = _built(case)
    x1, x2 = _input(case), _input(case) * 0.5 + 0.25
    if layer.takes_indices:
        x2 = (_input(case) + 1) % case.token_ids
    reset = _reset_rng(layer, case) or (lambda: None)

    def alone(x):
        reset()
        c = Cache()
        y = layer.forward(x, training=case.training, cache=c)
        dx = layer.backward(np.ones_like(y), c)
        return y, dx, {k: g.copy() for k, g in layer.grads.items()}

    y1, dx1, g1 = alone(x1)
    y2, dx2, g2 = alone(x2)
    reset()
    c1, c2 = Cache(), Cache()
    layer.forward(x1, training=case.training, cache=c1)
    reset()
    layer.forward(x2, training=case.training, cache=c2)
    for c, dx, g in ((c1, dx1, g1), (c2, dx2, g2)):
        got = layer.backward(np.ones_like(y1), c)
        if dx is not None:
            np.testing.assert_array_equal(got, dx)
        for key in g:
            np.testing.assert_array_equal(layer.grads[key], g[key])


class _OldStyle(Layer):
    def forward(self, x, *, training=False):
        self._x = x
        return x

    def backward(self, grad):
        return grad


def test_a_layer_written_to_the_old_contract_is_refused_with_what_to_change():
    with pytest.raises(ConfigError, match=r"_OldStyle\(\) implements the old layer contract.*"
                                          r"forward\(self, x, \*, training=False, cache=None\).*"
                                          r"backward\(self, grad, cache\)"):
        bn.Sequential([Dense(2, input_dim=3), _OldStyle()])


# ----------------------------------------------------------------- layer-specific behaviour
def test_dense_error_message_names_layer_and_both_shapes():
    layer = Dense(64, name="hidden")
    layer.build((784,), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"^Dense\(64\) 'hidden' expected input of shape \(batch, 784\), "
                                         r"got \(32, 780\)$"):
        layer.forward(np.zeros((32, 780), np.float32))


def test_forward_before_build_is_a_clear_error():
    with pytest.raises(NotFittedError, match=r"Dense\(3\) is not built; call build\(input_shape, rng\) first"):
        Dense(3).forward(np.zeros((2, 4)))


def test_dense_computes_x_w_plus_b_then_activation():
    layer = Dense(2, activation="relu")
    layer.build((3,), np.random.default_rng(0), "float64")
    layer.params["kernel"][...] = [[1.0, -1.0], [2.0, 0.0], [0.0, 3.0]]
    layer.params["bias"][...] = [0.5, -10.0]
    y = layer.forward(np.array([[1.0, 1.0, 1.0]]))
    np.testing.assert_array_equal(y, [[3.5, 0.0]])  # z = [3.5, -8]; relu clips the second


def test_dense_rejects_bad_arguments():
    with pytest.raises(ConfigError, match=r"Dense units must be a positive integer, got 0"):
        Dense(0)
    with pytest.raises(ConfigError, match=r"Dense l2 must be >= 0, got -1"):
        Dense(2, l2=-1)
    with pytest.raises(ConfigError, match=r"unknown activation 'swishy'; expected one of \[.*'relu'.*\]"):
        Dense(2, activation="swishy")
    with pytest.raises(ConfigError, match=r"unknown initializer 'lecun'; expected one of \["):
        Dense(2, kernel_initializer="lecun")


def test_dense_repr():
    assert repr(Dense(64, activation="relu")) == "Dense(64, activation='relu')"
    assert repr(Dense(10)) == "Dense(10)"


def test_dropout_scales_kept_units_and_is_identity_at_inference():
    layer = Dropout(0.25)
    layer.build((1000,), np.random.default_rng(0), "float64")
    x = np.ones((20, 1000))
    c = Cache()
    y = layer.forward(x, training=True, cache=c)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_array_equal(layer.backward(np.ones_like(x), c), y)  # the gradient uses the same mask
    assert layer.forward(x, training=False) is x
    with pytest.raises(ConfigError, match=r"Dropout rate must be in \[0, 1\), got 1.0"):
        Dropout(1.0)


def test_batchnorm_normalizes_and_updates_running_statistics():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (500, 4))
    layer = BatchNormalization(momentum=0.5)
    layer.build((4,), rng, "float64")
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), x.var(axis=0) / (x.var(axis=0) + 1e-3), rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["moving_mean"], 0.5 * x.mean(axis=0))
    np.testing.assert_allclose(layer.buffers["moving_variance"], 0.5 + 0.5 * x.var(axis=0))
    # Inference uses the running statistics, not the batch's.
    mean, var = layer.buffers["moving_mean"], layer.buffers["moving_variance"]
    np.testing.assert_allclose(layer.forward(x[:3], training=False), (x[:3] - mean) / np.sqrt(var + 1e-3))


def test_batchnorm_4d_takes_statistics_per_channel():
    x = np.random.default_rng(0).normal(0, 1, (2, 3, 3, 2)) + np.array([10.0, -10.0])
    layer = BatchNormalization(momentum=0.0)
    layer.build((3, 3, 2), np.random.default_rng(0), "float64")
    layer.forward(x, training=True)
    np.testing.assert_allclose(layer.buffers["moving_mean"], x.mean(axis=(0, 1, 2)))


def test_batchnorm_rejects_bad_arguments():
    with pytest.raises(ConfigError, match=r"momentum must be in \[0, 1\), got 1.5"):
        BatchNormalization(momentum=1.5)
    with pytest.raises(ConfigError, match=r"epsilon must be > 0, got 0"):
        BatchNormalization(epsilon=0)


def test_reshape_errors_say_what_does_not_fit():
    with pytest.raises(ConfigError, match=r"at most one -1, got \(-1, -1\)"):
        Reshape((-1, -1))
    with pytest.raises(ShapeError, match=r"cannot reshape samples of shape \(5,\) \(5 values\) to \(2, 3\) "
                                         r"\(6 values\)"):
        Reshape((2, 3)).build((5,), np.random.default_rng(0))


def test_declared_input_shape_must_match_previous_layer():
    layer = Dense(3, input_dim=4)
    with pytest.raises(ShapeError, match=r"Dense\(3\) was declared with input shape \(4,\), but the previous "
                                         r"layer outputs \(5,\)"):
        layer.build((5,), np.random.default_rng(0))


def test_set_weights_checks_count_and_shapes():
    layer = Dense(3)
    layer.build((2,), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"has 2 weight arrays \['kernel', 'bias'\], got 1"):
        layer.set_weights([np.zeros((2, 3))])
    with pytest.raises(ShapeError, match=r"weight 'kernel' has shape \(2, 3\), got \(3, 2\)"):
        layer.set_weights([np.zeros((3, 2)), np.zeros(3)])


def test_unknown_layer_class_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown layer type 'Conv9D'; known layers: \[.*'Dense'.*\]"):
        bn.layers.layer_class("Conv9D")


def test_every_registered_builtin_layer_is_in_the_contract_table():
    covered = {type(case.make()).__name__ for case in CASES}
    builtin = {name for name in bn.layers.__all__
               if isinstance(getattr(bn.layers, name), type) and issubclass(getattr(bn.layers, name), Layer)}
    abstract = {"Layer", "Activation", "Recurrent", "Merge"}
    # layers of several inputs have their own tests: MERGES in tests/test_graph.py, tests/test_multi_head_attention.py
    merges = {name for name in builtin if issubclass(getattr(bn.layers, name), bn.layers.Merge)}
    merges.add("MultiHeadAttention")
    missing = builtin - abstract - merges - covered
    assert not missing, f"add these layers to CASES in tests/test_layers.py: {sorted(missing)}"


def test_random_flip_mirrors_about_half_the_training_images_and_none_at_inference():
    model = bn.Sequential([RandomFlip(input_shape=(4, 5, 2))], seed=0)
    model.build()
    layer = model.layers[0]
    x = np.random.default_rng(0).standard_normal((400, 4, 5, 2))
    c = Cache()
    y = layer.forward(x, training=True, cache=c)
    same = np.all(y == x, axis=(1, 2, 3))
    mirrored = np.all(y == x[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same ^ mirrored)  # each image is either left alone or mirrored left to right
    assert 150 < mirrored.sum() < 250
    g = np.random.default_rng(1).standard_normal(x.shape)
    dx = layer.backward(g, c)
    np.testing.assert_array_equal(dx[mirrored], g[mirrored][:, :, ::-1])
    np.testing.assert_array_equal(dx[same], g[same])
    assert layer.forward(x, training=False) is x
    np.testing.assert_array_equal(model.predict(x), x.astype(np.float32))


def test_random_flip_both_axes_draws_each_independently():
    layer = RandomFlip("horizontal_and_vertical")
    layer.build((3, 3, 1), np.random.default_rng(2))
    x = np.arange(600 * 9, dtype=np.float64).reshape(600, 3, 3, 1)
    y = layer.forward(x, training=True)
    kinds = [next(k for k, f in enumerate((lambda a: a, lambda a: a[::-1], lambda a: a[:, ::-1],
                                            lambda a: a[::-1, ::-1])) if np.array_equal(y[i], f(x[i])))
             for i in range(len(x))]
    assert sorted(set(kinds)) == [0, 1, 2, 3] and min(np.bincount(kinds)) > 100


def test_random_flip_rejects_unknown_modes_and_non_images():
    with pytest.raises(ConfigError, match="RandomFlip mode must be one of"):
        RandomFlip("diagonal")
    with pytest.raises(ShapeError, match="RandomFlip.*expects images"):
        RandomFlip().build((28, 28), np.random.default_rng(0))


def test_activation_called_with_a_name_makes_that_layer():
    """Keras's ``Activation("relu")``: the class itself resolves names, aliases and keyword arguments."""
    assert type(Activation("relu")) is ReLU
    assert type(Activation("swish")) is SiLU and type(Activation("hard_silu")) is HardSwish
    leaky = Activation("leaky_relu", alpha=0.3, name="act")
    assert isinstance(leaky, (LeakyReLU, Activation)) and leaky.alpha == 0.3 and leaky.name == "act"
    assert Activation("gelu").approximate is False and Activation("gelu", approximate=True).approximate is True
    assert Dense(2, activation="swish").activation.kind == "silu"
    with pytest.raises(ConfigError, match=r"unknown activation 'swishy'; expected one of \[.*'silu'.*\] \(or an "
                                          r"alias: \['hard_silu', 'swish'\]\)"):
        Activation("swishy")
    with pytest.raises(ConfigError, match=r"Activation\(\.\.\.\) takes the name of an activation"):
        Activation()


def test_gelu_is_exact_by_default_and_tanh_when_asked():
    x = np.linspace(-4, 4, 81)
    exact = 0.5 * x * np.array([math.erfc(-v / np.sqrt(2)) for v in x])
    np.testing.assert_allclose(GELU()(x), exact, rtol=1e-14)
    tanh = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(GELU(approximate=True)(x), tanh, rtol=1e-14)
    with pytest.raises(ConfigError, match=r"GELU approximate must be True or False, got 'tanh'"):
        GELU(approximate="tanh")


def test_configurations_from_before_exact_gelu_keep_the_tanh_form():
    """A config written when GELU was the tanh approximation (the string "gelu", a GELU without "approximate")
    reads as that approximation; a config written now says which form it is."""
    assert Dense.from_config({"units": 3, "activation": "gelu"}).activation.approximate is True
    assert SimpleRNN.from_config({"units": 3, "activation": "gelu"})._activation.approximate is True
    assert GELU.from_config({}).approximate is True
    assert bn.layers.activations.deserialize({"kind": "gelu"}).approximate is True
    assert Dense(3, activation="gelu").get_config()["activation"] == {"kind": "gelu", "approximate": False}
    assert Dense.from_config(Dense(3, activation="gelu").get_config()).activation.approximate is False
    assert GELU.from_config(GELU().get_config()).approximate is False


def test_gelu_pickled_before_exact_gelu_unpickles_as_tanh():
    import pickle

    old = GELU()
    del old.approximate  # as pickled by a version without the attribute
    assert pickle.loads(pickle.dumps(old)).approximate is True


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", [GELU(), GELU(approximate=True), SiLU(), Softplus(), ReLU6(), HardSigmoid(),
                                   HardSwish(), Mish()], ids=repr)
def test_activations_stay_finite_and_quiet_for_large_inputs(layer, dtype):
    """No overflow, underflow or invalid-operation warning at +-1e4 (and +-1e30 in float64); the values reach
    their limits."""
    big = [1e4, 1e30] if dtype == "float64" else [1e4, 3e38]
    x = np.array([-big[1], -big[0], -50.0, 0.0, 50.0, *big], dtype=dtype)
    layer.build((x.size,), np.random.default_rng(0), dtype)
    with np.errstate(all="raise"):
        c = Cache()
        y = layer.forward(x[None], cache=c)[0]
        dx = layer.backward(np.ones((1, x.size), dtype=dtype), c)[0]
    assert y.dtype == dx.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    if not isinstance(layer, (ReLU6, HardSigmoid)):  # unbounded above: y = x far out
        np.testing.assert_allclose(y[-2:], x[-2:], rtol=1e-6)
    assert np.all(np.abs(y[:2]) <= 1e-6)


def test_layer_normalization_normalizes_each_sample_over_its_axes():
    x = np.random.default_rng(0).normal(3.0, 2.0, (4, 3, 5))
    layer = LayerNormalization(axis=[1, 2], epsilon=1e-6)
    layer.build((3, 5), np.random.default_rng(0), "float64")
    assert layer.params["gamma"].shape == layer.params["beta"].shape == (3, 5)
    y = layer.forward(x)
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(1, 2)), x.var(axis=(1, 2)) / (x.var(axis=(1, 2)) + 1e-6), rtol=1e-10)
    np.testing.assert_array_equal(layer.forward(x, training=True), y)  # no batch statistics


def test_layer_normalization_rejects_bad_axes():
    with pytest.raises(ConfigError, match=r"axis must be an integer or a non-empty list of integers, got \[\]"):
        LayerNormalization(axis=[])
    with pytest.raises(ConfigError, match=r"epsilon must be > 0, got 0"):
        LayerNormalization(epsilon=0)
    for axis in (0, 3, [1, -2]):
        with pytest.raises(ShapeError, match=rf"cannot normalize axes \[?{axis if isinstance(axis, int) else '1, -2'}"
                                             r"\]? of inputs \(batch, 4, 5\); expected distinct axes from 1 to 2"):
            LayerNormalization(axis=axis).build((4, 5), np.random.default_rng(0))


@pytest.mark.parametrize("layer, shape", [(GlobalMaxPooling2D(), (2, 2, 1)), (GlobalMaxPooling1D(), (4, 1)),
                                          (MaxPooling1D(4), (4, 1))], ids=lambda v: type(v).__name__)
def test_max_pools_send_the_gradient_of_a_tie_to_the_first_maximum(layer, shape):
    layer.build(shape, np.random.default_rng(0), "float64")
    x = np.array([1.0, 3.0, 3.0, 2.0]).reshape(1, *shape)
    c = Cache()
    y = layer.forward(x, cache=c)
    assert y.ravel().tolist() == [3.0]
    np.testing.assert_array_equal(layer.backward(np.ones_like(y), c).ravel(), [0, 1, 0, 0])


def test_upsampling_nearest_repeats_and_bilinear_interpolates_between_centres():
    x = np.array([[0.0, 4.0]]).reshape(1, 1, 2, 1)
    near, bilinear = UpSampling2D((1, 2)), UpSampling2D((1, 2), interpolation="bilinear")
    for layer in (near, bilinear):
        layer.build((1, 2, 1), np.random.default_rng(0), "float64")
    assert near(x).ravel().tolist() == [0, 0, 4, 4]
    assert bilinear(x).ravel().tolist() == [0, 1, 3, 4]  # half-pixel centres, clamped at the edges


def test_image_layers_reject_bad_arguments():
    with pytest.raises(ConfigError, match=r"UpSampling2D interpolation must be one of \('nearest', 'bilinear'\), "
                                          r"got 'bicubic'"):
        UpSampling2D(interpolation="bicubic")
    with pytest.raises(ConfigError, match=r"ZeroPadding2D padding must be an integer >= 0, a pair \(height, width\) "
                                          r"of them or \(\(top, bottom\), \(left, right\)\), got \(1, -1\)"):
        ZeroPadding2D((1, -1))
    assert ZeroPadding2D(2).padding == ((2, 2), (2, 2)) and ZeroPadding2D((1, 2)).padding == ((1, 1), (2, 2))
    with pytest.raises(ConfigError, match=r"MaxPooling1D pool_size must be a positive integer, got \(2, 2\)"):
        MaxPooling1D((2, 2))
    with pytest.raises(ShapeError, match=r"MaxPooling1D\(.*\) expects sequences \(steps, features\) per sample, got "
                                         r"sample shape \(4, 4, 1\)"):
        MaxPooling1D().build((4, 4, 1), np.random.default_rng(0))
