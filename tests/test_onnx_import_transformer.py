"""Transformers through ONNX: PyTorch's ``nn.TransformerEncoder`` and Hugging Face's ``BertModel`` and
``GPT2LMHeadModel`` (small configs, random weights, nothing downloaded) exported by ``torch.onnx.export``, both
its exporters (``dynamo=True``, the default, and the TorchScript one, ``dynamo=False``) where the model exports,
imported and compared with onnxruntime, then fine-tuned; barenet's own Transformers exported and read back.

Conventions: every parameter is set from a seeded ``torch.Generator`` (so layers differ and no bias is zero,
which exporters would drop); inputs are batch 2, length 8. A prediction matches when its largest difference from
onnxruntime's is within 1e-4 of the output's largest magnitude (float32). GPT-2 is not exported by the TorchScript
exporter (PyTorch 2.13 has no ONNX form of the ``aten::diff`` its mask code calls), so it is tested with the
dynamo exporter only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barenet as bn
from barenet.errors import ModelFileError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
nn = torch.nn
import onnx_mutations as om  # noqa: E402

BATCH, STEPS, VOCABULARY = 2, 8, 50
EXPORTERS = {"dynamo": True, "torchscript": False}
L = bn.layers


def _randomize(module, seed: int) -> None:
    """Every parameter drawn afresh: weights small, layer-norm scales around 1, biases non-zero."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            p.copy_(1 + 0.1 * noise if "norm" in name.lower() and name.endswith("weight") else 0.2 * noise)


def _export(module, example, path: Path, dynamo: bool) -> Path:
    logging.disable(logging.WARNING)  # the dynamo exporter logs each step
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(path), dynamo=dynamo)
    finally:
        logging.disable(logging.NOTSET)
    return path


def _onnxruntime(path: Path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path))
    return session.run(None, {session.get_inputs()[0].name: x})


def _check_predictions(model, path: Path, x: np.ndarray, what: str) -> None:
    want = _onnxruntime(path, x)
    got = model.predict(x)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        diff, scale = float(np.max(np.abs(g - w))), float(np.max(np.abs(w)))
        print(f"{what} output {k}: max |barenet - onnxruntime| = {diff:.2e} (output scale {scale:.2f})")
        assert g.shape == w.shape and diff <= 1e-4 * scale


# ---------------------------------------------------------------------------------------- nn.TransformerEncoder
def _encoder(seed: int = 0, causal: bool = False):
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    _randomize(encoder, seed)
    if not causal:
        return encoder.eval()

    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            return self.encoder(x, mask=mask, is_causal=True)

    return Causal().eval()


@pytest.fixture(scope="module", params=sorted(EXPORTERS))
def encoder_file(request, tmp_path_factory):
    module = _encoder()
    x = torch.randn(BATCH, STEPS, 16, generator=torch.Generator().manual_seed(1))
    path = _export(module, x, tmp_path_factory.mktemp("encoder") / "encoder.onnx", EXPORTERS[request.param])
    return request.param, module, path


def test_transformer_encoder_predicts_what_onnxruntime_predicts(encoder_file):
    exporter, _, path = encoder_file
    model = bn.import_onnx(path)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("MultiHeadAttention") == 2 and kinds.count("LayerNormalization") == 4
    x = np.random.default_rng(0).standard_normal((3, STEPS, 16)).astype(np.float32)  # another batch size
    _check_predictions(model, path, x[:BATCH], f"TransformerEncoder ({exporter})")
    assert model.predict(x).shape == (3, STEPS, 16)


@pytest.mark.parametrize("exporter", sorted(EXPORTERS))
def test_causal_transformer_encoder_imports_its_mask(tmp_path, exporter):
    x = torch.randn(BATCH, STEPS, 16, generator=torch.Generator().manual_seed(2))
    path = _export(_encoder(seed=3, causal=True), x, tmp_path / "causal.onnx", EXPORTERS[exporter])
    model = bn.import_onnx(path)
    assert [node.options for node in model.nodes if isinstance(node.layer, L.MultiHeadAttention)] == \
        [{"use_causal_mask": True}] * 2
    _check_predictions(model, path, x.numpy(), f"causal TransformerEncoder ({exporter})")


def _torch_weights(layer, torch_layer_index: int, encoder, kind: str) -> dict[str, np.ndarray]:
    """The weights of barenet ``layer`` (the ``kind`` of Transformer layer ``torch_layer_index``) from PyTorch."""
    block = encoder.layers[torch_layer_index]
    t = {name: p.detach().numpy() for name, p in block.named_parameters()}
    if kind == "attention":
        d = t["self_attn.in_proj_weight"].shape[1]
        heads = layer.num_heads
        q, k, v = np.split(t["self_attn.in_proj_weight"], 3)
        qb, kb, vb = np.split(t["self_attn.in_proj_bias"], 3)
        return {"query_kernel": q.T.reshape(d, heads, -1), "key_kernel": k.T.reshape(d, heads, -1),
                "value_kernel": v.T.reshape(d, heads, -1), "query_bias": qb.reshape(heads, -1),
                "key_bias": kb.reshape(heads, -1), "value_bias": vb.reshape(heads, -1),
                "output_kernel": t["self_attn.out_proj.weight"].T.reshape(heads, -1, d),
                "output_bias": t["self_attn.out_proj.bias"]}
    if kind in ("norm1", "norm2"):
        return {"gamma": t[f"{kind}.weight"], "beta": t[f"{kind}.bias"]}
    return {"kernel": t[f"{kind}.weight"].T, "bias": t[f"{kind}.bias"]}


def _pairs(model, encoder):
    """(barenet layer, its weights from PyTorch) for every layer with weights, in call order."""
    kinds = iter(["attention", "norm1", "linear1", "linear2", "norm2"] * len(encoder.layers))
    block = -1
    for layer in model.layers:
        if not layer.params:
            continue
        kind = next(kinds)
        block += kind == "attention"
        yield layer, _torch_weights(layer, block, encoder, kind)


def test_imported_encoder_takes_the_sgd_step_pytorch_takes(encoder_file):
    """Fine-tuning in float64: one SGD step on a mean-squared error moves every weight as PyTorch's does."""
    exporter, module, path = encoder_file
    model = bn.import_onnx(path, dtype="float64")
    encoder = _encoder().double().train()  # the same weights, as the module exported was drawn from seed 0
    for layer, weights in _pairs(model, encoder):
        for name, value in weights.items():
            np.testing.assert_allclose(layer.params[name], value, rtol=0, atol=1e-12, err_msg=name)
    rng = np.random.default_rng(4)
    x, target = rng.standard_normal((BATCH, STEPS, 16)), rng.standard_normal((BATCH, STEPS, 16))
    model.compile(loss="mean_squared_error", optimizer=bn.optimizers.SGD(0.5))
    history = model.fit(x, target, epochs=1, batch_size=BATCH, shuffle=False, verbose=0)
    optimizer = torch.optim.SGD(encoder.parameters(), lr=0.5)
    loss = nn.functional.mse_loss(encoder(torch.from_numpy(x)), torch.from_numpy(target))
    loss.backward()
    optimizer.step()
    assert abs(history.history["loss"][0] - loss.item()) < 1e-10
    worst = 0.0
    for layer, weights in _pairs(model, encoder):
        for name, value in weights.items():
            worst = max(worst, float(np.max(np.abs(layer.params[name] - value))))
    print(f"TransformerEncoder ({exporter}): largest weight difference after one SGD step: {worst:.1e}")
    assert worst < 1e-8


def test_imported_encoder_fine_tunes(encoder_file):
    _, _, path = encoder_file
    model = bn.import_onnx(path, dtype="float64")
    rng = np.random.default_rng(5)
    x, target = rng.standard_normal((BATCH, STEPS, 16)), rng.standard_normal((BATCH, STEPS, 16))
    model.compile(loss="mean_squared_error", optimizer=bn.optimizers.Adam(0.01))
    losses = model.fit(x, target, epochs=4, batch_size=BATCH, verbose=0).history["loss"]
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------------------------------- Hugging Face
class _Outputs(nn.Module):
    """A Hugging Face model's outputs as a tuple: BERT's (last hidden state, pooler output), GPT-2's logits."""

    def __init__(self, model, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, ids):
        out = self.model(input_ids=ids)
        return tuple(getattr(out, name) for name in self.names)


def _bert(seed: int = 0):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=VOCABULARY, hidden_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=128, max_position_embeddings=16,
                                     type_vocab_size=2)
    model = transformers.BertModel(config)
    _randomize(model, seed)
    return _Outputs(model.eval(), ("last_hidden_state", "pooler_output"))


def _gpt2(seed: int = 0):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=VOCABULARY, n_positions=16, n_embd=64, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0, use_cache=False)
    model = transformers.GPT2LMHeadModel(config)
    _randomize(model, seed)  # the head's weight is the token embedding's (tied), drawn once
    return _Outputs(model.eval(), ("logits",))


def _ids(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCABULARY, (BATCH, STEPS)).astype(np.int64)


HUGGING_FACE = {"bert-dynamo": (_bert, True), "bert-torchscript": (_bert, False), "gpt2-dynamo": (_gpt2, True)}


@pytest.fixture(scope="module", params=sorted(HUGGING_FACE))
def hugging_face_file(request, tmp_path_factory):
    make, dynamo = HUGGING_FACE[request.param]
    path = tmp_path_factory.mktemp("hf") / f"{request.param}.onnx"
    return request.param, _export(make(), torch.from_numpy(_ids(0)), path, dynamo)


def test_hugging_face_model_predicts_what_onnxruntime_predicts(hugging_face_file):
    name, path = hugging_face_file
    model = bn.import_onnx(path)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("MultiHeadAttention") == 2 and "Embedding" in kinds and "PositionEmbedding" in kinds
    if name.startswith("bert"):  # the pooler: the first token, Dense, tanh
        assert "Cropping1D" in kinds and model.layers[-1].activation.kind == "tanh"
    else:
        assert [n.options for n in model.nodes if isinstance(n.layer, L.MultiHeadAttention)] == \
            [{"use_causal_mask": True}] * 2
    _check_predictions(model, path, _ids(1), name)


def test_hugging_face_model_fine_tunes(hugging_face_file):
    name, path = hugging_face_file
    model = bn.import_onnx(path, dtype="float64")
    ids = _ids(2)
    rng = np.random.default_rng(6)
    if name.startswith("bert"):
        targets = [rng.standard_normal((BATCH, STEPS, 64)), rng.uniform(-0.5, 0.5, (BATCH, 64))]
        model.compile(loss="mean_squared_error", optimizer=bn.optimizers.Adam(0.003))
    else:  # the next token at every position, from the logits
        targets = np.roll(ids, -1, axis=1)
        model.compile(loss=bn.losses.CategoricalCrossentropy(from_logits=True), optimizer=bn.optimizers.Adam(0.003))
    losses = model.fit(ids, targets, epochs=3, batch_size=BATCH, verbose=0).history["loss"]
    print(f"{name} fine-tuning losses: {losses}")
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------------------------------- refusals
def test_an_operator_barenet_lacks_is_refused_by_name(tmp_path):
    """An activation barenet has no layer for (softsign: x / (1 + |x|)) is refused naming the operator."""
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, batch_first=True,
                                       activation=nn.functional.softsign)
    encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False).eval()
    path = _export(encoder, torch.randn(BATCH, STEPS, 16), tmp_path / "softsign.onnx", dynamo=False)
    with pytest.raises(ModelFileError, match="'Abs' node .* computes on the data path, where barenet has no 'Abs' "
                                             "layer"):
        bn.import_onnx(path)


def test_a_mask_other_than_causal_is_refused(tmp_path):
    """A constant band mask is not silently dropped or approximated."""
    class Band(nn.Module):
        def __init__(self):
            super().__init__()
            layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0,
                                               batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
            steps = torch.arange(STEPS)
            self.register_buffer("mask", (steps[:, None] - steps[None, :]).abs() > 2)

        def forward(self, x):
            return self.encoder(x, mask=self.mask)

    path = _export(Band().eval(), torch.randn(BATCH, STEPS, 16), tmp_path / "band.onnx", dynamo=False)
    with pytest.raises(ModelFileError, match="masks the attention with a constant mask other than causal"):
        bn.import_onnx(path)


# ---------------------------------------------------------------------------------------- barenet's own
def _transformer_block():
    path = Path(__file__).resolve().parents[1] / "examples" / "char_transformer.py"
    spec = importlib.util.spec_from_file_location("char_transformer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.transformer_block


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-norm-causal", "post-norm"])
@pytest.mark.parametrize("opset", [13, 17, None])
def test_barenet_transformer_exports_and_imports_back(tmp_path, dtype, norm_first, opset):
    """float32 writes ONNX's LayerNormalization from opset 17, float64 (onnxruntime's kernel is float32 only) and
    opsets below 17 its decomposed form; all match onnxruntime and import back as the same layers."""
    block = _transformer_block()
    tokens = bn.Input((STEPS,), dtype="int64")
    x = L.TokenAndPositionEmbedding(20, STEPS, 16)(tokens)
    x = block(x, 4, 16, 0.1, norm_first=norm_first, causal=norm_first)
    out = L.Dense(20, activation="softmax")(L.LayerNormalization(epsilon=1e-5)(x))
    model = bn.Model(tokens, out, seed=0, dtype=dtype)
    path = tmp_path / "block.onnx"
    bn.onnx.export_onnx(model, path, opset=opset)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert ("LayerNormalization" in ops) == (dtype == "float32" and (opset or bn.onnx.DEFAULT_OPSET) >= 17)
    ids = np.random.default_rng(7).integers(0, 20, (BATCH, STEPS))
    tolerance = 1e-6 if dtype == "float32" else 1e-12
    want = _onnxruntime(path, ids)[0]
    assert np.max(np.abs(model.predict(ids) - want)) <= tolerance
    back = bn.import_onnx(path, dtype=dtype)
    kinds = [type(layer).__name__ for layer in model.layers if layer.params]
    k = kinds.index("TokenAndPositionEmbedding")
    kinds[k:k + 1] = ["Embedding", "PositionEmbedding"]
    assert sorted(type(layer).__name__ for layer in back.layers if layer.params) == sorted(kinds)
    assert np.max(np.abs(back.predict(ids) - want)) <= tolerance


# ---------------------------------------------------------------------------------------- fuzzing
def _barenet_transformer(dtype: str = "float32") -> bn.Model:
    tokens = bn.Input((STEPS,), dtype="int64")
    x = _transformer_block()(L.TokenAndPositionEmbedding(20, STEPS, 16)(tokens), 4, 16, 0.0)
    return bn.Model(tokens, L.Dense(20, activation="softmax")(x), seed=0, dtype=dtype)


@pytest.fixture(scope="module")
def transformer_seeds(tmp_path_factory):
    """A TransformerEncoder from each exporter (the dynamo one causal) and barenet's own causal block."""
    folder = tmp_path_factory.mktemp("transformer_seeds")
    x = torch.randn(BATCH, STEPS, 16, generator=torch.Generator().manual_seed(8))
    paths = [_export(_encoder(seed=9), x, folder / "encoder.onnx", dynamo=False),
             _export(_encoder(seed=10, causal=True), x, folder / "causal.onnx", dynamo=True)]
    bn.onnx.export_onnx(_barenet_transformer(), folder / "barenet.onnx")
    paths.append(folder / "barenet.onnx")
    for path in paths:  # the first import and prediction load and compile what the timed cases use
        model = bn.import_onnx(path)
        model.predict(np.zeros((BATCH, *model.input_shape), model.dtype))
    return [om.Case(path.read_bytes()) for path in paths]


@settings(max_examples=100, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_transformer_files_end_in_barenet_errors(transformer_seeds, tmp_path, data):
    """Mutations of files with attention subgraphs (operators, attributes, shapes, bytes): barenet's errors or a
    working model, in bounded time and memory."""
    choices = om.Choices(lambda n: data.draw(st.integers(0, max(n - 1, 0))),
                         lambda n: data.draw(st.binary(min_size=n, max_size=n)))
    case, _ = om.mutate_case(transformer_seeds[choices.pick(len(transformer_seeds))], choices)
    om.check_import(om.write_case(tmp_path / "case", case))


# ---------------------------------------------------------------------------------------- constant folding
FOLDS = {
    "Range": ([np.array(2), np.array(11), np.array(3)], {}, np.array([2, 5, 8])),
    "Equal": ([np.array([1, -1]), np.array([1, 1])], {}, np.array([True, False])),
    "Not": ([np.array([True, False])], {}, np.array([False, True])),
    "And": ([np.array([True, True]), np.array([True, False])], {}, np.array([True, False])),
    "Mod": ([np.array([-7, 7]), np.array([3, 3])], {}, np.array([2, 1])),  # integer Mod: the divisor's sign
    "Where": ([np.array([True, False]), np.array([1.0, 2.0]), np.array([3.0, 4.0])], {}, np.array([1.0, 4.0])),
    "GatherElements": ([np.array([[1, 2], [3, 4]]), np.array([[1, 0], [0, 0]])], {"axis": 1},
                       np.array([[2, 1], [3, 3]])),
    "Trilu": ([np.ones((2, 3)), np.array(1)], {"upper": 0}, np.tril(np.ones((2, 3)), 1)),
    "ReduceMax": ([np.array([[1.0, 5.0], [3.0, 2.0]]), np.array([-1])], {"keepdims": 0}, np.array([5.0, 3.0])),
    "Sqrt": ([np.array([4.0, 9.0])], {}, np.array([2.0, 3.0])),
}


@pytest.mark.parametrize("op", sorted(FOLDS))
def test_mask_and_position_operators_fold_on_constants(op):
    from onnx import helper

    from barenet.onnx._fold import Folder, attributes

    inputs, attrs, want = FOLDS[op]
    node = helper.make_node(op, [f"i{k}" for k in range(len(inputs))], ["y"], **attrs)
    (got,) = Folder(1 << 20, 18).fold(node, inputs, attributes(node, 18))
    np.testing.assert_array_equal(got, want)
