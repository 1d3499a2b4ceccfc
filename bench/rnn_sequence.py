"""Training speed of a recurrent sequence classifier: barenet's LSTM and GRU against PyTorch's (CPU).

Both frameworks train the same network on the same data:

    LSTM(128) (or GRU(128)) over 50 steps of 16 features, last hidden state -> Dense 5 softmax

with softmax cross-entropy, Adam (learning rate 1e-3), batch 64, float32. barenet's GRU uses
``reset_after=True``, the form of PyTorch's ``nn.GRU``. The PyTorch peers are ``nn.LSTM``/``nn.GRU``
(``batch_first=True``) + ``nn.Linear`` in three configurations:

* ``torch``: eager, ``Adam`` with its default (for-each) implementation;
* ``torch-fused``: eager, ``Adam(fused=True)``, PyTorch's fastest CPU optimizer;
* ``torch-compile``: ``Adam(fused=True)`` and the network under ``torch.compile``.

The data is a task the script makes itself, deterministically from the seed: each sequence is 16 noisy
channels of one sine whose frequency lies in one of 5 bands, each channel with its own phase and gain;
the class is the band. It is learnable (both frameworks reach well above the 20% of chance in a few
epochs) but not trivial (the noise is as strong as the signal).

Every run is a child process of its own, so that its peak resident memory is its own. Speed is
measured over the epochs after the first (which pays one-time costs: numba's kernel cache, PyTorch's
compilation), as training samples/s. With ``--repeats R`` the configurations take turns R times and
barenet's ratio to each peer is the median of the per-turn ratios (a shared machine drifts by tens of
percent within minutes, so only runs taken side by side divide).

Run::

    python bench/rnn_sequence.py                          # LSTM and GRU, 4 epochs, 5 turns
    python bench/rnn_sequence.py --threads 1              # one thread per framework: steadier when busy
    python bench/rnn_sequence.py --cells lstm --repeats 1 --epochs 2   # quick check
    python bench/rnn_sequence.py --profile --threads 1   # where barenet's time per step goes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from common import (
    choose_frameworks,
    machine_line,
    median_turn_ratio,
    peak_rss_mb,
    print_pools,
    run_worker,
    thread_pools,
)

TIME, FEATURES, UNITS, N_CLASSES = 50, 16, 128, 5
BATCH = 64
LEARNING_RATE = 1e-3
CELLS = ("lstm", "gru")
FRAMEWORKS = ("barenet", "torch", "torch-fused", "torch-compile")


# --------------------------------------------------------------------- data
def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences ``X : (n, TIME, FEATURES) float32`` and their band labels ``y : (n,) int64``.

    Sample ``k`` has class ``y_k`` uniform over the 5 bands and a frequency drawn uniformly from band
    ``y_k``: ``[1.5 + 1.5 y_k, 3 + 1.5 y_k)`` cycles per sequence, so that bands touch and the borders
    are hard. Channel ``c`` is :math:`a_c \\sin(2\\pi f t / T + \\phi_c) + \\epsilon`, gains ``a_c`` in
    [0.5, 1.5], phases uniform, noise :math:`\\epsilon \\sim N(0, 0.7^2)` (about the signal's power).
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    freq = 1.5 + 1.5 * y + 1.5 * rng.random(n)
    phase = rng.uniform(0, 2 * np.pi, (n, 1, FEATURES))
    gain = rng.uniform(0.5, 1.5, (n, 1, FEATURES))
    t = np.arange(TIME)[None, :, None] / TIME
    X = gain * np.sin(2 * np.pi * freq[:, None, None] * t + phase) + rng.normal(0, 0.7, (n, TIME, FEATURES))
    return X.astype(np.float32), y.astype(np.int64)


# --------------------------------------------------------------------- one framework, one run
def train_barenet(cell: str, X, y, X_test, y_test, epochs: int, seed: int) -> tuple[list[tuple[float, float]], float]:
    """Train; return (wall-clock, CPU) seconds from the start at the end of each epoch, and test accuracy."""
    import barenet as bn

    recurrent = (bn.layers.LSTM(UNITS, input_shape=(TIME, FEATURES)) if cell == "lstm"
                 else bn.layers.GRU(UNITS, reset_after=True, input_shape=(TIME, FEATURES)))
    model = bn.Sequential([recurrent, bn.layers.Dense(N_CLASSES, activation="softmax")], seed=seed, dtype="float32")
    # torch.optim.Adam's formulation, which the PyTorch peers train with
    adam = bn.optimizers.Adam(LEARNING_RATE, epsilon=1e-8, epsilon_placement="pytorch")
    model.compile(loss="categorical_crossentropy", optimizer=adam)

    class EpochClock(bn.callbacks.Callback):
        def __init__(self) -> None:
            self.ends: list[tuple[float, float]] = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append((time.perf_counter() - start, time.process_time() - cpu_start))

    clock = EpochClock()
    start, cpu_start = time.perf_counter(), time.process_time()
    model.fit(X, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[clock])
    accuracy = float(np.mean(model.predict(X_test).argmax(axis=1) == y_test))
    return clock.ends, accuracy


def train_torch(cell: str, X, y, X_test, y_test, epochs: int, seed: int, *, fused: bool,
                compiled: bool) -> tuple[list[tuple[float, float]], float]:
    import torch
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            kind = nn.LSTM if cell == "lstm" else nn.GRU
            self.recurrent = kind(FEATURES, UNITS, batch_first=True)
            self.head = nn.Linear(UNITS, N_CLASSES)

        def forward(self, x):
            out, _ = self.recurrent(x)
            return self.head(out[:, -1])

    torch.manual_seed(seed)
    net = Classifier()
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, fused=True if fused else None)
    loss_fn = nn.CrossEntropyLoss()
    forward = torch.compile(net) if compiled else net
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(seed)
    n, ends = len(Xt), []
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i in range(0, n, BATCH):
            idx = order[i:i + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(forward(Xt[idx]), yt[idx])
            loss.backward()
            optimizer.step()
        ends.append((time.perf_counter() - start, time.process_time() - cpu_start))
    with torch.no_grad():
        predicted = net(torch.from_numpy(X_test)).argmax(dim=1).numpy()
    return ends, float(np.mean(predicted == y_test))


def worker(framework: str, cell: str, epochs: int, n_train: int, seed: int) -> None:
    """Child process: train once and print one JSON line of results."""
    # The data seed is fixed, so every run learns the same task; ``seed`` varies the initialization and order.
    X, y = make_data(n_train, 12345)
    X_test, y_test = make_data(2048, 54321)
    if framework == "barenet":
        ends, accuracy = train_barenet(cell, X, y, X_test, y_test, epochs, seed)
    else:
        ends, accuracy = train_torch(cell, X, y, X_test, y_test, epochs, seed, fused=framework != "torch",
                                     compiled=framework == "torch-compile")
    print(json.dumps({"framework": framework, "cell": cell, "epoch_ends": [wall for wall, _ in ends],
                      "epoch_cpu_ends": [cpu for _, cpu in ends], "n_train": n_train,
                      "accuracy": accuracy, "peak_rss_mb": peak_rss_mb(), "pools": thread_pools()}))


def run_child(framework: str, cell: str, epochs: int, n_train: int, seed: int, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads is not None:  # read by OpenBLAS (NumPy), OpenMP (PyTorch) and numba when the child starts
        env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    args = ["--cells", cell, "--epochs", str(epochs), "--n-train", str(n_train), "--seed", str(seed)]
    return run_worker(os.path.abspath(__file__), framework, args, env)


# --------------------------------------------------------------------- per-step profile
def profile(cell: str, turns: int) -> None:
    """Print where one barenet training step's time goes, per time step, on the benchmark's shapes.

    Forward and backward of the recurrent layer are timed whole in three forms: the compiled time loop
    (what the layer runs in float32), the Python loop over time steps with the compiled step kernels (the
    form before it) and the Python loop with the NumPy step kernels. Then the pieces alone, on the same
    arrays: the recurrent products, the compiled step kernels, the products over all steps before and
    after the time loop. One thread, CPU time, best of 3 per turn, median over turns.
    """
    from barenet.kernels import recurrent as kernels
    from barenet.layers import GRU, LSTM, Cache

    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, TIME, FEATURES)).astype(np.float32)
    g = rng.standard_normal((BATCH, UNITS)).astype(np.float32)
    layer = LSTM(UNITS) if cell == "lstm" else GRU(UNITS, reset_after=True)
    layer.build((TIME, FEATURES), rng, "float32")
    steps = ("forward", "backward")
    sequence = {f"{cell}_sequence_{d}": getattr(kernels, f"{cell}_sequence_{d}") for d in steps}
    step = {f"{cell}_{d}": getattr(kernels, f"{cell}_{d}") for d in steps}
    forms = {"compiled loop": {},
             "per-step loop": {name: getattr(kernels, f"{name}_reference") for name in sequence},
             "NumPy steps": {name: getattr(kernels, f"{name}_reference") for name in (*sequence, *step)}}

    def per_step(fn) -> float:
        fn()
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            fn()
            best = min(best, time.process_time() - start)
        return best / TIME * 1e6

    def whole(form: str) -> dict[str, float]:
        for name, fn in {**sequence, **step, **forms[form]}.items():
            setattr(kernels, name, fn)
        try:
            cache = Cache(input_grad=False)
            layer.forward(x, training=True, cache=cache)
            return {f"layer forward ({form})": per_step(lambda: layer.forward(x, training=True)),
                    f"layer backward ({form})": per_step(lambda: layer.backward(g, cache))}
        finally:
            for name, fn in {**sequence, **step}.items():
                setattr(kernels, name, fn)

    def pieces() -> dict[str, float]:
        cache = Cache()
        layer.forward(x, training=True, cache=cache)
        A, H, U, W = cache["A"], cache["H"], layer.params["recurrent_kernel"], layer.params["kernel"]
        width = A.shape[-1]
        hu, dz, dh = np.empty((BATCH, width), np.float32), np.ones((BATCH, width), np.float32), np.empty_like(H[0])
        flat_dz = np.ones((TIME * BATCH, width), np.float32)
        xt = cache["xt"]
        b_x = layer.params["bias"][0] if cell == "gru" else layer.params["bias"]
        kf, kb = (kernels.lstm_forward_fast, kernels.lstm_backward_fast) if cell == "lstm" else (
            kernels.gru_forward_fast, kernels.gru_backward_fast)
        args_f, args_b = _kernel_args(cell, layer, cache, forward=True), _kernel_args(cell, layer, cache, forward=False)
        row = {"h U": per_step(lambda: [np.matmul(H[t], U, out=hu) for t in range(TIME)]),
               "dz U^T": per_step(lambda: [np.matmul(dz, U.T, out=dh) for _ in range(TIME)]),
               "x W + b (all steps)": per_step(lambda: xt.reshape(-1, FEATURES) @ W + b_x),
               "dU, dW, dx (all steps)": per_step(lambda: (H[:-1].reshape(-1, UNITS).T @ flat_dz,
                                                           xt.reshape(-1, FEATURES).T @ flat_dz, flat_dz @ W.T))}
        if kf is not None:
            row["step kernel forward (compiled)"] = per_step(lambda: [kf(*args_f) for _ in range(TIME)])
            row["step kernel backward (compiled)"] = per_step(lambda: [kb(*args_b) for _ in range(TIME)])
        return row

    rows: dict[str, list[float]] = {}
    for _ in range(turns):
        for form in forms:
            for key, value in whole(form).items():
                rows.setdefault(key, []).append(value)
        for key, value in pieces().items():
            rows.setdefault(key, []).append(value)
    print(f"\nbarenet {cell.upper()}({UNITS}) per time step, batch {BATCH}, {FEATURES} features, {TIME} steps, "
          f"float32, {os.environ.get('OPENBLAS_NUM_THREADS', 'default')} BLAS thread(s); "
          f"CPU us, median of {turns} turn(s)")
    for key, values in rows.items():
        print(f"  {key:<40} {statistics.median(values):8.1f}")


def _kernel_args(cell: str, layer, cache, *, forward: bool) -> list[np.ndarray]:
    """Arguments of one step kernel, copied from the arrays a forward pass left in ``cache``."""
    A, H = cache["A"], cache["H"]
    width = A.shape[-1]
    a = A[-1].copy()
    d = np.full_like(H[0], 0.1)
    if cell == "lstm":
        C, tc = cache["C"], cache["tanh_C"]
        if forward:
            return [a, np.zeros((BATCH, width), np.float32), C[-2].copy(), *(np.empty_like(H[0]) for _ in range(3))]
        return [a, C[-2].copy(), tc[-1].copy(), d, d.copy(), d.copy(), np.empty((BATCH, width), np.float32)]
    if forward:
        return [a, np.zeros((BATCH, width), np.float32), layer.params["bias"][1].copy(), H[-2].copy(),
                np.empty_like(H[0]), np.empty_like(H[0])]
    return [a, H[-2].copy(), cache["aux"][-1].copy(), d, d.copy(), d.copy(), np.empty((BATCH, width), np.float32),
            np.empty((BATCH, width), np.float32)]


# --------------------------------------------------------------------- report
def rate(result: dict, clock: str = "epoch_ends") -> float:
    """Training samples/s over the epochs after the first, by the wall clock or (``epoch_cpu_ends``) CPU time."""
    ends = result[clock]
    return result["n_train"] * (len(ends) - 1) / (ends[-1] - ends[0])


def cpu_rate(result: dict) -> float:
    """Training samples per CPU second (all threads); on a busy machine this moves less than the wall clock."""
    return rate(result, "epoch_cpu_ends")


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    table = {}
    ours = runs.get("barenet")
    for framework, results in runs.items():
        table[framework] = {
            "samples_per_s": statistics.median(rate(r) for r in results),
            "samples_per_cpu_s": statistics.median(cpu_rate(r) for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
            "accuracy": statistics.median(r["accuracy"] for r in results),
        }
        if ours is not None and framework != "barenet":
            table[framework]["barenet_x"] = median_turn_ratio(ours, results, rate)
            table[framework]["barenet_x_cpu"] = median_turn_ratio(ours, results, cpu_rate)
            table[framework]["barenet_x_range"] = [min(rate(a) / rate(b) for a, b in zip(ours, results, strict=True)),
                                                   max(rate(a) / rate(b) for a, b in zip(ours, results, strict=True))]
    return table


def print_table(cell: str, table: dict[str, dict[str, float]], epochs: int, n_train: int, repeats: int,
                threads: int | None) -> None:
    print(f"\n{cell.upper()}({UNITS}) over {TIME} steps x {FEATURES} features -> Dense {N_CLASSES}, batch {BATCH}, "
          f"Adam, float32; {n_train} sequences x {epochs} epochs (speed over epochs 2..{epochs}), "
          f"median of {repeats} turn(s), {os.cpu_count()} CPU cores, {threads or 'default'} thread(s)")
    header = (f"{'framework':<14} {'samples/s':>10} {'per CPU s':>10} {'peak RSS MB':>11} {'test acc':>8} "
              f"{'barenet x':>9} {'per turn':>13} {'x by CPU':>8}")
    print(header)
    print("-" * len(header))
    for name, row in table.items():
        ratio = f"{row['barenet_x']:.2f}" if "barenet_x" in row else ""
        spread = "{:.2f}-{:.2f}".format(*row["barenet_x_range"]) if "barenet_x_range" in row else ""
        by_cpu = f"{row['barenet_x_cpu']:.2f}" if "barenet_x_cpu" in row else ""
        print(f"{name:<14} {row['samples_per_s']:>10,.0f} {row['samples_per_cpu_s']:>10,.0f} "
              f"{row['peak_rss_mb']:>11.0f} {row['accuracy']:>8.4f} {ratio:>9} {spread:>13} {by_cpu:>8}")
    print("(barenet x: median over turns of barenet's samples/s over the peer's in the same turn; "
          "per turn: its lowest and highest; x by CPU: the same with samples per CPU second)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated subset of lstm,gru")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run, >= 2 (the first is not timed)")
    parser.add_argument("--n-train", type=int, default=4096, help="training sequences (default 4096)")
    parser.add_argument("--repeats", type=int, default=5, help="turns per configuration (median quoted)")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (PyTorch skipped if not installed)")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/OpenMP threads of every framework (default: their own choice, all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="print barenet's per-time-step profile (compiled and NumPy reference kernels) instead")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2 or min(args.repeats, args.n_train, args.threads or 1) < 1:
        parser.error("--epochs must be >= 2, and --repeats, --n-train and --threads >= 1")
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    if not cells or set(cells) - set(CELLS):
        parser.error(f"--cells takes a comma-separated subset of {','.join(CELLS)}, got {args.cells!r}")
    if args.profile:
        if args.threads is not None and os.environ.get("OPENBLAS_NUM_THREADS") != str(args.threads):
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), NUMBA_NUM_THREADS=str(args.threads))
            again = [sys.executable, os.path.abspath(__file__), *(sys.argv[1:] if argv is None else argv)]
            return subprocess.run(again, env=env, check=False).returncode
        for cell in cells:
            profile(cell, args.repeats)
        return 0
    if args.worker:
        worker(args.worker, cells[0], args.epochs, args.n_train, args.seed)
        return 0

    frameworks = choose_frameworks(parser, args.frameworks, FRAMEWORKS)
    if importlib.util.find_spec("torch") is None:  # choose_frameworks has said so for "torch"
        frameworks = [f for f in frameworks if not f.startswith("torch")]
    for cell in cells:
        runs: dict[str, list[dict]] = {f: [] for f in frameworks}
        for repeat in range(args.repeats):
            for framework in frameworks:  # take turns, so slow phases of a busy machine hit everyone
                result = run_child(framework, cell, args.epochs, args.n_train, args.seed + repeat, args.threads)
                runs[framework].append(result)
                print(f"[{cell} {repeat + 1}/{args.repeats}] {framework:<14} {rate(result):>8,.0f} samples/s  "
                      f"{cpu_rate(result):>8,.0f} per CPU s  "
                      f"acc {result['accuracy']:.4f}  RSS {result['peak_rss_mb']:.0f} MB", flush=True)
        print_table(cell, summarize(runs), args.epochs, args.n_train, args.repeats, args.threads)
        print(machine_line(args.threads))
        print_pools(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
