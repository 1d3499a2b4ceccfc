"""Fuzzing bn.import_onnx with mutated real exported files: only barenet errors (or a working model), in bounded
time and memory, and no file but the one given is opened. The long run is bench/fuzz_onnx.py."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx")
pytest.importorskip("torch")
import onnx_cases as oc  # noqa: E402
import onnx_mutations as om  # noqa: E402

SEEDS = [("mlp", "legacy-unfolded"), ("cnn", "legacy-unfolded"), ("lstm", "legacy"), ("gru", "legacy"),
         ("embedding_gru", "legacy")]
SEEDS += [("mobilenet_block", "legacy-unfolded"), ("padded_cnn", "legacy"), ("conv1d_net", "legacy")]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seeds")
    out = []
    for name, exporter in SEEDS:
        path = folder / f"{name}.onnx"
        oc.export(name, path, exporter)
        out.append(path.read_bytes())
    oc.export_barenet_cnn(folder / "barenet_cnn.onnx")
    out.append((folder / "barenet_cnn.onnx").read_bytes())
    return out


def test_seed_files_import(seeds, tmp_path):
    """The unmutated files import: the fuzz cases start from valid models."""
    for k, data in enumerate(seeds):
        path = tmp_path / f"{k}.onnx"
        path.write_bytes(data)
        assert om.check_import(path).imported


@settings(max_examples=400, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_files_end_in_barenet_errors(seeds, tmp_path, data):
    choices = om.Choices(lambda n: data.draw(st.integers(0, max(n - 1, 0))),
                         lambda n: data.draw(st.binary(min_size=n, max_size=n)))
    source = seeds[choices.pick(len(seeds))]
    mutated, _ = om.mutate(source, choices)
    path = tmp_path / "case.onnx"
    path.write_bytes(mutated)
    om.check_import(path)
