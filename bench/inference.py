"""Inference speed: barenet's ``predict`` against onnxruntime (on barenet's own ONNX export) and PyTorch.

Four networks, each in all three frameworks with the same weights:

* ``mlp``: the 784-256-128-10 MLP of ``bench/mlp_fashion.py`` on Fashion-MNIST test images;
* ``cnn``: the CNN of ``examples/fashion_cnn.py`` (as ``bench/cnn_fashion.py`` trains it) on the same images;
* ``lstm``: the LSTM(128) classifier of ``bench/rnn_sequence.py`` on that script's sequences (50 steps of 16);
* ``resnet18``: ResNet-18 (7x7/2 stem, 3x3/2 max pool, four stages of two basic blocks, 64 to 512 channels,
  global average pooling, Dense 10) on 64x64x3 images: the Fashion-MNIST test images scaled up (nearest
  neighbour) and repeated over three channels.

barenet builds each network (seeded weights; batch normalization given random running statistics so that it
is not the identity) and saves it; onnxruntime runs the file of ``barenet.export_onnx`` (default session
options), PyTorch the same network written in ``torch.nn`` (channels-first) with barenet's weights copied in,
in ``eval`` mode under ``torch.inference_mode``. Every output ends in the softmax, as barenet's ``predict``
does. Before timing, the script checks that the three give the same probabilities (to 1e-4).

Two figures per framework and network:

* throughput: samples/s of calls on batches of 256 rows, for at least ``--seconds`` per turn;
* latency: one call on one row, ``--calls`` calls per turn (the rows of the data in turn), median and p99.

Each framework runs in a child process of its own that lives for all the turns of a network, so that one
framework's thread pools (spinning OpenMP or onnxruntime threads) never slow another's. The frameworks take
turns, in an order that rotates each turn, and barenet's ratios to a peer are medians of per-turn ratios: a
shared machine drifts by tens of percent within minutes, so only figures taken side by side divide.

``--threads N`` caps every framework's threads (BLAS, OpenMP, numba, ``torch.set_num_threads``,
onnxruntime's ``intra_op_num_threads``) at N. ``--profile`` instead prints where barenet's batch-1 ``predict``
spends its time (cProfile), per network.

Run::

    python bench/inference.py                       # all four networks, 5 turns of 1,000 calls
    python bench/inference.py --quick               # 2 turns of 200 calls, shorter throughput runs
    python bench/inference.py --models mlp,lstm --threads 1
    python bench/inference.py --profile --models cnn
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import choose_frameworks, machine_line, median_turn_ratio, print_pools, thread_env, thread_pools

HERE = Path(__file__).resolve().parent
MODELS = ("mlp", "cnn", "lstm", "resnet18")
FRAMEWORKS = ("barenet", "onnxruntime", "torch")
BATCH = 256
N_ROWS = 1024  # rows each worker holds: the latency calls cycle through them
RESNET_SIZE = 64
RESNET_WIDTHS = (64, 128, 256, 512)
SEED = 0


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------- data
def inputs(name: str, n: int) -> np.ndarray:
    """``n`` rows of real inputs for network ``name`` in barenet's layout (channels last), float32."""
    if name == "lstm":
        return _module("rnn_sequence", HERE / "rnn_sequence.py").make_data(n, 54321)[0]
    from barenet.datasets import load_fashion_mnist

    images = load_fashion_mnist()[1][0][:n].astype(np.float32) * np.float32(1 / 255)  # (n, 28, 28) test images
    if name == "mlp":
        return images.reshape(n, -1)
    if name == "cnn":
        return images[..., None]
    rows = np.arange(RESNET_SIZE) * 28 // RESNET_SIZE  # nearest neighbour from 28 to 64 pixels
    return np.ascontiguousarray(np.repeat(images[:, rows][:, :, rows, None], 3, axis=3))


# --------------------------------------------------------------------- the networks in barenet
def resnet18(seed: int):
    """ResNet-18 for ``(batch, 64, 64, 3)`` images, 10 classes, in barenet's functional API, padded as
    torchvision pads (explicit pixels on each side, so that PyTorch's network computes the same)."""
    import barenet as bn

    L = bn.layers

    def conv_bn(x, filters: int, kernel: int, strides: int, name: str):
        x = L.Conv2D(filters, kernel, strides=strides, padding=kernel // 2, use_bias=False, name=f"{name}_conv")(x)
        return L.BatchNormalization(epsilon=1e-5, name=f"{name}_bn")(x)

    def block(x, filters: int, strides: int, name: str):
        h = L.ReLU()(conv_bn(x, filters, 3, strides, f"{name}_1"))
        h = conv_bn(h, filters, 3, 1, f"{name}_2")
        shortcut = x if strides == 1 and x.shape[-1] == filters else conv_bn(x, filters, 1, strides, f"{name}_down")
        return L.ReLU()(L.Add()([h, shortcut]))

    images = bn.Input(shape=(RESNET_SIZE, RESNET_SIZE, 3), name="image")
    x = L.ReLU()(conv_bn(images, RESNET_WIDTHS[0], 7, 2, "stem"))
    x = L.MaxPooling2D(3, strides=2, padding=1)(x)  # zero padding = -inf padding after a ReLU
    for stage, filters in enumerate(RESNET_WIDTHS):
        x = block(x, filters, 1 if stage == 0 else 2, f"stage{stage + 1}_0")
        x = block(x, filters, 1, f"stage{stage + 1}_1")
    out = L.Dense(10, activation="softmax", name="fc")(L.GlobalAveragePooling2D()(x))
    model = bn.Model(images, out, name="resnet18", seed=seed)
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    return model


def barenet_model(name: str, seed: int):
    """Network ``name`` in barenet, built, with random batch-normalization statistics."""
    import barenet as bn

    if name == "mlp":
        model = _module("mlp_fashion", HERE / "mlp_fashion.py").barenet_model(784, seed)
    elif name == "cnn":
        model = _module("fashion_cnn", HERE.parent / "examples" / "fashion_cnn.py").build_model(seed)
    elif name == "lstm":
        rnn = _module("rnn_sequence", HERE / "rnn_sequence.py")
        model = bn.Sequential([bn.layers.LSTM(rnn.UNITS, input_shape=(rnn.TIME, rnn.FEATURES)),
                               bn.layers.Dense(rnn.N_CLASSES, activation="softmax")], seed=seed, dtype="float32")
        model.compile(loss="categorical_crossentropy", optimizer="adam")
    else:
        model = resnet18(seed)
    model.build()
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, bn.layers.BatchNormalization):
            n = layer.buffers["moving_mean"].shape
            layer.buffers["moving_mean"][...] = rng.normal(0, 0.1, n)
            layer.buffers["moving_variance"][...] = rng.uniform(0.5, 1.5, n)
            layer.params["gamma"][...] = rng.uniform(0.5, 1.5, n)
            layer.params["beta"][...] = rng.normal(0, 0.1, n)
    return model


# --------------------------------------------------------------------- the same networks in PyTorch
def torch_network(name: str, model):
    """Network ``name`` in ``torch.nn`` (channels-first, softmax at the end), in eval mode, with the weights
    of the barenet ``model`` copied in.

    Layouts: a Dense kernel ``(in, out)`` is a Linear weight's transpose; a Conv2D kernel ``(kh, kw, in, out)``
    is ``(out, in, kh, kw)`` in PyTorch; the CNN's first Dense reads a channels-last flattening, PyTorch's
    Linear a channels-first one, so its rows are reordered; an LSTM's kernels are the transposes of PyTorch's
    ``weight_ih``/``weight_hh`` (the same gate order), its one bias PyTorch's ``bias_ih`` (``bias_hh`` zero).
    """
    import torch
    from torch import nn

    import barenet as bn

    if name == "mlp":
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
    elif name == "cnn":
        net = _module("cnn_fashion", HERE / "cnn_fashion.py").torch_network()
    elif name == "lstm":
        rnn = _module("rnn_sequence", HERE / "rnn_sequence.py")

        class Classifier(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.recurrent = nn.LSTM(rnn.FEATURES, rnn.UNITS, batch_first=True)
                self.head = nn.Linear(rnn.UNITS, rnn.N_CLASSES)

            def forward(self, x):
                return self.head(self.recurrent(x)[0][:, -1])

        net = Classifier()
    else:
        net = torch_resnet18()
    net = nn.Sequential(net, nn.Softmax(dim=1)).eval()
    ours = [layer for layer in model.layers if layer.params]
    if name == "resnet18":  # the graph's node order need not be PyTorch's module order: pair by name
        ours = [model.get_layer(n) for n in resnet18_names()]
    theirs = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.LSTM))]
    with torch.no_grad():
        for layer, module in zip(ours, theirs, strict=True):
            p = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in {**layer.params, **layer.buffers}.items()}
            if isinstance(module, nn.Linear):
                kernel = p["kernel"]
                if kernel.shape[0] != module.in_features:
                    raise ValueError(f"{layer.describe()} does not match {module}")
                if name == "cnn" and kernel.shape[0] == 64 * 6 * 6:  # channels-last rows -> channels-first
                    kernel = kernel.reshape(6, 6, 64, -1).permute(2, 0, 1, 3).reshape(64 * 6 * 6, -1)
                module.weight.copy_(kernel.T)
                module.bias.copy_(p["bias"])
            elif isinstance(module, nn.Conv2d):
                module.weight.copy_(p["kernel"].permute(3, 2, 0, 1))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(p["gamma"])
                module.bias.copy_(p["beta"])
                module.running_mean.copy_(p["moving_mean"])
                module.running_var.copy_(p["moving_variance"])
                module.eps = float(layer.epsilon)
            else:
                if not isinstance(layer, bn.layers.LSTM):
                    raise ValueError(f"{layer.describe()} does not match {module}")
                module.weight_ih_l0.copy_(p["kernel"].T)
                module.weight_hh_l0.copy_(p["recurrent_kernel"].T)
                module.bias_ih_l0.copy_(p["bias"])
                module.bias_hh_l0.zero_()
    return net


def torch_resnet18():
    """:func:`resnet18` in ``torch.nn``: torchvision's ResNet-18 for 3-channel images and 10 classes."""
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        """torchvision's ResNet-18 for 3-channel images and 10 classes."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, RESNET_WIDTHS[0], 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(RESNET_WIDTHS[0])
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            stages, cin = [], RESNET_WIDTHS[0]
            for k, cout in enumerate(RESNET_WIDTHS):
                stages.append(nn.Sequential(BasicBlock(cin, cout, 1 if k == 0 else 2), BasicBlock(cout, cout, 1)))
                cin = cout
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(RESNET_WIDTHS[-1], 10)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet18()


def resnet18_names() -> list[str]:
    """The weighted layers of :func:`resnet18` by name, in the order of :func:`torch_resnet18`'s weighted modules."""
    names = ["stem_conv", "stem_bn"]
    for stage in range(len(RESNET_WIDTHS)):
        for b in range(2):
            prefix = f"stage{stage + 1}_{b}"
            names += [f"{prefix}_1_conv", f"{prefix}_1_bn", f"{prefix}_2_conv", f"{prefix}_2_bn"]
            if b == 0 and stage > 0:
                names += [f"{prefix}_down_conv", f"{prefix}_down_bn"]
    return [*names, "fc"]


# --------------------------------------------------------------------- one framework's calls
def predictor(framework: str, name: str, model_path: str, onnx_path: str, threads: int | None):
    """``(call, layout)``: ``call(x) -> probabilities`` for one framework, and ``layout(x)`` turning barenet's
    channels-last inputs into the ones ``call`` takes (done once, outside the timings)."""
    if framework == "barenet":
        import barenet as bn

        if threads is not None:
            bn.threads.set_num_threads(threads)
        model = bn.load_model(model_path)
        return (lambda x: model.predict(x, batch_size=BATCH)), (lambda x: x)
    if framework == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0].name
        return (lambda x: session.run(None, {feed: x})[0]), (lambda x: x)
    import torch

    import barenet as bn

    if threads is not None:
        torch.set_num_threads(threads)
    net = torch_network(name, bn.load_model(model_path))

    def call(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()

    def layout(x: np.ndarray) -> np.ndarray:  # images channels-first
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x

    return call, layout


def turn(call, X: np.ndarray, calls: int, seconds: float) -> dict:
    """One turn: throughput on batches of :data:`BATCH` rows for at least ``seconds``, then ``calls`` single-row
    calls (latencies in ms)."""
    batches = [X[i:i + BATCH] for i in range(0, len(X) - BATCH + 1, BATCH)]
    done, start = 0, time.perf_counter()
    while True:
        call(batches[done % len(batches)])
        done += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and done >= 2:
            break
    rows = [X[i:i + 1] for i in range(len(X))]
    latencies = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        call(rows[i % len(rows)])
        latencies[i] = time.perf_counter() - t0
    return {"samples_per_s": done * BATCH / elapsed, "median_ms": float(np.median(latencies) * 1e3),
            "p99_ms": float(np.quantile(latencies, 0.99) * 1e3)}


def worker(framework: str, name: str, model_path: str, onnx_path: str, threads: int | None) -> None:
    """Child process: load the network, warm it up, print the probabilities of the first rows as a JSON line;
    then run one :func:`turn` per ``{"calls": ..., "seconds": ...}`` line read from stdin, a JSON line each."""
    call, layout = predictor(framework, name, model_path, onnx_path, threads)
    X = layout(inputs(name, N_ROWS))
    for i in range(3):  # first calls: numba's kernel cache, onnxruntime's and PyTorch's lazy set-up
        call(X[:BATCH])
        call(X[i:i + 1])
    print(json.dumps({"check": call(X[:8]).tolist(), "pools": thread_pools()}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(turn(call, X, request["calls"], request["seconds"])), flush=True)


class Worker:
    """A child process running :func:`worker`, asked for one turn at a time."""

    def __init__(self, framework: str, name: str, model_path: str, onnx_path: str, threads: int | None) -> None:
        args = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--models", name,
                "--model-file", model_path, "--onnx-file", onnx_path]
        if threads is not None:
            args += ["--threads", str(threads)]
        self.framework = framework
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env=thread_env(threads))
        self.first = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise SystemExit(f"{self.framework} worker failed (exit {self.process.returncode}); see its stderr above")
        return json.loads(line)

    def turn(self, calls: int, seconds: float) -> dict:
        self.process.stdin.write(json.dumps({"calls": calls, "seconds": seconds}) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


# --------------------------------------------------------------------- one network, all frameworks
def compare(name: str, frameworks: list[str], turns: int, calls: int, seconds: float, threads: int | None,
            folder: str) -> dict[str, list[dict]]:
    """Save network ``name`` (and its ONNX export), start a worker per framework, check that their outputs
    agree, take ``turns`` turns in rotating order; returns each framework's turn results."""
    import barenet as bn

    model = barenet_model(name, SEED)
    model_path, onnx_path = os.path.join(folder, f"{name}.barenet"), os.path.join(folder, f"{name}.onnx")
    bn.save(model, model_path)
    bn.export_onnx(model, onnx_path)
    workers = [Worker(f, name, model_path, onnx_path, threads) for f in frameworks]
    try:
        reference = np.asarray(workers[0].first["check"])
        for w in workers[1:]:
            gap = float(np.abs(np.asarray(w.first["check"]) - reference).max())
            if gap > 1e-4:
                raise SystemExit(f"{name}: {w.framework}'s probabilities differ from {frameworks[0]}'s by {gap:.2g}")
        runs: dict[str, list[dict]] = {w.framework: [] for w in workers}
        for t in range(turns):
            order = workers[t % len(workers):] + workers[:t % len(workers)]
            for w in order:
                result = w.turn(calls, seconds)
                result["pools"] = w.first["pools"]
                runs[w.framework].append(result)
                print(f"[{name} {t + 1}/{turns}] {w.framework:<12} {result['samples_per_s']:>10,.0f} samples/s  "
                      f"batch 1: median {result['median_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms", flush=True)
    finally:
        for w in workers:
            w.close()
    return runs


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Per framework the medians over turns; for the peers also barenet's per-turn ratios' medians:
    ``throughput_x`` (barenet's samples/s over the peer's: above 1 is faster) and ``latency_x`` (barenet's
    median latency over the peer's: below 1 is faster)."""
    table = {}
    ours = runs.get("barenet")
    for framework, results in runs.items():
        row = {key: statistics.median(r[key] for r in results) for key in ("samples_per_s", "median_ms", "p99_ms")}
        if ours is not None and framework != "barenet":
            row["throughput_x"] = median_turn_ratio(ours, results, lambda r: r["samples_per_s"])
            row["latency_x"] = median_turn_ratio(ours, results, lambda r: r["median_ms"])
            row["p99_x"] = median_turn_ratio(ours, results, lambda r: r["p99_ms"])
        table[framework] = row
    return table


def print_table(name: str, table: dict[str, dict[str, float]], turns: int, calls: int) -> None:
    print(f"\n{name}: throughput at batch {BATCH}, latency at batch 1 ({calls} calls a turn), "
          f"median of {turns} turn(s)")
    header = (f"{'framework':<12} {'samples/s':>10} {'median ms':>9} {'p99 ms':>8} "
              f"{'barenet thr x':>13} {'barenet lat x':>13} {'p99 x':>6}")
    print(header)
    print("-" * len(header))
    for framework, row in table.items():
        ratios = (f"{row['throughput_x']:>13.2f} {row['latency_x']:>13.2f} {row['p99_x']:>6.2f}"
                  if "throughput_x" in row else "")
        print(f"{framework:<12} {row['samples_per_s']:>10,.0f} {row['median_ms']:>9.3f} {row['p99_ms']:>8.3f} {ratios}")


# --------------------------------------------------------------------- profile
def profile(name: str, calls: int, threads: int | None) -> None:
    """Print the functions barenet's batch-1 ``predict`` spends its time in (cProfile over ``calls`` calls,
    after warm-up), and the mean time per call without the profiler."""
    import barenet as bn

    if threads is not None:
        bn.threads.set_num_threads(threads)
    model = barenet_model(name, SEED)
    X = inputs(name, N_ROWS)
    rows = [X[i:i + 1] for i in range(len(X))]
    for row in rows[:10]:
        model.predict(row)
    start = time.perf_counter()
    for i in range(calls):
        model.predict(rows[i % len(rows)])
    per_call = (time.perf_counter() - start) / calls
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(calls):
        model.predict(rows[i % len(rows)])
    profiler.disable()
    print(f"\n{name}: batch-1 predict, {per_call * 1e6:.0f} us a call (mean of {calls}, no profiler); "
          f"cProfile of {calls} calls:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


# --------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {','.join(MODELS)}")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (barenet first; a peer that is not "
                             "installed is skipped)")
    parser.add_argument("--turns", type=int, default=5, help="turns per network (default 5)")
    parser.add_argument("--calls", type=int, default=1000, help="batch-1 calls per turn (default 1000)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="least time of the batch-256 calls per turn (default 2)")
    parser.add_argument("--quick", action="store_true", help="2 turns of 200 calls, 0.5 s of batch-256 calls")
    parser.add_argument("--threads", type=int, help="cap every framework's threads at this many (default: no cap)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the comparison, print cProfile of barenet's batch-1 predict per network")
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--model-file", help=argparse.SUPPRESS)
    parser.add_argument("--onnx-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.turns, args.calls, args.seconds = 2, 200, 0.5
    if min(args.turns, args.calls, args.threads or 1) < 1 or args.seconds <= 0:
        parser.error("--turns, --calls, --threads and --seconds must be positive")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if set(models) - set(MODELS) or not models:
        parser.error(f"--models must be a comma-separated subset of {','.join(MODELS)}")
    if args.worker:
        worker(args.worker, models[0], args.model_file, args.onnx_file, args.threads)
        return 0
    if args.profile:
        for name in models:
            profile(name, args.calls, args.threads)
        print(machine_line(args.threads))
        return 0
    frameworks = choose_frameworks(parser, args.frameworks, FRAMEWORKS)
    if "onnxruntime" in frameworks and importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime is not installed: skipping it")
        frameworks.remove("onnxruntime")
    with tempfile.TemporaryDirectory() as folder:
        tables = {}
        for name in models:
            runs = compare(name, frameworks, args.turns, args.calls, args.seconds, args.threads, folder)
            tables[name] = summarize(runs)
            print_table(name, tables[name], args.turns, args.calls)
            print_pools(runs)
    print("\n(barenet thr x: barenet's samples/s over the peer's, above 1 is faster; barenet lat x and p99 x: "
          "barenet's batch-1 latency over the peer's, below 1 is faster; medians of per-turn ratios)")
    print(machine_line(args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
