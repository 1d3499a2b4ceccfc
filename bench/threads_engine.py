"""Where barenet's threads pay: the whole model in one engine block, or a choice per layer.

A training step (forward and backward, no optimizer) of a network is timed under four arrangements of
:mod:`barenet.threads`:

- ``whole``: the step inside one ``threads.engine()`` block, as ``Sequential`` enters it for a model with
  a splitting layer (``Layer.splits_batch``): every layer splits its batch across barenet's threads, Dense
  products included, and BLAS runs on one thread from the first split on.
- ``per-layer``: the same block, and each layer's forward and backward inside ``threads.layer(layer)``:
  the convolution, pooling and batch-normalization layers split; a Dense layer leaves its products to
  BLAS's own threads until a splitting layer has split in the block (and BLAS is on one thread), then
  splits too.
- ``split-only``: a block around each splitting layer's calls only: Dense layers always on BLAS's own
  threads, BLAS switched to one thread and back around every splitting layer that splits.
- ``none``: no block: BLAS's own threads, nothing split.

Networks (float32, batch 128): ``mlp``, Dense 784-256, BatchNormalization, Dense 128, Dense 10 (ReLU
fused into the Dense layers); ``cnn``, the network of ``examples/fashion_cnn.py`` on 28x28x1 images.
The arrangements take turns (``--repeats`` turns of ``--steps`` steps each, after one untimed step that
lets the previous arrangement's BLAS threads go idle); the table quotes the
median over the turns of the wall-clock ms per step, its range, and the median CPU ms per step (all
threads: BLAS's spinning threads count). Also timed: BLAS's limit set and lifted, the blocks' own cost,
and threadpoolctl's look-up of the loaded BLAS libraries.

Run::

    python bench/threads_engine.py                       # mlp and cnn, 15 turns
    python bench/threads_engine.py --nets mlp --repeats 31 --steps 100
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import cpu_model
from threadpoolctl import ThreadpoolController, threadpool_info

import barenet as bn
from barenet import threads

L = bn.layers
BATCH = 128
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fashion_cnn.py"


def describe_machine() -> None:
    print(f"CPU: {cpu_model()}, {threads.get_num_threads()} barenet thread(s)")
    for lib in threadpool_info():
        if lib["user_api"] == "blas":
            print(f"BLAS: {lib['internal_api']} {lib.get('version')} ({lib.get('threading_layer')}, "
                  f"{lib.get('architecture')}), {lib['num_threads']} thread(s): {Path(lib['filepath']).name}")
    print(f"NumPy {np.__version__}, barenet {bn.__version__}")


def network(name: str) -> tuple[list, np.ndarray, np.ndarray]:
    """The layers, built, an input batch and a gradient for the output."""
    rng = np.random.default_rng(0)
    if name == "mlp":
        layers = [L.Dense(256, activation="relu"), L.BatchNormalization(), L.Dense(128, activation="relu"),
                  L.Dense(10)]
        shape: tuple[int, ...] = (784,)
        for layer in layers:
            layer.build(shape, np.random.default_rng(1), "float32")
            shape = layer.output_shape
    else:
        spec = importlib.util.spec_from_file_location("fashion_cnn", EXAMPLE)
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        model = example.build_model()
        model.build_for(np.zeros((1, 28, 28, 1), np.float32))
        layers = model.layers
        shape = (28, 28, 1)
    x = rng.random((BATCH, *layers[0].input_shape), dtype=np.float32)
    g = rng.standard_normal((BATCH, *layers[-1].output_shape)).astype(np.float32)
    return layers, x, g


def _calls(layer, first: bool) -> tuple[Callable, Callable, Callable, Callable]:
    """``forward``, ``backward``, ``forward_logits`` and ``backward_logits`` of ``layer`` (training mode) as
    functions of the input or gradient alone, whichever layer contract it follows: a call that hands its
    cache to ``backward``, or the arrays kept on the layer."""
    if "cache" not in inspect.signature(layer.forward).parameters:
        layer.input_grad_needed = not first
        return (lambda x: layer.forward(x, training=True), layer.backward,
                lambda x: layer.forward_logits(x, training=True), getattr(layer, "backward_logits", None))
    from barenet.layers.base import Cache

    cache = Cache(input_grad=not first)
    return (lambda x: layer.forward(x, training=True, cache=cache), lambda g: layer.backward(g, cache),
            lambda x: layer.forward_logits(x, training=True, cache=cache),
            lambda g: layer.backward_logits(g, cache))


def arrangements(layers: list, x: np.ndarray, g: np.ndarray) -> dict[str, Callable[[], None]]:
    calls = [_calls(layer, i == 0) for i, layer in enumerate(layers)]

    def step(scope: Callable) -> None:
        """Forward, then backward (the last layer's activation skipped, as the fused loss does)."""
        h = x
        for layer, (forward, _, _, _) in zip(layers[:-1], calls, strict=False):
            with scope(layer):
                h = forward(h)
        with scope(layers[-1]):
            calls[-1][2](h)
            d = calls[-1][3](g)
        for layer, (_, backward, _, _) in zip(layers[-2::-1], calls[-2::-1], strict=True):
            with scope(layer):
                d = backward(d)

    def whole() -> None:
        with threads.engine():
            step(lambda layer: contextlib.nullcontext())

    def per_layer() -> None:
        with threads.engine():
            step(threads.layer)

    return {
        "whole": whole,
        "per-layer": per_layer,
        "split-only": lambda: step(lambda layer: threads.engine(layer.splits_batch)),
        "none": lambda: step(lambda layer: contextlib.nullcontext()),
    }


def per_call_us(function: Callable[[], object], calls: int, repeats: int = 7) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def switch_costs() -> None:
    def limit() -> None:
        threads._blas.acquire()
        threads._blas.release()

    def block() -> None:
        with threads.engine():
            pass

    dense = L.Dense(1)

    def layer_block() -> None:
        with threads.layer(dense):
            pass

    print(f"BLAS limited to one thread and restored: {per_call_us(limit, 5000):.2f} us; an engine block "
          f"that does not split: {per_call_us(block, 5000):.2f} us; a layer block: "
          f"{per_call_us(layer_block, 5000):.2f} us; threadpoolctl.ThreadpoolController(): "
          f"{per_call_us(ThreadpoolController, 20):.0f} us")


def compare(name: str, repeats: int, steps: int) -> None:
    layers, x, g = network(name)
    runs = arrangements(layers, x, g)
    for run in runs.values():
        for _ in range(3):
            run()
    wall: dict[str, list[float]] = {key: [] for key in runs}
    cpu: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            run()  # untimed: the previous arrangement's BLAS threads may still be spinning
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                run()
            wall[key].append((time.perf_counter() - start) / steps * 1e3)
            cpu[key].append((time.process_time() - start_cpu) / steps * 1e3)
    base = statistics.median(wall["whole"])
    print(f"\n{name}: ms per step (forward + backward, batch {BATCH}, float32), median of {repeats} interleaved "
          f"turns of {steps} steps")
    print(f"{'arrangement':<12}{'median':>9}{'min':>9}{'max':>9}{'CPU':>9}{'vs whole':>10}")
    for key, values in wall.items():
        median = statistics.median(values)
        print(f"{key:<12}{median:9.3f}{min(values):9.3f}{max(values):9.3f}{statistics.median(cpu[key]):9.3f}"
              f"{base / median:9.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", default="mlp,cnn", help="comma-separated: mlp, cnn (default both)")
    parser.add_argument("--repeats", type=int, default=15, help="turns of each arrangement (default 15)")
    parser.add_argument("--steps", type=int, default=0,
                        help="steps per turn (default 100 for mlp, 5 for cnn)")
    args = parser.parse_args(argv)
    describe_machine()
    switch_costs()
    for name in args.nets.split(","):
        compare(name, args.repeats, args.steps or (100 if name == "mlp" else 5))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
