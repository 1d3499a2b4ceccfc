"""Training speed of a small CNN on Fashion-MNIST: barenet against PyTorch (CPU).

Both frameworks train the network of ``examples/fashion_cnn.py`` (barenet builds it from that file,
PyTorch from the same layer list):

    Conv 32 3x3 same - BatchNorm - MaxPool 2 - ReLU - Conv 64 3x3 - BatchNorm - MaxPool 2 - ReLU - Flatten
    - Dense 128 ReLU - Dropout 0.5 - Dense 10   (no convolution bias; batch-norm momentum 0.1, eps 1e-5)

initialized alike: every weight and bias from U(+-1/sqrt(fan_in)), PyTorch's default and barenet's
``uniform_fan_in``.

with softmax cross-entropy, Adam (learning rate 1e-3 annealed to 0 by a cosine over the run), batch 128,
float32, pixels scaled to [0, 1], for ``--epochs`` epochs, each in a child process of its own so that
its peak resident memory is its own. With ``--repeats R`` the frameworks take turns R times (so drifts
in machine load hit both alike) and the table quotes medians.

Rows: ``barenet``; ``torch``, PyTorch as configured by default; ``torch-fast``, PyTorch's fastest CPU
configuration measured here (``Adam(fused=True)`` and the ``channels_last`` memory format);
``torch-compile`` (opt-in), the same under ``torch.compile``.

Reported per framework: seconds per epoch (wall clock) and CPU seconds per epoch (all threads; on a
machine shared with other jobs this moves less than the wall clock), training samples/s, peak RSS and
test accuracy on the 10,000 test images; for barenet also the ratio of its epoch time to PyTorch's.

Run::

    python bench/cnn_fashion.py                      # 12 epochs, full training set
    python bench/cnn_fashion.py --epochs 1 --limit 6000
    python bench/cnn_fashion.py --threads 1          # on a machine busy with other jobs
    python bench/cnn_fashion.py --epochs 1 --limit 3000 --repeats 5 --frameworks barenet,torch-fast,torch-compile
    python bench/cnn_fashion.py --profile 20         # barenet's time per layer in one step

On a machine whose cores are busy with other jobs, multithreaded BLAS slows down badly (its threads
wait for each other); ``--threads 1`` gives every framework one thread (BLAS, numba, OpenMP) for a fairer comparison.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from common import (
    choose_frameworks,
    machine_line,
    median_turn_ratio,
    peak_rss_mb,
    print_pools,
    profile_step,
    run_worker,
    thread_pools,
)

BATCH = 128
LEARNING_RATE = 1e-3
DROPOUT = 0.5
#: barenet; PyTorch as configured by default (channels-first, Adam); PyTorch's fastest CPU configuration
#: (Adam(fused=True), channels_last memory format); the same under torch.compile (opt-in: it compiles
#: with a C++ compiler at start, which the epoch time does not count).
FRAMEWORKS = ("barenet", "torch", "torch-fast", "torch-compile")
DEFAULT_FRAMEWORKS = ("barenet", "torch", "torch-fast")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fashion_cnn.py"


def load_example():
    """The example module, so that the benchmark trains exactly the network the example trains."""
    spec = importlib.util.spec_from_file_location("fashion_cnn", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_data(limit: int | None):
    """``X : (n, 28, 28, 1) float32`` in [0, 1] and ``y : (n,) int64``: training (first ``limit``), then test."""
    from barenet.datasets import load_fashion_mnist

    example = load_example()
    (X_train, y_train), (X_test, y_test) = load_fashion_mnist()
    X_train, y_train = X_train[:limit], y_train[:limit]
    return (example.images(X_train), y_train.astype(np.int64), example.images(X_test), y_test.astype(np.int64))


# --------------------------------------------------------------------- one framework, one run
def train_barenet(X, y, X_test, y_test, epochs: int, seed: int) -> tuple[float, float, float]:
    example = load_example()
    # Untimed warm-up on a throwaway model: loads the compiled kernels from numba's disk cache (a few
    # seconds once per process, compiled on the very first start), as torch-compile compiles untimed.
    example.build_model(seed).fit(X[:2 * BATCH], y[:2 * BATCH], epochs=1, batch_size=BATCH, verbose=0)
    model = example.build_model(seed, LEARNING_RATE, decay_steps=example.steps_per_run(len(X), epochs))
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(X, y, epochs=epochs, batch_size=BATCH, verbose=0)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return seconds, cpu, example.accuracy(model, X_test, y_test)


def torch_network():
    """The example's network in PyTorch, channels-first, with PyTorch's default initialization."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32, eps=1e-5, momentum=0.1), nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, bias=False), nn.BatchNorm2d(64, eps=1e-5, momentum=0.1), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 6 * 6, 128), nn.ReLU(), nn.Dropout(DROPOUT), nn.Linear(128, 10),
    )


def train_torch(X, y, X_test, y_test, epochs: int, seed: int, fast: bool = False,
                compile: bool = False) -> tuple[float, float, float]:
    """PyTorch's training loop; ``fast``: fused Adam and channels_last tensors; ``compile``: also
    ``torch.compile`` of the network (one untimed warm-up step pays for the compilation)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = torch_network()
    layout = torch.channels_last if fast else torch.contiguous_format
    net = net.to(memory_format=layout)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, fused=fast)
    # The same cosine from LEARNING_RATE to 0 over the run as barenet's CosineDecay, one step per batch.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * -(-len(X) // BATCH))
    loss_fn = nn.CrossEntropyLoss()
    Xt = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))  # PyTorch is channels-first
    yt = torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    model = torch.compile(net) if compile else net
    if compile:  # compile outside the timed epochs, then restore the initial weights
        state = {k: v.clone() for k, v in net.state_dict().items()}
        loss_fn(model(Xt[:BATCH].contiguous(memory_format=layout)), yt[:BATCH]).backward()
        net.load_state_dict(state)
        optimizer.zero_grad(set_to_none=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(Xt), generator=generator)
        for i in range(0, len(Xt), BATCH):
            idx = order[i:i + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(Xt[idx].contiguous(memory_format=layout)), yt[idx])
            loss.backward()
            optimizer.step()
            schedule.step()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    net.eval()
    with torch.no_grad():
        Xs = torch.from_numpy(np.ascontiguousarray(X_test.transpose(0, 3, 1, 2)))
        predicted = torch.cat([net(Xs[i:i + 1000].contiguous(memory_format=layout)).argmax(dim=1)
                               for i in range(0, len(Xs), 1000)]).numpy()
    return seconds, cpu, float(np.mean(predicted == y_test))


TRAINERS = {"barenet": train_barenet, "torch": train_torch,
            "torch-fast": lambda *a: train_torch(*a, fast=True),
            "torch-compile": lambda *a: train_torch(*a, fast=True, compile=True)}


def profile_barenet(steps: int, seed: int) -> None:
    """Print where one barenet training step spends its time (:func:`common.profile_step`), on batches of
    real images."""
    example = load_example()
    X, y, _, _ = load_data(BATCH * (steps + 1))
    model = example.build_model(seed, LEARNING_RATE)
    profile_step(model, X, y, BATCH, steps)


def worker(framework: str, epochs: int, limit: int | None, seed: int) -> None:
    """Child process: train once and print one JSON line of results (times cover training only)."""
    X, y, X_test, y_test = load_data(limit)
    seconds, cpu, accuracy = TRAINERS[framework](X, y, X_test, y_test, epochs, seed)
    print(json.dumps({"framework": framework, "seconds": seconds, "cpu_seconds": cpu, "epochs": epochs,
                      "n_train": len(X), "accuracy": accuracy, "peak_rss_mb": peak_rss_mb(),
                      "pools": thread_pools()}))


def run_child(framework: str, epochs: int, limit: int | None, seed: int, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads is not None:  # read by OpenBLAS (NumPy), numba and OpenMP (PyTorch) when the child starts
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    args = ["--epochs", str(epochs), "--seed", str(seed)]
    if limit is not None:
        args += ["--limit", str(limit)]
    return run_worker(os.path.abspath(__file__), framework, args, env)


# --------------------------------------------------------------------- report
def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    table = {}
    for framework, results in runs.items():
        table[framework] = {
            "seconds_per_epoch": statistics.median(r["seconds"] / r["epochs"] for r in results),
            "cpu_per_epoch": statistics.median(r["cpu_seconds"] / r["epochs"] for r in results),
            "samples_per_s": statistics.median(r["n_train"] * r["epochs"] / r["seconds"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "accuracy": statistics.median(r["accuracy"] for r in results),
        }
    for peer in (f for f in runs if f.startswith("torch")):  # epoch-time ratios, turn by turn
        if "barenet" in runs:
            for key in ("seconds", "cpu_seconds"):
                table["barenet"][f"{key}_vs_{peer}"] = median_turn_ratio(runs["barenet"], runs[peer],
                                                                        lambda r, key=key: r[key] / r["epochs"])
    return table


def print_table(table: dict[str, dict[str, float]], epochs: int, n_train: int, repeats: int,
                threads: int | None) -> None:
    print(f"\nCNN on Fashion-MNIST: {n_train} training images, {epochs} epoch(s), batch {BATCH}, float32, "
          f"median of {repeats} run(s), {os.cpu_count()} CPU cores, {threads or 'default'} thread(s)")
    header = (f"{'framework':<13} {'s/epoch':>8} {'CPU s/epoch':>11} {'samples/s':>10} {'peak RSS MB':>11} "
              f"{'test acc':>8}")
    print(header)
    print("-" * len(header))
    for name, row in table.items():
        print(f"{name:<13} {row['seconds_per_epoch']:>8.2f} {row['cpu_per_epoch']:>11.2f} "
              f"{row['samples_per_s']:>10,.0f} {row['peak_rss_mb']:>11.0f} {row['accuracy']:>8.4f}")
    ours = table.get("barenet", {})
    print()
    for peer in (f for f in table if f.startswith("torch")):
        if f"seconds_vs_{peer}" in ours:
            print(f"barenet / {peer} epoch time (median of per-turn ratios): {ours[f'seconds_vs_{peer}']:.2f} "
                  f"(wall clock), {ours[f'cpu_seconds_vs_{peer}']:.2f} (CPU time)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=12, help="epochs per run (default 12)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="train on the first N training images only (default: all 60,000)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per framework, taking turns (median quoted)")
    parser.add_argument("--frameworks", default=",".join(DEFAULT_FRAMEWORKS),
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default "
                             f"{','.join(DEFAULT_FRAMEWORKS)}; PyTorch rows are skipped if it is not installed)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/numba/OpenMP threads of every framework (default: their own choice, all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="instead of the comparison, print barenet's time per layer over STEPS steps")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.epochs, args.repeats, args.limit or 1, args.threads or 1) < 1:
        parser.error("--epochs, --repeats, --limit and --threads must be >= 1")
    if args.profile:
        profile_barenet(args.profile, args.seed)
        return 0
    if args.worker:
        worker(args.worker, args.epochs, args.limit, args.seed)
        return 0

    frameworks = choose_frameworks(parser, args.frameworks, FRAMEWORKS)

    runs: dict[str, list[dict]] = {f: [] for f in frameworks}
    for repeat in range(args.repeats):
        for framework in frameworks:
            result = run_child(framework, args.epochs, args.limit, args.seed + repeat, args.threads)
            runs[framework].append(result)
            print(f"[{repeat + 1}/{args.repeats}] {framework:<13} {result['seconds'] / args.epochs:7.2f} s/epoch  "
                  f"CPU {result['cpu_seconds'] / args.epochs:7.2f} s/epoch  acc {result['accuracy']:.4f}  "
                  f"RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    table = summarize(runs)
    print_table(table, args.epochs, runs[frameworks[0]][0]["n_train"], args.repeats, args.threads)
    print(machine_line(args.threads))
    print_pools(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
