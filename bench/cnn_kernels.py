"""The CNN's memory-bound kernels side by side: NumPy reference against the compiled form, in one process.

Every kernel of :mod:`barenet.kernels` that the example's CNN (``examples/fashion_cnn.py``) calls runs on
the shapes of that network at batch 128, float32, both forms taking turns within each round; the
table gives the median time of each form and the median over rounds of their per-round ratio (the
machine's load drifts between rounds, much less within one).

Run::

    python bench/cnn_kernels.py                # 15 rounds
    python bench/cnn_kernels.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from barenet import kernels
from barenet.kernels import normalization as norm
from barenet.kernels import pooling

BATCH = 128


def cases(rng: np.random.Generator) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """``name -> (reference call, compiled call)`` on the example network's shapes."""
    out = {}
    for label, shape in (("28x28x32", (BATCH, 28, 28, 32)), ("12x12x64", (BATCH, 12, 12, 64))):
        x = rng.standard_normal(shape, dtype=np.float32)
        g = rng.standard_normal(shape, dtype=np.float32)
        x3, g3 = x.reshape(-1, shape[-1], 1), g.reshape(-1, shape[-1], 1)
        c = shape[-1]
        mean, var = norm.moments_reference(x3)
        inv_std = (1 / np.sqrt(var + 1e-5)).astype(np.float32)
        gamma, beta = np.ones(c, np.float32), np.zeros(c, np.float32)
        out[f"BN moments {label}"] = (lambda x3=x3: norm.moments_reference(x3), lambda x3=x3: norm.moments_fast(x3))
        out[f"BN normalize {label}"] = (
            lambda a=(x3, mean, inv_std, gamma, beta): norm.normalize_reference(*a),
            lambda a=(x3, mean, inv_std, gamma, beta): norm.normalize_fast(*a))
        out[f"BN backward {label}"] = (
            lambda a=(g3, x3, mean, inv_std, gamma, True): norm.backward_reference(*a),
            lambda a=(g3, x3, mean, inv_std, gamma, True): norm.backward_fast(*a))
        pads = ((0, 0), (0, 0))
        y, arg = pooling.max_forward_reference(x, (2, 2), (2, 2), pads)
        gy = rng.standard_normal(y.shape, dtype=np.float32)
        out[f"MaxPool forward {label}"] = (
            lambda x=x, pads=pads: pooling.max_forward_reference(x, (2, 2), (2, 2), pads),
            lambda x=x, pads=pads: pooling.max_forward_fast(x, (2, 2), (2, 2), pads))
        out[f"MaxPool backward {label}"] = (
            lambda a=(gy, arg, shape, (2, 2), (2, 2), pads): pooling.max_backward_reference(*a),
            lambda a=(gy, arg, shape, (2, 2), (2, 2), pads): pooling.max_backward_fast(*a))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds of both forms per kernel (default 15)")
    args = parser.parse_args(argv)
    if not kernels.NUMBA_ENABLED:
        print("numba is not installed (or BARENET_NUMBA=0): nothing to compare")
        return 1
    table = {}
    for name, (reference, fast) in cases(np.random.default_rng(0)).items():
        reference(), fast()  # warm-up: first-touch allocations, compilation
        times: dict[str, list[float]] = {"reference": [], "fast": []}
        for _ in range(args.rounds):
            for form, call in (("reference", reference), ("fast", fast)):
                start = time.perf_counter()
                call()
                times[form].append((time.perf_counter() - start) * 1e3)
        ratio = statistics.median(r / f for r, f in zip(times["reference"], times["fast"], strict=True))
        table[name] = (min(times["reference"]), min(times["fast"]), ratio)
    print(f"batch {BATCH}, float32, {args.rounds} rounds: fastest ms of each form, median of per-round ratios")
    print(f"{'kernel':<28} {'NumPy':>8} {'compiled':>9} {'speed-up':>9}")
    for name, (ref, fast, ratio) in table.items():
        print(f"{name:<28} {ref:>8.2f} {fast:>9.2f} {ratio:>8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
