"""bn.import_onnx reads tensors stored outside the ONNX file only from files in the model's own folder.

Accepted: relative locations (subfolders and links that stay in the folder included), each file opened once,
as ``torch.onnx.export`` and ``onnx.save_model(save_as_external_data=True)`` write them. Refused, each with
its reason and without opening anything outside the folder: absolute paths, ``..``, links out of the folder,
ranges past the end of the file or of another size than the tensor declares, missing files, folders, malformed
or unknown keys, and data beyond ``max_bytes``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ModelFileError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
import onnx_mutations as om  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RNG = np.random.default_rng(0)
WEIGHTS = {"w1": RNG.standard_normal((6, 16)).astype(np.float32), "b1": RNG.standard_normal(16).astype(np.float32),
           "w2": RNG.standard_normal((16, 3)).astype(np.float32)}


def _model():
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in WEIGHTS.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _external(folder, *, location="m.onnx.data", one_file=True):
    """The model saved as ``folder/m.onnx`` with every initializer in external data."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.onnx"
    onnx.save_model(_model(), str(path), save_as_external_data=True, all_tensors_to_one_file=one_file,
                    location=location, size_threshold=0)
    return path


def _edit(path, edit):
    """Rewrite the external_data entries of ``path``'s initializers with ``edit(tensor)``."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        edit(tensor)
    path.write_bytes(model.SerializeToString())
    return path


def _set(key, value, name=None):
    def edit(tensor):
        if name is not None and tensor.name != name:
            return
        for entry in tensor.external_data:
            if entry.key == key:
                entry.value = value
                return
        tensor.external_data.add(key=key, value=value)
    return edit


def _check(path):
    """Imports, predicts what onnxruntime predicts, and opens no file outside the folder, none twice (checked
    after a first prediction, so that compiling kernels does not count against the time bound)."""
    model = bn.import_onnx(path)
    X = RNG.standard_normal((5, 6)).astype(np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    np.testing.assert_allclose(model.predict(X), want, rtol=0, atol=1e-5)
    assert om.check_import(path).imported


def test_tensors_in_one_file_beside_the_model(tmp_path):
    path = _external(tmp_path)
    assert all(t.data_location == TensorProto.EXTERNAL
               for t in onnx.load(str(path), load_external_data=False).graph.initializer)
    _check(path)


def test_one_file_per_tensor_and_a_subfolder(tmp_path):
    _check(_external(tmp_path / "a", one_file=False))
    path = _external(tmp_path / "b")
    (tmp_path / "b" / "weights").mkdir()
    (tmp_path / "b" / "m.onnx.data").rename(tmp_path / "b" / "weights" / "all.bin")
    _check(_edit(path, _set("location", "weights/all.bin")))


def test_a_link_that_stays_in_the_folder(tmp_path):
    path = _external(tmp_path)
    os.symlink("m.onnx.data", tmp_path / "link.data")
    _check(_edit(path, _set("location", "./link.data")))


def test_the_size_limit_counts_the_external_data(tmp_path):
    path = _external(tmp_path)
    data = (tmp_path / "m.onnx.data").stat().st_size
    size = path.stat().st_size
    bn.import_onnx(path, max_bytes=size + data)
    with pytest.raises(ModelFileError, match=f"more than the {size + data - 1}-byte limit"):
        bn.import_onnx(path, max_bytes=size + data - 1)


def _outside(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 4096)
    return secret


REFUSALS = {
    "absolute path": (lambda f, path: _set("location", str(f / "m.onnx.data")),
                      "names external data '/.*m.onnx.data', an absolute path"),
    "absolute path elsewhere": (lambda f, path: _set("location", "/etc/passwd"),
                                "names external data '/etc/passwd', an absolute path"),
    "climbing out and back in": (lambda f, path: _set("location", f"../{f.name}/m.onnx.data"),
                                 r"climbs out of the model's folder \('..'\)"),
    "climbing out": (lambda f, path: _set("location", "../secret.bin"), r"climbs out of the model's folder"),
    "a link out of the folder": (
        lambda f, path: (os.symlink(_outside(f.parent), f / "link.bin"), _set("location", "link.bin"))[1],
        "names external data 'link.bin', which leads out of the model's folder through a symbolic link"),
    "a link to a device": (lambda f, path: (os.symlink("/dev/zero", f / "zero.bin"), _set("location", "zero.bin"))[1],
                           "leads out of the model's folder"),
    "offset past the end": (lambda f, path: _set("offset", "100000", "w2"),
                            r"initializer 'w2' reads bytes 100000 to 100192 of external data 'm.onnx.data', which "
                            r"has \d+ bytes"),
    "length past the end": (lambda f, path: _set("length", "100000", "w2"),
                            "initializer 'w2' reads bytes .* to .* of external data 'm.onnx.data', which has"),
    "length other than the dims": (lambda f, path: _set("length", "8", "b1"),
                                   r"initializer 'b1' declares dims \[16\] \(64 bytes\) but its external data "
                                   "'m.onnx.data' holds 8 bytes"),
    "missing file": (lambda f, path: _set("location", "nowhere.bin"),
                     "names external data 'nowhere.bin', which does not exist in the model's folder"),
    "a folder": (lambda f, path: ((f / "dir.bin").mkdir(), _set("location", "dir.bin"))[1],
                 "external data 'dir.bin' .* (is not a regular file|Is a directory)"),
    "a location ending in a separator": (lambda f, path: _set("location", "m.onnx.data/"),
                                         "a folder rather than a file"),
    "no location": (lambda f, path: (lambda t: t.external_data.__delitem__(0)),
                    "is stored externally but names no location"),
    "an offset that is no number": (lambda f, path: _set("offset", "0x10"),
                                    "has external_data offset '0x10'; expected a number of bytes"),
    "a negative length": (lambda f, path: _set("length", "-4"),
                          "has external_data length '-4'; expected a number of bytes"),
    "an unknown key": (lambda f, path: _set("basepath", "/"), "has external_data key 'basepath'"),
    "a key twice": (lambda f, path: (lambda t: t.external_data.add(key="location", value="m.onnx.data")),
                    "gives external_data key 'location' twice"),
    "data inside too": (lambda f, path: (lambda t: setattr(t, "raw_data", b"\0" * 4)),
                        "stores data both inside the ONNX file and in external data"),
    "entries on an inline tensor": (lambda f, path: (lambda t: setattr(t, "data_location", TensorProto.DEFAULT)),
                                    "names external data without data_location EXTERNAL"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_external_data_refusals_say_why_and_open_nothing_outside(tmp_path, case):
    folder = tmp_path / "model"
    path = _external(folder)
    make, message = REFUSALS[case]
    _edit(path, make(folder, path))
    with pytest.raises(ModelFileError, match=message):
        bn.import_onnx(path)
    outcome = om.check_import(path)  # no file outside the folder opened, none twice
    assert not outcome.imported


def test_a_truncated_data_file(tmp_path):
    path = _external(tmp_path)
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="initializer 'w2' reads bytes .* of external data 'm.onnx.data', which "
                                             "has"):
        bn.import_onnx(path)


def test_each_file_is_opened_once(tmp_path, monkeypatch):
    import builtins

    path = _external(tmp_path)
    opened = []
    real_open = builtins.open

    def counting(file, *args, **kwargs):
        opened.append(os.path.basename(str(file)))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting)
    bn.import_onnx(path)
    monkeypatch.undo()
    assert opened.count("m.onnx.data") == 1 and opened.count("m.onnx") == 1
