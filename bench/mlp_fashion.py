"""Training speed of a 784-256-128-10 MLP on Fashion-MNIST: barenet against scikit-learn and PyTorch.

Every framework trains the same network (ReLU hidden layers, softmax cross-entropy, Adam with
learning rate 1e-3, batch 128, float32, inputs scaled to [0, 1]) for ``--epochs`` epochs, in a
child process of its own so that its peak resident memory is its own. With ``--repeats R`` the
frameworks take turns R times (so machine load drifts affect them alike) and the table quotes
medians.

Peers: scikit-learn's ``MLPClassifier``; PyTorch as most code uses it (``torch``: eager, default
``Adam``) and in its fastest CPU configuration for this network (``torch-fused``: ``Adam(fused=True)``,
one kernel for the whole update). ``torch.compile`` was tried for the latter and not kept: on a 2-core
machine it took 150 s to compile, then ran 4.2k-5.9k samples/s against 4.7k-5.4k for eager fused Adam
(one thread, 3 interleaved turns of 15,360 samples), no faster.

barenet and PyTorch first take two untimed steps on a throwaway network (barenet's loads its compiled
kernels from numba's cache, PyTorch's its lazily built kernels), as the CNN and recurrent benchmarks do;
scikit-learn has nothing to warm up.

Reported per framework: training samples/s, seconds per epoch, peak RSS, test accuracy, and how far the peak
RSS lies beyond the data and the model's own arrays (barenet's budget: 100 MB); for
barenet also its throughput ratio to each other framework and the fraction of the machine's
float32 matmul peak that its training reaches: the FLOPs of the products it computes per sample
(:func:`flops_per_sample`: 2 per weight for the forward product, 2 for the kernel gradient, and 2
per weight for the input gradient of every layer but the first, whose input gradient nobody needs;
1.01 MFLOP for 784-256-128-10) times samples/s, over the GFLOP/s of a large ``np.matmul``.

``--threads N`` caps every framework's threads (BLAS, OpenMP, numba, ``torch.set_num_threads``) at N;
one thread is steadier on a shared machine.

A shared machine's speed drifts by tens of percent within minutes, so both figures are taken
per repeat and the medians quoted: the ratio to a peer from the two runs of the same turn, and
the peak fraction from a matmul timed in barenet's own process just before and just after its
training (the better of the two is that run's peak).

Run::

    python bench/mlp_fashion.py                 # 10 epochs, 5 repeats
    python bench/mlp_fashion.py --epochs 2 --repeats 5 --threads 1
    python bench/mlp_fashion.py --profile 200   # barenet's time per layer in one step
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np
from common import (
    arrays_mb,
    choose_frameworks,
    file_backed_mb,
    machine_line,
    median_turn_ratio,
    peak_rss_mb,
    print_pools,
    profile_step,
    run_worker,
    thread_env,
    thread_pools,
)

HIDDEN = (256, 128)
N_CLASSES = 10
BATCH = 128
LEARNING_RATE = 1e-3
FRAMEWORKS = ("barenet", "sklearn", "torch", "torch-fused")


# --------------------------------------------------------------------- data
def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST as ``X (n, 784) float32`` in [0, 1] and ``y (n,) int64``, train then test."""
    from barenet.datasets import load_fashion_mnist

    (X_train, y_train), (X_test, y_test) = load_fashion_mnist()
    scale = np.float32(1 / 255)

    def flat(X: np.ndarray) -> np.ndarray:  # one float32 array, no float temporary of the data's size
        return np.multiply(X.reshape(len(X), -1), scale, dtype=np.float32)

    # Rebinding each name frees its uint8 images as soon as they are converted: the peak holds one split twice.
    X_train = flat(X_train)
    X_test = flat(X_test)
    return X_train, y_train.astype(np.int64), X_test, y_test.astype(np.int64)


def n_parameters(n_inputs: int) -> int:
    """Weights and biases of the n_inputs-256-128-10 network."""
    sizes = (n_inputs, *HIDDEN, N_CLASSES)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def flops_per_sample(n_inputs: int) -> int:
    """Multiply-add FLOPs of the matrix products one training sample costs, counting only those computed.

    Per layer with kernel ``(a, b)``: ``2ab`` forward (``x W``), ``2ab`` for the kernel gradient
    (``x^T g``), and ``2ab`` for the input gradient (``g W^T``) except in the first layer.
    """
    sizes = (n_inputs, *HIDDEN, N_CLASSES)
    weights = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False)]
    return 4 * sum(weights) + 2 * sum(weights[1:])


# --------------------------------------------------------------------- one framework, one run
def barenet_model(n_inputs: int, seed: int):
    """The network in barenet, compiled with Adam and categorical cross-entropy."""
    import barenet as bn

    # He initialization suits ReLU layers (Glorot's, the Dense default, ends 10 epochs about 0.004 lower here).
    model = bn.Sequential(
        [
            bn.layers.Dense(HIDDEN[0], activation="relu", input_dim=n_inputs, kernel_initializer="he_uniform"),
            bn.layers.Dense(HIDDEN[1], activation="relu", kernel_initializer="he_uniform"),
            bn.layers.Dense(N_CLASSES, activation="softmax"),
        ],
        seed=seed,
        dtype="float32",
    )
    # torch.optim.Adam's formulation, which the PyTorch peers train with
    adam = bn.optimizers.Adam(LEARNING_RATE, epsilon=1e-8, epsilon_placement="pytorch")
    model.compile(loss="categorical_crossentropy", optimizer=adam)
    return model


def train_barenet(X, y, X_test, y_test, epochs: int, seed: int) -> tuple[float, float, float]:
    # Untimed warm-up on a throwaway model (loads the compiled kernels from numba's disk cache), as every
    # framework gets one: the figures are training speed, the one-time start is measured apart (README).
    barenet_model(X.shape[1], seed).fit(X[:2 * BATCH], y[:2 * BATCH], epochs=1, batch_size=BATCH, verbose=0)
    model = barenet_model(X.shape[1], seed)
    start = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=BATCH, verbose=0)
    seconds = time.perf_counter() - start
    accuracy = float(np.mean(model.predict(X_test).argmax(axis=1) == y_test))
    own = [*model.parameters().values(), *model.gradients().values(), *model.optimizer.get_state().values()]
    return seconds, accuracy, arrays_mb(own)


def train_sklearn(X, y, X_test, y_test, epochs: int, seed: int) -> tuple[float, float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    # alpha=0: no L2 penalty, the same objective as the other two; tol=0 and a patience longer
    # than the run make it train every epoch.
    clf = MLPClassifier(hidden_layer_sizes=HIDDEN, solver="adam", batch_size=BATCH, learning_rate_init=LEARNING_RATE,
                        alpha=0.0, max_iter=epochs, tol=0.0, n_iter_no_change=epochs + 1, shuffle=True,
                        random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        clf.fit(X, y)
        seconds = time.perf_counter() - start
    if clf.coefs_[0].dtype != np.float32:
        raise RuntimeError(f"scikit-learn trained in {clf.coefs_[0].dtype}, expected float32")
    own = arrays_mb([*clf.coefs_, *clf.intercepts_]) * 4  # weights, their gradients, Adam's two moments
    return seconds, float(np.mean(clf.predict(X_test) == y_test)), own


def train_torch(X, y, X_test, y_test, epochs: int, seed: int, fused: bool = False) -> tuple[float, float, float]:
    import torch

    def network_and_optimizer():
        net = torch.nn.Sequential(
            torch.nn.Linear(X.shape[1], HIDDEN[0]), torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN[0], HIDDEN[1]), torch.nn.ReLU(),
            torch.nn.Linear(HIDDEN[1], N_CLASSES),
        )
        return net, torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, fused=fused)

    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    warm_net, warm_optimizer = network_and_optimizer()  # untimed warm-up steps, as barenet gets
    for i in range(2):
        warm_optimizer.zero_grad(set_to_none=True)
        loss_fn(warm_net(Xt[i * BATCH:(i + 1) * BATCH]), yt[i * BATCH:(i + 1) * BATCH]).backward()
        warm_optimizer.step()
    torch.manual_seed(seed)
    net, optimizer = network_and_optimizer()
    generator = torch.Generator().manual_seed(seed)
    n = len(Xt)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, BATCH):
            idx = order[i:i + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(Xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        predicted = net(torch.from_numpy(X_test)).argmax(dim=1).numpy()
    own = [*net.parameters(), *(p.grad for p in net.parameters() if p.grad is not None),
           *(v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v))]
    return seconds, float(np.mean(predicted == y_test)), sum(t.nbytes for t in own) / 2**20


def train_torch_fused(X, y, X_test, y_test, epochs: int, seed: int) -> tuple[float, float, float]:
    return train_torch(X, y, X_test, y_test, epochs, seed, fused=True)


TRAINERS = {"barenet": train_barenet, "sklearn": train_sklearn, "torch": train_torch,
            "torch-fused": train_torch_fused}


def worker(framework: str, epochs: int, seed: int, threads: int | None) -> None:
    """Child process: train once and print one JSON line of results.

    barenet's run also times the matmul peak before loading the data and after reading the peak RSS,
    so the peak's operands never count in the memory figure.
    """
    if threads is not None and framework.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
    peak = matmul_gflops() if framework == "barenet" else None
    X, y, X_test, y_test = load_data()
    seconds, accuracy, model_mb = TRAINERS[framework](X, y, X_test, y_test, epochs, seed)
    result = {"framework": framework, "seconds": seconds, "samples": epochs * len(X),
              "accuracy": accuracy, "peak_rss_mb": peak_rss_mb(), "data_mb": arrays_mb([X, y, X_test, y_test]),
              "model_mb": model_mb, "file_mb": file_backed_mb(), "n_inputs": X.shape[1], "pools": thread_pools()}
    if peak is not None:
        result["matmul_gflops"] = max(peak, matmul_gflops())
    print(json.dumps(result))


def run_child(framework: str, epochs: int, seed: int, threads: int | None) -> dict:
    args = ["--epochs", str(epochs), "--seed", str(seed)]
    if threads is not None:
        args += ["--threads", str(threads)]
    return run_worker(os.path.abspath(__file__), framework, args, thread_env(threads))


# --------------------------------------------------------------------- machine peak
def matmul_gflops(n: int = 2048, tries: int = 5) -> float:
    """Best-of-``tries`` float32 GFLOP/s of an ``(n, n) @ (n, n)`` product (2 n^3 FLOPs)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm up threads and caches
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


# --------------------------------------------------------------------- report
def rate(result: dict) -> float:
    return result["samples"] / result["seconds"]


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Medians per framework; for the others also the median over repeats of barenet's speed ratio to them."""
    table = {}
    ours = runs.get("barenet")
    for framework, results in runs.items():
        epochs = results[0]["samples"] / results[0]["n_train"]
        table[framework] = {
            "samples_per_s": statistics.median(rate(r) for r in results),
            "seconds_per_epoch": statistics.median(r["seconds"] for r in results) / epochs,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "accuracy": statistics.median(r["accuracy"] for r in results),
            "data_mb": results[0].get("data_mb", 0.0),
            "model_mb": results[0].get("model_mb", 0.0),
            "file_mb": results[0].get("file_mb"),
        }
        if ours is not None and framework != "barenet":
            table[framework]["speedup"] = median_turn_ratio(ours, results, rate)
    return table


#: The most peak RSS that barenet's run may take beyond its data and its model's own arrays (MB).
RSS_BUDGET_MB = 100


def print_memory(table: dict[str, dict[str, float]]) -> None:
    """Each framework's peak RSS beyond the data (the float32 images and int64 labels, train and test) and its
    model's own arrays (parameters, gradients, optimizer state): what the library, its imports and its
    temporaries cost."""
    data = next(iter(table.values()))["data_mb"]
    print(f"\npeak RSS beyond the data ({data:.0f} MB) and each model's own arrays, MB (barenet's budget: "
          f"{RSS_BUDGET_MB}); file-backed: the pages of shared libraries (code) resident at the end of the run")
    for name, row in table.items():
        over = row["peak_rss_mb"] - row["data_mb"] - row["model_mb"]
        files = f", file-backed {row['file_mb']:.0f}" if row.get("file_mb") is not None else ""
        print(f"{name:<11} {over:>6.0f}  (peak {row['peak_rss_mb']:.0f} = data {row['data_mb']:.0f} + model "
              f"{row['model_mb']:.1f} + {over:.0f}{files})")


def peak_fractions(results: list[dict], flops: int) -> list[tuple[float, float]]:
    """Per barenet run: (achieved GFLOP/s = flops per sample x samples/s, that run's matmul peak GFLOP/s)."""
    return [(flops * rate(r) / 1e9, r["matmul_gflops"]) for r in results]


def print_table(table: dict[str, dict[str, float]], fractions: list[tuple[float, float]] | None, flops: int,
                epochs: int, repeats: int, threads: int | None = None) -> None:
    cores = f"{threads} thread(s) of {os.cpu_count()} CPU cores" if threads else f"{os.cpu_count()} CPU cores"
    print(f"\nMLP 784-256-128-10 on Fashion-MNIST, {epochs} epoch(s), batch {BATCH}, float32, "
          f"median of {repeats} run(s), {cores}")
    header = f"{'framework':<11} {'samples/s':>10} {'s/epoch':>8} {'peak RSS MB':>11} {'test acc':>8} {'barenet x':>9}"
    print(header)
    print("-" * len(header))
    for name, row in table.items():
        ratio = f"{row['speedup']:.2f}" if "speedup" in row else ""
        print(f"{name:<11} {row['samples_per_s']:>10,.0f} {row['seconds_per_epoch']:>8.2f} "
              f"{row['peak_rss_mb']:>11.0f} {row['accuracy']:>8.4f} {ratio:>9}")
    print("(barenet x: median over repeats of barenet's samples/s over the peer's in the same turn)")
    if fractions:
        shares = [achieved / peak for achieved, peak in fractions]
        median = statistics.median_low(shares)  # a run's own figure, also for an even number of runs
        achieved, peak = fractions[shares.index(median)]
        print(f"\nbarenet training reaches {100 * median:.0f}% of the float32 matmul peak "
              f"(median over runs; per run {', '.join(f'{100 * s:.0f}%' for s in shares)}); the median run: "
              f"{flops / 1e6:.2f} MFLOP/sample of products computed x samples/s = {achieved:.1f} GFLOP/s "
              f"against {peak:.1f} GFLOP/s of a 2048x2048 np.matmul timed in its process")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats per framework (median quoted)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (torch rows are skipped if PyTorch "
                             "is not installed)")
    parser.add_argument("--threads", type=int, help="cap every framework's threads at this many (default: no cap)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="instead of the comparison, print barenet's time per layer in a step (median of STEPS)")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--epochs, --repeats and --threads must be >= 1")
    if args.worker:
        worker(args.worker, args.epochs, args.seed, args.threads)
        return 0
    if args.profile:
        X, y, _, _ = load_data()
        profile_step(barenet_model(X.shape[1], args.seed), X, y, BATCH, args.profile)
        return 0

    frameworks = choose_frameworks(parser, args.frameworks, FRAMEWORKS)

    runs: dict[str, list[dict]] = {f: [] for f in frameworks}
    for repeat in range(args.repeats):
        for framework in frameworks:  # take turns, so slow phases of a busy machine hit everyone
            result = run_child(framework, args.epochs, args.seed + repeat, args.threads)
            result["n_train"] = result["samples"] // args.epochs
            runs[framework].append(result)
            peak_note = f"  matmul peak {result['matmul_gflops']:.1f} GFLOP/s" if "matmul_gflops" in result else ""
            print(f"[{repeat + 1}/{args.repeats}] {framework:<11} {rate(result):>9,.0f} "
                  f"samples/s  {result['seconds']:6.2f} s  acc {result['accuracy']:.4f}  "
                  f"RSS {result['peak_rss_mb']:.0f} MB{peak_note}", flush=True)
    flops = flops_per_sample(runs[frameworks[0]][0]["n_inputs"])
    fractions = peak_fractions(runs["barenet"], flops) if "barenet" in runs else None
    table = summarize(runs)
    print_table(table, fractions, flops, args.epochs, args.repeats, args.threads)
    print_memory(table)
    print(machine_line(args.threads))
    print_pools(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
