"""The CNN's memory-bound kernels side by side: NumPy reference against the compiled form, in one process.

Every kernel of :mod:`barenet.kernels` that the example's CNN (``examples/fashion_cnn.py``) calls runs on
the shapes of that network at batch 128, float32, both forms taking turns within each round; the
table gives the median time of each form and the median over rounds of their per-round ratio (the
machine's load drifts between rounds, much less within one).

With ``--conv`` it times instead three ways to compute the network's two 3x3 convolutions (forward,
channels-last, one BLAS thread): im2col and one product (what Conv2D does, a few samples at a time);
the sum of the nine products of the padded, flattened input shifted by each tap (no column copy); and
three products of row-shifted copies of width ``3C``.

Run::

    python bench/cnn_kernels.py                # 15 rounds
    python bench/cnn_kernels.py --rounds 5
    python bench/cnn_kernels.py --conv
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from common import machine_line

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


def convolutions(rng: np.random.Generator) -> dict[str, dict[str, Callable[[], np.ndarray]]]:
    """``convolution -> {method: call}``, each call returning ``(batch, out_h, out_w, filters)``."""
    from barenet import functional as F

    out = {}
    for label, (size, c, filters, pad) in (("28x28x1 -> 32, same", (28, 1, 32, 1)),
                                           ("14x14x32 -> 64, valid", (14, 32, 64, 0))):
        x = rng.standard_normal((BATCH, size, size, c), dtype=np.float32)
        kernel = rng.standard_normal((3, 3, c, filters), dtype=np.float32)
        xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        n, hp, wp, _ = xp.shape
        oh, ow = hp - 2, wp - 2
        flat = xp.reshape(-1, c)
        m = n * hp * wp - (2 * wp + 2)  # rows of the flattened image every tap can be shifted over

        def im2col(xp=xp, kernel=kernel, oh=oh, ow=ow):
            chunk = max(1, (1 << 19) // (oh * ow * (kernel[..., 0].size + kernel.shape[3])))
            z = np.empty((xp.shape[0], oh * ow, kernel.shape[3]), dtype=xp.dtype)
            for i in range(0, xp.shape[0], chunk):
                cols = F.im2col(xp[i:i + chunk], (3, 3))
                np.matmul(cols, kernel.reshape(-1, kernel.shape[3]), out=z[i:i + chunk].reshape(-1, kernel.shape[3]))
            return z.reshape(xp.shape[0], oh, ow, -1)

        def shifted(flat=flat, kernel=kernel, m=m, shape=(n, hp, wp, oh, ow)):
            n, hp, wp, oh, ow = shape
            z = np.zeros((n * hp * wp, kernel.shape[3]), dtype=flat.dtype)
            for i in range(3):
                for j in range(3):
                    z[:m] += flat[i * wp + j:i * wp + j + m] @ kernel[i, j]
            return z.reshape(n, hp, wp, -1)[:, :oh, :ow]

        def rows3(flat=flat, kernel=kernel, m=m, shape=(n, hp, wp, oh, ow)):
            n, hp, wp, oh, ow = shape
            wide = np.concatenate([flat[j:j + m + 2 * wp] for j in range(3)], axis=1)  # taps (i, 0..2) side by side
            k3 = kernel.reshape(3, -1, kernel.shape[3])
            z = np.zeros((n * hp * wp, kernel.shape[3]), dtype=flat.dtype)
            for i in range(3):
                z[:m] += wide[i * wp:i * wp + m] @ k3[i]
            return z.reshape(n, hp, wp, -1)[:, :oh, :ow]

        out[label] = {"im2col": im2col, "nine shifted products": shifted, "three row-shifted products": rows3}
    return out


def compare_convolutions(rounds: int) -> None:
    """Print the median time of each method per convolution, after checking they agree."""
    from threadpoolctl import threadpool_limits

    print(f"3x3 convolutions, forward, batch {BATCH}, float32, one BLAS thread, median of {rounds} rounds, ms")
    with threadpool_limits(1, user_api="blas"):
        for label, methods in convolutions(np.random.default_rng(0)).items():
            results = {name: call() for name, call in methods.items()}
            reference = results["im2col"]
            for name, z in results.items():
                np.testing.assert_allclose(z, reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max(),
                                           err_msg=f"{label}: {name}")
            times = {name: [] for name in methods}
            for _ in range(rounds):
                for name, call in methods.items():
                    start = time.perf_counter()
                    call()
                    times[name].append((time.perf_counter() - start) * 1e3)
            print(label + ": " + ", ".join(f"{name} {statistics.median(t):.2f}" for name, t in times.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds of both forms per kernel (default 15)")
    parser.add_argument("--conv", action="store_true", help="compare ways to compute the 3x3 convolutions instead")
    args = parser.parse_args(argv)
    if args.conv:
        print(machine_line(1))
        compare_convolutions(args.rounds)
        return 0
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
    print(machine_line(1))
    print(f"batch {BATCH}, float32, {args.rounds} rounds: fastest ms of each form, median of per-round ratios")
    print(f"{'kernel':<28} {'NumPy':>8} {'compiled':>9} {'speed-up':>9}")
    for name, (ref, fast, ratio) in table.items():
        print(f"{name:<28} {ref:>8.2f} {fast:>9.2f} {ratio:>8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
