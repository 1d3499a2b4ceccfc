"""Scaled dot-product attention, forward and backward: barenet's function against PyTorch's (CPU).

Both compute, on the same shapes (default batch 32, 4 heads, T = S = 128, depth 32, float32),

    out = softmax(q k^T / sqrt(d)) v        and the gradients of q, k, v for a given d(out)

barenet with ``bn.functional.scaled_dot_product_attention`` and its backward function, PyTorch with
``torch.nn.functional.scaled_dot_product_attention`` and autograd (``out.backward(dout)``, the gradients
set to None before each step, as ``zero_grad`` does). Configurations:

* ``barenet``: the products on BLAS's own threads, the compiled softmax kernels on one;
* ``barenet-threads``: inside ``bn.threads.engine()``, as a model whose layers split their batch trains:
  the batch split across barenet's threads, products included, BLAS on one thread each;
* ``torch``: eager PyTorch on its own threads.

Every run is a child process of its own (so that one framework's idle thread pools never take the cores
from the other's) that warms up, then times ``--steps`` forward + backward steps and as many forward-only
steps, and reports the medians. The configurations take turns ``--turns`` times; each ratio printed is
the median over turns of the per-turn ratio of the two runs (a shared machine drifts between turns far
more than within one). ``--causal`` adds the causal mask in both.

Run::

    python bench/attention.py                       # 5 turns
    python bench/attention.py --threads 1           # every thread pool capped at one thread
    python bench/attention.py --turns 9 --causal
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
from common import choose_frameworks, machine_line, median_turn_ratio, run_worker, thread_env, thread_pools

FRAMEWORKS = ("barenet", "barenet-threads", "torch")


def inputs(batch: int, heads: int, t: int, s: int, d: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(shape, dtype=np.float32)
                 for shape in ((batch, heads, t, d), (batch, heads, s, d), (batch, heads, s, d), (batch, heads, t, d)))


def medians(step, forward, steps: int) -> tuple[float, float]:
    """Median ms of ``step()`` (forward + backward) and of ``forward()``, after three untimed calls each."""
    result = []
    for fn in (step, forward):
        for _ in range(3):
            fn()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        result.append(statistics.median(times))
    return result[0], result[1]


def time_barenet(arrays, causal: bool, steps: int, engine: bool) -> tuple[float, float]:
    import contextlib

    import barenet as bn

    q, k, v, dout = arrays
    attention = bn.functional.scaled_dot_product_attention
    backward = bn.functional.scaled_dot_product_attention_backward

    def step():
        cache = {}
        attention(q, k, v, causal=causal, cache=cache)
        backward(dout, cache)

    with bn.threads.engine() if engine else contextlib.nullcontext():
        return medians(step, lambda: attention(q, k, v, causal=causal), steps)


def time_torch(arrays, causal: bool, steps: int, threads: int | None) -> tuple[float, float]:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    q, k, v = (torch.from_numpy(a).requires_grad_() for a in arrays[:3])
    dout = torch.from_numpy(arrays[3])
    attention = torch.nn.functional.scaled_dot_product_attention

    def step():
        q.grad = k.grad = v.grad = None
        attention(q, k, v, is_causal=causal).backward(dout)

    def forward():
        with torch.no_grad():
            attention(q, k, v, is_causal=causal)

    return medians(step, forward, steps)


def worker(framework: str, args: argparse.Namespace) -> None:
    """Child process: time one configuration and print one JSON line."""
    arrays = inputs(args.batch, args.heads, args.time, args.time, args.depth)
    if framework == "torch":
        step_ms, forward_ms = time_torch(arrays, args.causal, args.steps, args.threads)
    else:
        step_ms, forward_ms = time_barenet(arrays, args.causal, args.steps, engine=framework == "barenet-threads")
    print(json.dumps({"framework": framework, "step_ms": step_ms, "forward_ms": forward_ms,
                      "pools": thread_pools()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help=f"comma-separated, of {FRAMEWORKS}")
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="timed calls per run and direction")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--time", type=int, default=128, help="T = S")
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="cap every thread pool (default: the libraries')")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    frameworks = choose_frameworks(parser, args.frameworks, FRAMEWORKS)
    passed = ["--steps", str(args.steps), "--batch", str(args.batch), "--heads", str(args.heads),
              "--time", str(args.time), "--depth", str(args.depth)]
    passed += ["--causal"] * args.causal + (["--threads", str(args.threads)] if args.threads else [])
    env = thread_env(args.threads)

    print(machine_line(args.threads))
    print(f"attention (batch {args.batch}, heads {args.heads}, T = S = {args.time}, depth {args.depth}) float32"
          f"{', causal' if args.causal else ''}; threads: {args.threads or 'default'}; {args.turns} turns of "
          f"{args.steps} steps")
    runs: dict[str, list[dict]] = {f: [] for f in frameworks}
    for turn in range(args.turns):
        for framework in frameworks:
            run = run_worker(os.path.abspath(__file__), framework, passed, env)
            runs[framework].append(run)
            if turn == 0:
                print(f"  {framework} thread pools: {'; '.join(run['pools'])}")
        print(f"turn {turn + 1}: " + ", ".join(f"{f} {runs[f][-1]['step_ms']:.2f} ms" for f in frameworks),
              file=sys.stderr)

    print(f"{'':<18}{'fwd+bwd ms':>12}{'forward ms':>12}")
    for framework, rows in runs.items():
        print(f"{framework:<18}{statistics.median(r['step_ms'] for r in rows):>12.2f}"
              f"{statistics.median(r['forward_ms'] for r in rows):>12.2f}")
    if "torch" in runs:
        for framework in [f for f in runs if f != "torch"]:
            step = median_turn_ratio(runs["torch"], runs[framework], lambda r: r["step_ms"])
            forward = median_turn_ratio(runs["torch"], runs[framework], lambda r: r["forward_ms"])
            print(f"{framework} speed / torch's (median of per-turn ratios of torch's time to {framework}'s): "
                  f"fwd+bwd {step:.2f}x, forward {forward:.2f}x")


if __name__ == "__main__":
    main()
