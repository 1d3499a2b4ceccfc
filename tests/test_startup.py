"""What a process pays at start: ``import barenet`` and the command line load no heavy package, and the compiled
kernels load numba only when a model first runs one, then give the NumPy reference's results to float rounding.

Each check runs in a fresh interpreter, since what is imported (and ``BARENET_NUMBA``) is a property of the process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import barenet as bn
from barenet.kernels import _jit

STARTUP_BENCH = Path(__file__).resolve().parents[1] / "bench" / "startup.py"
HAS_NUMBA = importlib.util.find_spec("numba") is not None
needs_numba = pytest.mark.skipif(not HAS_NUMBA, reason="numba not installed")

#: Packages that only some features need; none is imported by ``import barenet`` or the light CLI commands.
HEAVY = ("numba", "llvmlite", "scipy", "pandas", "pyarrow", "sklearn", "torch", "matplotlib", "tqdm",
         "threadpoolctl", "dask", "onnx", "onnxruntime", "keras", "yaml")

# Writes the heavy packages loaded when the interpreter exits (after argparse's SystemExit too) to argv[1].
_LOADED_AT_EXIT = f"""
import atexit, json, sys
report = sys.argv[1]
def write():
    with open(report, "w") as f:
        json.dump(sorted(n for n in sys.modules if n.split(".")[0] in {HEAVY!r}), f)
atexit.register(write)
"""


def _child(code: str, *args: str, numba: str = "1", timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "BARENET_NUMBA": numba}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _loaded(tmp_path, code: str, *args: str) -> list[str]:
    report = tmp_path / "loaded.json"
    result = _child(_LOADED_AT_EXIT + code, str(report), *args)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(report.read_text())


def test_import_barenet_loads_no_heavy_package(tmp_path):
    code = "import barenet\nfrom barenet.kernels import NUMBA_ENABLED\nprint(NUMBA_ENABLED)"
    assert _loaded(tmp_path, code) == []
    assert _child(code).stdout.split() == [str(HAS_NUMBA)]  # enabled where installed, without importing it
    assert _child(code, numba="0").stdout.split() == ["False"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    model = bn.Sequential([bn.layers.Dense(8, activation="relu", input_dim=4),
                           bn.layers.Dense(3, activation="softmax")], seed=0)
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    model.fit(rng.random((32, 4)), rng.integers(0, 3, 32), epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    bn.save(model, path)
    return path


_CLI = """
from barenet.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["summary", "MODEL"]], ids=["help", "version", "summary"])
def test_the_light_cli_commands_load_no_heavy_package(tmp_path, model_file, argv):
    argv = [str(model_file) if a == "MODEL" else a for a in argv]
    assert _loaded(tmp_path, _CLI, *argv) == []


# Trains a small float32 network through every compiled kernel an MLP uses (bias + ReLU both ways, dropout,
# fused softmax cross-entropy, Adam) twice with one seed, and says which forms ran.
_FIT = """
import json, sys
import numpy as np
before = "numba" in sys.modules
import barenet as bn
from barenet.kernels import NUMBA_ENABLED, activation, optim
after_import = "numba" in sys.modules

def train():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((96, 12)).astype(np.float32)
    y = rng.integers(0, 4, 96)
    model = bn.Sequential([bn.layers.Dense(16, activation="relu", input_dim=12), bn.layers.Dropout(0.25),
                           bn.layers.Dense(4, activation="softmax")], seed=3, dtype="float32")
    model.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(0.01))
    model.fit(X, y, epochs=3, batch_size=32, verbose=0)
    return model.get_weights(), model.predict(X)

(weights, predictions), (again, _) = train(), train()
np.savez(sys.argv[1], *weights, predictions)
compiled = [k for k in (activation.bias_relu, activation.relu_bias_backward, optim._adam_form)
            if type(k).__name__ == "CPUDispatcher" and k.signatures]
print(json.dumps({"enabled": NUMBA_ENABLED, "before": before, "after_import": after_import,
                  "after_fit": "numba" in sys.modules, "compiled": len(compiled),
                  "reproducible": all(np.array_equal(a, b) for a, b in zip(weights, again))}))
"""


@needs_numba
def test_a_fit_loads_the_compiled_kernels_and_matches_the_numpy_forms_to_rounding(tmp_path):
    outcomes, arrays = {}, {}
    for numba in ("1", "0"):
        out = tmp_path / f"numba{numba}.npz"
        result = _child(_FIT, str(out), numba=numba)
        assert result.returncode == 0, result.stderr[-2000:]
        outcomes[numba] = json.loads(result.stdout.strip().splitlines()[-1])
        with np.load(out) as saved:
            arrays[numba] = [saved[k] for k in saved.files]
    assert outcomes["1"] == {"enabled": True, "before": False, "after_import": False, "after_fit": True,
                             "compiled": 3, "reproducible": True}
    assert outcomes["0"] == {"enabled": False, "before": False, "after_import": False, "after_fit": False,
                             "compiled": 0, "reproducible": True}
    for fast, reference in zip(arrays["1"], arrays["0"], strict=True):
        assert fast.dtype == reference.dtype == np.float32
        np.testing.assert_allclose(fast, reference, rtol=2e-5, atol=2e-6)


def _namespace_with_two_kernels() -> dict:
    """A fresh module namespace whose kernel ``outer`` calls the kernel ``inner``, both lazy and not loaded."""
    namespace: dict = {"__name__": "lazy_probe"}
    exec("def inner(v):\n    return 2.0 * v\n\n"
         "def outer(x, out):\n    for i in range(x.shape[0]):\n        out[i] = inner(x[i]) + 1.0\n", namespace)
    for name in ("inner", "outer"):
        namespace[name] = _jit.LazyKernel(namespace[name], {"nogil": True})  # no disk cache for exec'd source
    namespace["alias"] = namespace["outer"]
    return namespace


@needs_numba
def test_a_lazy_kernel_loads_its_modules_kernels_once_from_racing_threads():
    import numba

    namespace = _namespace_with_two_kernels()
    lazy_outer = namespace["outer"]
    assert not lazy_outer.loaded and "not loaded yet" in repr(lazy_outer)
    x = np.arange(5, dtype=np.float64)
    results, errors = [None] * 4, []
    barrier = threading.Barrier(4)

    def call(k: int) -> None:
        barrier.wait()
        try:
            out = np.empty_like(x)
            (lazy_outer if k % 2 else namespace["alias"])(x, out)
            results[k] = out
        except Exception as exc:  # reported below, with the thread's number
            errors.append((k, exc))

    workers = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert errors == []
    for out in results:
        np.testing.assert_array_equal(out, 2 * x + 1)
    assert lazy_outer.loaded
    # the module's names now hold numba's dispatchers (the one the compiled outer calls included), one per kernel
    assert all(isinstance(namespace[n], numba.core.dispatcher.Dispatcher) for n in ("inner", "outer", "alias"))
    assert namespace["alias"] is namespace["outer"] is lazy_outer.load()


def test_a_numba_that_is_installed_but_does_not_import_is_reported_at_the_first_kernel(tmp_path):
    # numba's own import refuses a NumPy it does not support; find_spec still finds the package.
    (tmp_path / "numba").mkdir()
    (tmp_path / "numba" / "__init__.py").write_text('raise ImportError("Numba needs NumPy 2.5 or less")\n')
    code = """
import numpy as np, barenet as bn
from barenet.kernels import NUMBA_ENABLED
model = bn.Sequential([bn.layers.Dense(3, activation="relu", input_dim=2)], seed=0, dtype="float32")
model.compile(loss="mse", optimizer="adam")
try:
    model.fit(np.ones((4, 2), np.float32), np.ones((4, 3), np.float32), verbose=0)
except bn.BarenetError as exc:
    print(NUMBA_ENABLED, type(exc).__name__, exc)
"""
    env = {**os.environ, "BARENET_NUMBA": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == (
        "True ConfigError numba is installed but does not import (Numba needs NumPy 2.5 or less); reinstall it "
        "with 'pip install \"barenet[fast]\"', or set BARENET_NUMBA=0 to use the NumPy forms")


def test_njit_gives_no_kernel_when_compiled_kernels_are_off(monkeypatch):
    monkeypatch.setattr(_jit, "NUMBA_ENABLED", False)
    assert _jit.njit(error_model="numpy")(lambda x: x) is None


def test_the_startup_benchmark_prints_every_figure():
    done = subprocess.run([sys.executable, str(STARTUP_BENCH), "--repeats", "1", "--threads", "1"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line[:34].strip(): line[34:].split() for line in done.stdout.splitlines()}
    forms = 2 if HAS_NUMBA else 1
    for label in ("import barenet, s", "first fit step (MLP, batch 128), s", "second fit step, s"):
        assert len(rows[label]) == forms and all(float(v) > 0 for v in rows[label]), done.stdout
    for command in ("--help", "--version", "summary"):
        cells = rows[f"barenet {command}, s / peak RSS MB"]
        assert len(cells) == 3 * forms and all(float(v) > 0 for v in cells[::3] + cells[2::3]), done.stdout
    # numba (marked *) is loaded by the first fit step with compiled kernels, never by the import
    assert "*" not in rows["RSS after import barenet, MB"]
    assert rows["RSS after first fit step, MB"].count("*") == (1 if HAS_NUMBA else 0)
    assert re.search(r"^CPU: .+ logical cores; Python [\d.]+, NumPy [\d.]+; threads: 1$", done.stdout, re.M)
