"""Fuzz ``barenet.load`` with thousands of mutated real model files and print what happened.

The long form of ``tests/test_io_fuzz.py``: the same nine architectures (five Sequential, four graphs) and
kinds of mutation (those of every file, and the graph edits for graph files), with hypothesis drawing fresh
cases (``--seed`` repeats a run). Every case must load or raise a
``BarenetError`` within its time and memory bound; the script prints the outcome counts per
architecture and mutation, the slowest case and the highest peak memory, and every failure, and
exits 1 when there was one.

    python scripts/fuzz_model_files.py --cases 5000 --seed 1
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("test_io_fuzz", ROOT / "tests" / "test_io_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000, help="number of mutated files to load (default 5000)")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed, to repeat a run")
    args = parser.parse_args(argv)
    fuzz = _fuzz_module()
    outcomes: Counter = Counter()
    failures: list = []
    worst: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        files = fuzz.real_files(Path(folder))
        start = time.perf_counter()
        fuzz.fuzz(files, Path(folder) / "mutated.barenet", outcomes, max_examples=args.cases, derandomize=False,
                  seed=args.seed, failures=failures, worst=worst)()
        elapsed = time.perf_counter() - start
    names = sorted({outcome for *_, outcome in outcomes})
    print(f"{sum(outcomes.values())} cases in {elapsed:.0f} s over {len(files)} architectures "
          f"({', '.join(f'{k}: {len(v)} bytes' for k, v in files.items())})")
    print(f"{'mutation':<20}" + "".join(f"{name:>18}" for name in names))
    for kind in fuzz.MUTATIONS + fuzz.GRAPH_MUTATIONS:
        row = [sum(c for (_, k, o), c in outcomes.items() if k == kind and o == name) for name in names]
        print(f"{kind:<20}" + "".join(f"{n:>18}" for n in row))
    totals = [sum(c for (*_, o), c in outcomes.items() if o == name) for name in names]
    print(f"{'all':<20}" + "".join(f"{n:>18}" for n in totals))
    print(f"{'architecture':<20}" + "".join(f"{name:>18}" for name in names))
    for architecture in files:
        row = [sum(c for (a, _, o), c in outcomes.items() if a == architecture and o == name) for name in names]
        print(f"{architecture:<20}" + "".join(f"{n:>18}" for n in row))
    if worst:
        print(f"slowest load {worst['seconds'] * 1000:.0f} ms; highest peak {worst['peak_bytes'] / 2**20:.1f} MiB "
              f"traced, at most {worst['peak_per_file_byte']:.0f} bytes per byte of file")
    for architecture, kind, error in failures:
        print(f"FAILURE {architecture} {kind}: {error}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
