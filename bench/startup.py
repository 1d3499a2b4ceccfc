"""What a barenet process pays before it does any work: import time, the command line's light commands, the first
training step, and the resident memory each part adds.

Every figure comes from fresh child processes (one per measurement; times are the best of ``--repeats``, the least
disturbed by other work on a shared machine, and RSS the largest), once with
the compiled kernels (numba, loaded from its disk cache by an untimed first run) and once with
``BARENET_NUMBA=0`` (the NumPy forms):

* ``import barenet``: wall time of the import inside the child;
* ``barenet --help``, ``--version`` and ``summary MODEL``: wall time of the whole child process and its peak RSS;
* the first ``fit`` step of the 784-256-128-10 MLP of ``bench/mlp_fashion.py`` (batch 128, float32, Adam): the
  time of that step, which loads the compiled kernels, and of the second step;
* resident memory after Python and NumPy, after ``import barenet`` and after the first step, split into the
  process's own pages (anonymous) and the pages of mapped files (the code of shared libraries, among them
  numba's LLVM), and whether numba was loaded at each point.

Run::

    python bench/startup.py               # 7 repeats
    python bench/startup.py --repeats 9 --threads 1   # steadier on a shared machine
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

from common import machine_line, thread_env

# The child measuring the import and the first training steps prints one JSON line.
_STEPS = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np

def parts():
    fields = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    with open("/proc/self/status") as status:
        words = [line.split() for line in status]
    out = {fields[w[0]]: int(w[1]) / 1024 for w in words if w and w[0] in fields}
    out["numba"] = "numba" in sys.modules
    return out

memory = {"python + numpy": parts()}
t0 = time.perf_counter()
import barenet as bn
imported = time.perf_counter()
memory["import barenet"] = parts()
rng = np.random.default_rng(0)
X = rng.random((256, 784), dtype=np.float32)
y = rng.integers(0, 10, 256)
model = bn.Sequential([bn.layers.Dense(256, activation="relu", input_dim=784, kernel_initializer="he_uniform"),
                       bn.layers.Dense(128, activation="relu", kernel_initializer="he_uniform"),
                       bn.layers.Dense(10, activation="softmax")], seed=0, dtype="float32")
model.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(1e-3))
t1 = time.perf_counter()
model.fit(X[:128], y[:128], epochs=1, batch_size=128, verbose=0, shuffle=False)
t2 = time.perf_counter()
memory["first fit step"] = parts()
model.fit(X[128:], y[128:], epochs=1, batch_size=128, verbose=0, shuffle=False)
t3 = time.perf_counter()
print(json.dumps({"import": imported - t0, "first_step": t2 - t1, "second_step": t3 - t2, "memory": memory}))
"""


def _env(numba: bool, threads: int | None = None) -> dict[str, str]:
    """The children's environment: the compiled kernels on or off, every thread pool capped at ``threads``."""
    return {**(thread_env(threads) or os.environ), "BARENET_NUMBA": "1" if numba else "0"}


def steps_child(numba: bool, threads: int | None) -> dict:
    done = subprocess.run([sys.executable, "-c", _STEPS], capture_output=True, text=True, env=_env(numba, threads),
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"the training child failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def command_child(args: list[str], numba: bool, threads: int | None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of ``python -m barenet *args`` in a process of its own."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "barenet", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=_env(numba, threads))
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"barenet {' '.join(args)} failed (exit {child.returncode}):\n{child.stderr.read()}")
    child.stderr.close()
    return seconds, usage.ru_maxrss / 1024


def write_model(path: str) -> None:
    """A small trained model file for ``barenet summary`` (written by the NumPy forms, so numba stays unloaded)."""
    code = (f"import numpy as np, barenet as bn\nrng = np.random.default_rng(0)\n"
            f"m = bn.Sequential([bn.layers.Dense(16, activation='relu', input_dim=8), bn.layers.Dense(3, "
            f"activation='softmax')], seed=0)\nm.compile(loss='categorical_crossentropy', optimizer='adam')\n"
            f"m.fit(rng.random((64, 8)), rng.integers(0, 3, 64), epochs=1, verbose=0)\nbn.save(m, {path!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(False))


def measure(repeats: int, model: str, threads: int | None) -> dict[str, dict]:
    """Per form ("numba", "numpy"): the best times and largest peak RSS over ``repeats`` children of each kind,
    taken in turns, and the memory stages of the child with the median first step."""
    commands = {"--help": ["--help"], "--version": ["--version"], "summary": ["summary", model]}
    results = {}
    forms = (("numba", True), ("numpy", False)) if importlib.util.find_spec("numba") else (("numpy", False),)
    for form, numba in forms:
        if numba:
            steps_child(True, threads)  # untimed: fills numba's disk cache if this source was never compiled
        steps, runs = [], {name: [] for name in commands}
        for _ in range(repeats):
            steps.append(steps_child(numba, threads))
            for name, args in commands.items():
                runs[name].append(command_child(args, numba, threads))
        results[form] = {
            "import": min(s["import"] for s in steps),
            "first_step": min(s["first_step"] for s in steps),
            "second_step": min(s["second_step"] for s in steps),
            "memory": sorted(steps, key=lambda s: s["first_step"])[len(steps) // 2]["memory"],
            "commands": {name: (min(r[0] for r in rs), max(r[1] for r in rs))
                         for name, rs in runs.items()},
        }
    return results


def report(results: dict[str, dict], repeats: int, threads: int | None) -> None:
    forms = [f for f in ("numba", "numpy") if f in results]
    titles = {"numba": "compiled kernels", "numpy": "BARENET_NUMBA=0"}
    print(f"barenet start-up: best time and largest peak RSS of {repeats} fresh processes each")
    print(f"{'':<34}" + "".join(f"{titles[f]:>20}" for f in forms))
    rows = [("import barenet, s", lambda r: f"{r['import']:.3f}"),
            ("first fit step (MLP, batch 128), s", lambda r: f"{r['first_step']:.3f}"),
            ("second fit step, s", lambda r: f"{r['second_step']:.4f}")]
    for name in results[forms[0]]["commands"]:
        rows.append((f"barenet {name}, s / peak RSS MB",
                     lambda r, n=name: f"{r['commands'][n][0]:.2f} / {r['commands'][n][1]:.0f}"))
    for stage in results[forms[0]]["memory"]:
        rows.append((f"RSS after {stage}, MB",
                     lambda r, s=stage: "{rss:.0f} ({anon:.0f} + {file:.0f}){mark}".format(
                         **r["memory"][s], mark=" *" if r["memory"][s]["numba"] else "")))
    for label, cell in rows:
        print(f"{label:<34}" + "".join(f"{cell(results[f]):>20}" for f in forms))
    print("RSS as total (the process's own pages + mapped files' pages, such as shared libraries' code); "
          "* numba loaded")
    print(machine_line(threads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per figure (best time quoted)")
    parser.add_argument("--threads", type=int, help="cap the children's BLAS, OpenMP and numba threads at this many")
    args = parser.parse_args(argv)
    if args.repeats < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--repeats and --threads must be >= 1")
    with tempfile.TemporaryDirectory() as folder:
        model = os.path.join(folder, "model.npz")
        write_model(model)
        results = measure(args.repeats, model, args.threads)
    report(results, args.repeats, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
