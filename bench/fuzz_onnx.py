"""The long fuzz run of ``bn.import_onnx``: thousands of mutated real exported ONNX files.

Each case takes one of the files PyTorch exports for the import tests (an MLP, the Fashion-MNIST CNN, an LSTM,
a GRU and an Embedding+GRU classifier; a residual MLP, a two-branch MLP and a ResNet block exported with
torch.onnx.export's defaults, their weights in a file beside the model) or barenet's own exporter writes (a
channels-last CNN), applies one to three mutations (tests/onnx_mutations.py: byte flips, truncation,
insertion, huge dims, external-data references to local paths, cycles, unknown operators and domains, edited
attributes; for the files with external data, locations, offsets, lengths, keys and the data file itself ...),
and imports it. The contract: a model or a ``BarenetError``, within the time and memory bounds, and no file
opened outside the model's folder (none in it twice). The CI share of this is tests/test_onnx_fuzz.py.

Run::

    python bench/fuzz_onnx.py                 # 5000 cases, seed 0
    python bench/fuzz_onnx.py --cases 20000 --seed 1

Prints the number of cases, how many imported and how many were refused (with the most common reasons),
the slowest case and the largest memory peak, and every broken contract (exit status 1 if any).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import onnx_cases as oc  # noqa: E402
import onnx_mutations as om  # noqa: E402

SEEDS = [("mlp", "legacy-unfolded"), ("cnn", "legacy-unfolded"), ("lstm", "legacy"), ("gru", "legacy"),
         ("embedding_gru", "legacy")]
SEEDS += [("mobilenet_block", "legacy-unfolded"), ("padded_cnn", "legacy"), ("conv1d_net", "legacy")]
EXTERNAL_SEEDS = ["residual_mlp", "two_branch", "residual_cnn"]


def reason(message: str) -> str:
    """An error message with names and numbers blanked, to group similar refusals."""
    return re.sub(r"'[^']*'|\d+|\[[^\]]*\]|\([^)]*\)", "_", message)[:90]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=5.0, help="per-case time bound")
    parser.add_argument("--megabytes", type=float, default=200.0, help="per-case bound on traced memory")
    parser.add_argument("--save-broken", type=Path, help="folder to keep the files that break the contract in")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        seeds = []
        for name, exporter in SEEDS:
            oc.export(name, folder / f"{name}.onnx", exporter)
            seeds.append(om.Case((folder / f"{name}.onnx").read_bytes()))
        oc.export_barenet_cnn(folder / "barenet_cnn.onnx")
        seeds.append(om.Case((folder / "barenet_cnn.onnx").read_bytes()))
        for name in EXTERNAL_SEEDS:
            oc.export_default(name, folder / f"{name}.onnx")
            data = folder / f"{name}.onnx.data"
            seeds.append(om.Case((folder / f"{name}.onnx").read_bytes(), {data.name: data.read_bytes()}))
        rng = np.random.default_rng(args.seed)
        choices = om.Choices.from_rng(rng)
        imported, refused, broken = 0, collections.Counter(), []
        slowest, peak = 0.0, 0.0
        start = time.perf_counter()
        for case in range(args.cases):
            mutated, names = om.mutate_case(seeds[choices.pick(len(seeds))], choices)
            path = om.write_case(folder / "case", mutated)
            try:
                outcome = om.check_import(path, seconds=args.seconds, megabytes=args.megabytes)
            except Exception as exc:  # a broken contract: report it, keep going
                broken.append(f"case {case} ({names}): {type(exc).__name__}: {exc}")
                if args.save_broken:
                    args.save_broken.mkdir(parents=True, exist_ok=True)
                    om.write_case(args.save_broken / f"case{case}", mutated)
                continue
            slowest, peak = max(slowest, outcome.seconds), max(peak, outcome.peak_mb)
            if outcome.imported:
                imported += 1
            else:
                refused[reason(outcome.error)] += 1
        total = time.perf_counter() - start

    print(f"cases: {args.cases}  imported: {imported}  refused with a barenet error: {sum(refused.values())}  "
          f"broken contract: {len(broken)}")
    print(f"time: {total:.1f} s in all, slowest case {slowest * 1000:.0f} ms; largest traced memory peak {peak:.1f} MB")
    print("most common refusals:")
    for text, n in refused.most_common(8):
        print(f"  {n:6d}  {text}")
    for line in broken[:20]:
        print("BROKEN", line)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
