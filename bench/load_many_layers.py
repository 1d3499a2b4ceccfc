"""How long ``bn.load`` takes on files of many parameterless layers: the cost of one layer, times thousands.

Two kinds of file, each written with ``bn.save``:

* a Sequential: ``Dense(4)`` followed by ReLU, Flatten and Dropout layers in turn, ``--layers`` in all;
* a graph: one input, ``Dense(4)``, then a chain of ReLU, Flatten and Dropout calls, each its own layer,
  ``--calls`` calls in all (the most a graph file may describe is ``barenet.io.MAX_GRAPH_NODES`` nodes,
  inputs and calls together).

Each file is loaded ``--repeats`` times (median and range printed); a file barenet refuses prints the error and
the time it took to refuse. Run::

    python bench/load_many_layers.py                          # 10000 and 20000 layers, 9999 calls
    python bench/load_many_layers.py --layers 2000 --calls 2000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import barenet as bn

L = bn.layers
PARAMETERLESS = (L.ReLU, L.Flatten, lambda: L.Dropout(0.1))


def sequential(n: int) -> bn.Sequential:
    model = bn.Sequential([L.Dense(4)] + [PARAMETERLESS[i % 3]() for i in range(n - 1)], seed=0)
    model.build((4,))
    return model


def graph(calls: int) -> bn.Model:
    x = bn.Input(shape=(4,))
    h = L.Dense(4)(x)
    for i in range(calls - 1):
        h = PARAMETERLESS[i % 3]()(h)
    return bn.Model(x, h, seed=0)


def timed_loads(path: Path, repeats: int) -> str:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            bn.load(path)
        except bn.errors.BarenetError as exc:
            return f"refused in {time.perf_counter() - start:.3f} s: {str(exc).split(': ', 1)[-1][:100]}"
        seconds.append(time.perf_counter() - start)
    return (f"loads in {statistics.median(seconds):.3f} s (median of {repeats}; {min(seconds):.3f}-"
            f"{max(seconds):.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[10_000, 20_000], help="Sequential sizes")
    parser.add_argument("--calls", type=int, nargs="+", default=[9_999], help="graph sizes, in layer calls")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cases = [(f"Sequential of {n} layers", sequential, n) for n in args.layers]
        cases += [(f"graph of {n} calls", graph, n) for n in args.calls]
        for what, make, n in cases:
            start = time.perf_counter()
            model = make(n)
            built = time.perf_counter() - start
            path = Path(folder) / "model.barenet"
            bn.save(model, path)
            print(f"{what}: built in {built:.2f} s, file {path.stat().st_size / 1e6:.2f} MB, "
                  f"{timed_loads(path, args.repeats)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
