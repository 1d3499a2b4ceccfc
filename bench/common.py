"""What the benchmark scripts share: picking the frameworks to run and running one in a child process.

Each framework trains in a child process of its own, so that the peak resident memory it reports
(``ru_maxrss`` of the child) is that framework's alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable


def choose_frameworks(parser: argparse.ArgumentParser, spec: str, known: tuple[str, ...]) -> list[str]:
    """The comma-separated ``spec`` as a list; unknown names end the script with a usage error,
    and PyTorch is dropped (with a note) when it is not installed."""
    frameworks = [f.strip() for f in spec.split(",") if f.strip()]
    unknown = sorted(set(frameworks) - set(known))
    if unknown:
        parser.error(f"unknown frameworks {unknown}; choose from {list(known)}")
    torch_rows = [f for f in frameworks if f == "torch" or f.startswith("torch-")]  # "torch", "torch-fused" ...
    if torch_rows and importlib.util.find_spec("torch") is None:
        print("PyTorch is not installed: skipping it")
        frameworks = [f for f in frameworks if f not in torch_rows]
    return frameworks


def cpu_model() -> str:
    """The CPU's model name from ``lscpu`` and the vector extensions it has of AVX2, AVX-512F and AMX
    (platform's processor string where there is no lscpu)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    name = fields.get("Model name", platform.processor() or platform.machine()).strip()
    flags = fields.get("Flags", "").split()
    extensions = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
    return f"{name} ({', '.join(extensions) or 'no AVX2'})"


def thread_pools() -> list[str]:
    """The thread pools of this process, one line each: every BLAS and OpenMP library threadpoolctl finds
    (library, version, the kernel it chose for this CPU, threads), barenet's own threads and PyTorch's
    where they are loaded. Call it in the process that ran the benchmark, after it ran."""
    from threadpoolctl import threadpool_info

    lines = []
    for pool in threadpool_info():
        words = [pool["user_api"], pool["internal_api"], pool.get("version") or ""]
        kernel = f" ({pool['architecture']} kernel)" if pool.get("architecture") else ""
        lines.append(" ".join(w for w in words if w) + f"{kernel}: {pool['num_threads']} threads")
    if "barenet" in sys.modules:
        from barenet import threads

        lines.append(f"barenet threads: {threads.get_num_threads()}")
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        lines.append(f"torch {torch.__version__}: {torch.get_num_threads()} threads, "
                     f"{torch.backends.cpu.get_cpu_capability()} kernels")
    return lines


def machine_line(threads: int | None = None) -> str:
    """``CPU: <model> (<vector extensions>), <n> logical cores; Python, NumPy; threads: <cap or default>``."""
    import numpy

    return (f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
            f"NumPy {numpy.__version__}; threads: {threads or 'default'}")


def print_pools(runs: dict[str, list[dict]]) -> None:
    """Each framework's thread pools, as its first run reported them under ``"pools"``."""
    for framework, results in runs.items():
        if results and results[0].get("pools"):
            print(f"  {framework}: {'; '.join(results[0]['pools'])}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_parts_mb() -> dict[str, float]:
    """This process's resident memory now, MB, from ``/proc/self/status`` (Linux; empty elsewhere): ``"rss"``,
    ``"anon"`` (its own heap and arrays) and ``"file"`` (pages of mapped files: the code of Python, NumPy,
    numba's LLVM and other shared libraries, which other processes share)."""
    fields = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}
    try:
        with open("/proc/self/status") as status:
            lines = [line.split() for line in status]
    except OSError:
        return {}
    return {fields[words[0]]: int(words[1]) / 1024 for words in lines if words and words[0] in fields}


def file_backed_mb() -> float | None:
    """MB of this process's resident pages that map files (see :func:`rss_parts_mb`); None where unknown."""
    return rss_parts_mb().get("file")


def arrays_mb(arrays) -> float:
    """MB (MiB, as :func:`peak_rss_mb`) that the NumPy arrays hold."""
    return sum(a.nbytes for a in arrays) / 2**20


#: Environment variables that cap the thread pools of BLAS libraries, OpenMP and numba.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def thread_env(threads: int | None) -> dict[str, str] | None:
    """This process's environment with every thread pool capped at ``threads``; None (inherit) for no cap.

    Set before the child starts, since the libraries read them once, at load. PyTorch's own pool is
    capped in the child with ``torch.set_num_threads``.
    """
    if threads is None:
        return None
    return {**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(threads))}


def run_worker(script: str, framework: str, args: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``script --worker framework *args`` and return the JSON object of its last output line."""
    cmd = [sys.executable, script, "--worker", framework, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{framework} run failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_turn_ratio(ours: list[dict], theirs: list[dict], value: Callable[[dict], float]) -> float:
    """Median over turns of ``value(our run) / value(their run)``, pairing the two runs of each turn.

    A shared machine drifts by tens of percent within minutes, so only runs taken side by side divide;
    a ratio of the two medians would mix moments.
    """
    return statistics.median(value(a) / value(b) for a, b in zip(ours, theirs, strict=True))


def profile_step(model, X, y, batch: int, steps: int) -> None:
    """Print where one training step of the compiled ``model`` spends its time: forward and backward of each
    layer (ms, median over ``steps`` steps of ``batch`` rows of ``X, y``, after one warm-up step), the loss
    and the optimizer, on the threads ``fit`` would use."""
    from barenet.layers import Cache

    model.build()
    layers, loss, optimizer = model.layers, model.loss, model.optimizer
    y = loss.prepare_targets(y, model.output_shape, model.dtype)
    params, grads = model.parameters(), model.gradients()
    timings: dict[str, list[float]] = {}

    def timed(key, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        timings.setdefault(key, []).append((time.perf_counter() - start) * 1e3)
        return out

    with model._engine():  # as in fit: batches split across barenet's threads, BLAS on one
        for step in range(steps + 1):
            x, target = X[step * batch:(step + 1) * batch], y[step * batch:(step + 1) * batch]
            caches = [Cache(input_grad=i > 0) for i in range(len(layers))]
            for i, layer in enumerate(layers[:-1]):
                x = timed((i, "forward"), layer.forward, x, training=True, cache=caches[i])
            logits = timed((len(layers) - 1, "forward"), layers[-1].forward_logits, x, training=True,
                           cache=caches[-1])
            _, grad, _ = timed(("loss", ""), loss.fused, logits, target, None)
            grad = timed((len(layers) - 1, "backward"), layers[-1].backward_logits, grad, caches[-1])
            for i in range(len(layers) - 2, -1, -1):
                grad = timed((i, "backward"), layers[i].backward, grad, caches[i])
            timed(("optimizer", ""), optimizer.step, params, grads)
            if step == 0:
                timings.clear()  # the warm-up step pays for first-touch allocations (and compilation)
    ms = {key: statistics.median(values) for key, values in timings.items()}
    print(f"one training step of batch {batch}, median of {steps} steps, ms")
    print(f"{'layer':<40} {'forward':>8} {'backward':>8}")
    for i, layer in enumerate(layers):
        print(f"{i:>2} {layer.describe()[:37]:<37} {ms[(i, 'forward')]:>8.2f} {ms[(i, 'backward')]:>8.2f}")
    print(f"{'loss (fused softmax cross-entropy)':<40} {ms[('loss', '')]:>8.2f}")
    print(f"{'optimizer':<40} {ms[('optimizer', '')]:>8.2f}")
    total = sum(ms.values())
    print(f"{'total':<40} {total:>8.2f}")
