"""Fuzzing bn.import_onnx with mutated real exported files: only barenet errors (or a working model), in bounded
time and memory, and no file opened outside the model's folder (none in it twice). The long run is
bench/fuzz_onnx.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barenet as bn

pytest.importorskip("onnx")
pytest.importorskip("torch")
import onnx_cases as oc  # noqa: E402
import onnx_mutations as om  # noqa: E402

SEEDS = [("mlp", "legacy-unfolded"), ("cnn", "legacy-unfolded"), ("lstm", "legacy"), ("gru", "legacy"),
         ("embedding_gru", "legacy")]
SEEDS += [("mobilenet_block", "legacy-unfolded"), ("padded_cnn", "legacy"), ("conv1d_net", "legacy"),
          ("resize_to_skip", "legacy")]
#: Graphs exported with torch.onnx.export's defaults: their larger weights lie in a file beside the model.
EXTERNAL_SEEDS = ["residual_mlp", "two_branch", "residual_cnn"]
FUZZ_SETTINGS = dict(derandomize=True, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                            HealthCheck.function_scoped_fixture])


def _warm(cases, folder):
    """Import each seed and predict once, so that the kernels they use are compiled before the timed cases."""
    for k, case in enumerate(cases):
        model = bn.import_onnx(om.write_case(folder / f"warm{k}", case))
        model.predict(np.zeros((2, *model.input_shape), model.dtype))
    return cases


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    out = []
    for name, exporter in SEEDS:
        path = folder / f"{name}.onnx"
        oc.export(name, path, exporter)
        out.append(om.Case(path.read_bytes()))
    oc.export_barenet_cnn(folder / "barenet_cnn.onnx")
    out.append(om.Case((folder / "barenet_cnn.onnx").read_bytes()))
    return _warm(out, folder)


@pytest.fixture(scope="module")
def external_seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("external_seeds")
    out = []
    for name in EXTERNAL_SEEDS:
        path = folder / f"{name}.onnx"
        oc.export_default(name, path, "dynamo")
        data = folder / f"{name}.onnx.data"
        out.append(om.Case(path.read_bytes(), {data.name: data.read_bytes()}))
    return _warm(out, folder)


def test_seed_files_import(seeds, external_seeds, tmp_path):
    """The unmutated files import: the fuzz cases start from valid models."""
    for k, case in enumerate(seeds + external_seeds):
        assert om.check_import(om.write_case(tmp_path / f"seed{k}", case)).imported


def _choices(data) -> om.Choices:
    return om.Choices(lambda n: data.draw(st.integers(0, max(n - 1, 0))),
                      lambda n: data.draw(st.binary(min_size=n, max_size=n)))


@settings(max_examples=400, **FUZZ_SETTINGS)
@given(data=st.data())
def test_mutated_files_end_in_barenet_errors(seeds, tmp_path, data):
    choices = _choices(data)
    case, _ = om.mutate_case(seeds[choices.pick(len(seeds))], choices)
    om.check_import(om.write_case(tmp_path / "case", case))


@settings(max_examples=300, **FUZZ_SETTINGS)
@given(data=st.data())
def test_mutated_graphs_and_external_data_end_in_barenet_errors(external_seeds, tmp_path, data):
    """Graph models with external data: half the cases mutate the model, half its external data (locations,
    offsets, lengths, keys, the data file itself)."""
    choices = _choices(data)
    case, _ = om.mutate_case(external_seeds[choices.pick(len(external_seeds))], choices)
    om.check_import(om.write_case(tmp_path / "case", case))
