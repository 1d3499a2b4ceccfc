"""Training on a table larger than memory: barenet's bn.data streams against the same rows from memory, and
PyTorch's DataLoader over the same Parquet files as the peer.

The script writes a numeric + categorical table (8 float columns, one text column of 16 categories, a 0/1
label) of about ``--gb`` GB as CSV, and the same rows as a folder of Parquet files, under ``--dir`` (deleted
at the end unless ``--keep``). Then, each in a child process of its own (so its peak RSS is its own):

* ``memory``: the first ``--memory-rows`` rows read into arrays, trained one epoch with ``fit(X, y)``;
* ``parquet``: one epoch over every row, ``bn.data.from_parquet(...).map(encode).shuffle().batch().prefetch()``;
* ``csv``: the same from the CSV file (``bn.data.from_csv``);
* ``parquet-process``, ``csv-process``: the same with ``prefetch(4, process=True)``: reading, encoding and the
  shuffle in a child process (its peak RSS printed beside the trainer's);
* ``cli-csv``, ``cli-parquet``: ``barenet train`` on the CSV file / the folder of Parquet files (one epoch,
  ``--val-split 0.1``, streamed: its preprocessing pass, the epoch and the report's pass), timed whole;
  ``cli-csv-whole``: the same with ``--no-stream`` (the whole table in memory, as for small files; not in the
  default runs: it needs about 5x the CSV's size in memory); ``cli-csv-memory``: ``--no-stream`` on a CSV file
  of the first ``--memory-rows`` rows, the command line's rate from memory on a table that fits;
* ``torch``: one epoch over the Parquet files with a ``torch.utils.data.DataLoader`` of an ``IterableDataset``
  reading row groups through pyarrow in 2 worker processes, training the same MLP with Adam.

It prints rows per second (training time of the epoch, reading included for the streams), the stream's rate
over the in-memory rate (target >= 0.8x; each run over the ``memory`` run before it, the median of those turns:
list ``memory`` first and again between turns, as in the last example below), peak RSS (target < 1 GB whatever
the file size), the time of one plain reading pass over the Parquet files and over the CSV file (what a
preprocessing pass costs), and the CPU.

    python bench/out_of_core.py --gb 3          # the full size: ~39M rows, 3 GB of CSV
    python bench/out_of_core.py --gb 0.3        # a quick run
    python bench/out_of_core.py --gb 0.3 --runs cli-csv,cli-parquet,cli-csv-whole   # the command line only
    python bench/out_of_core.py --gb 3 --runs memory,cli-csv-memory,cli-csv,cli-parquet,parquet,csv
    python bench/out_of_core.py --gb 3 --keep ...; python bench/out_of_core.py --files FOLDER ...  # generate once
    OMP_NUM_THREADS=1 python bench/out_of_core.py --gb 0.3 \\
        --runs memory,parquet-process,csv-process,memory,parquet-process,csv-process,memory,parquet-process,csv-process
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_model, peak_rss_mb, run_worker  # noqa: E402

NUMERIC = [f"x{i}" for i in range(8)]
CATEGORIES = np.array([f"c{i:02d}" for i in range(16)], dtype=object)
ROWS_PER_FILE = 1_000_000
ROW_GROUP = 131_072
CSV_BYTES_PER_ROW = 76  # measured on the generated rows: 8 floats of 6 decimals, a category, a label


def _chunk(rng: np.random.Generator, n: int):
    import pandas as pd

    numbers = rng.standard_normal((n, len(NUMERIC))).astype(np.float32)
    codes = rng.integers(0, len(CATEGORIES), n)
    logit = numbers[:, 0] - numbers[:, 1] + 0.5 * numbers[:, 2] * numbers[:, 3] + (codes % 4 - 1.5) * 0.5
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    frame = pd.DataFrame(numbers, columns=NUMERIC)
    frame["color"] = CATEGORIES[codes]
    frame["label"] = label
    return frame


def generate(folder: Path, gb: float, seed: int = 0) -> tuple[int, Path, Path]:
    """Write about ``gb`` GB of CSV and the same rows as Parquet files; returns (rows, csv path, parquet folder)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = int(gb * 1e9 / CSV_BYTES_PER_ROW)
    csv, parquet = folder / "table.csv", folder / "parquet"
    parquet.mkdir()
    rng = np.random.default_rng(seed)
    with open(csv, "w") as out:
        for i, start in enumerate(range(0, rows, ROWS_PER_FILE)):
            frame = _chunk(rng, min(ROWS_PER_FILE, rows - start))
            frame.to_csv(out, index=False, header=start == 0, float_format="%.6f")
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet / f"part-{i:04d}.parquet",
                           row_group_size=ROW_GROUP)
    return rows, csv, parquet


def encode(table: dict) -> tuple[np.ndarray, np.ndarray]:
    """A table block as ``(x : (rows, 8 + 16) float32, y : (rows,) int64)``: the numbers and the category one-hot."""
    x = np.zeros((len(table["label"]), len(NUMERIC) + len(CATEGORIES)), dtype=np.float32)
    for j, name in enumerate(NUMERIC):
        x[:, j] = table[name]
    codes = np.searchsorted(CATEGORIES.astype(str), np.asarray(table["color"]).astype(str))
    x[np.arange(len(x)), len(NUMERIC) + codes] = 1.0
    return x, np.asarray(table["label"], dtype=np.int64)


def _model(seed: int = 0):
    import barenet as bn

    model = bn.Sequential([bn.layers.Dense(64, activation="relu", input_dim=len(NUMERIC) + len(CATEGORIES)),
                           bn.layers.Dense(32, activation="relu"), bn.layers.Dense(2, activation="softmax")],
                          seed=seed)
    model.compile("categorical_crossentropy", "adam", metrics=["accuracy"])
    return model


def worker(kind: str, args: argparse.Namespace) -> dict:
    import barenet as bn

    batch = args.batch_size
    if kind == "memory":
        import pyarrow.parquet as pq

        files = sorted(Path(args.parquet).glob("*.parquet"))
        parts, held = [], 0
        for file in files:
            table = pq.read_table(file)
            parts.append(encode({name: table[name].to_numpy() for name in table.column_names}))
            held += len(parts[-1][1])
            if held >= args.memory_rows:
                break
        X = np.concatenate([p[0] for p in parts])[:args.memory_rows]
        y = np.concatenate([p[1] for p in parts])[:args.memory_rows]
        del parts
        model = _model()
        start = time.perf_counter()
        history = model.fit(X, y, epochs=1, batch_size=batch, verbose=0)
        seconds, rows = time.perf_counter() - start, len(X)
    elif kind in ("parquet", "csv", "parquet-process", "csv-process"):
        source = (bn.data.from_parquet(args.parquet) if kind.startswith("parquet") else bn.data.from_csv(args.csv))
        stream = source.map(encode).shuffle(args.buffer, seed=0).batch(batch).prefetch(
            4, process=kind.endswith("-process"))
        model = _model()
        start = time.perf_counter()
        history = model.fit(stream, epochs=1, verbose=0)
        seconds, rows = time.perf_counter() - start, args.rows
    elif kind.startswith("read-"):
        source = bn.data.from_parquet(args.parquet) if kind == "read-parquet" else bn.data.from_csv(args.csv)
        start = time.perf_counter()
        rows = sum(len(block["label"]) for block in source)
        return {"seconds": time.perf_counter() - start, "rows": rows, "rss_mb": peak_rss_mb()}
    elif kind.startswith("cli-"):
        return _cli(kind, args)
    else:
        return _torch(args)
    import resource

    return {"seconds": seconds, "rows": rows, "rows_per_s": rows / seconds, "rss_mb": peak_rss_mb(),
            "child_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "accuracy": history.history["accuracy"][-1]}


class _TreeRss:
    """The largest sum of the resident memory of a process and its children (the command's prefetch process),
    sampled every 50 ms from ``/proc`` (Linux; ``None`` elsewhere)."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid, self.peak_mb = pid, None
        self._done = threading.Event()
        if os.path.exists(f"/proc/{pid}"):
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _rss_mb(self, pid: int) -> float:
        try:
            with open(f"/proc/{pid}/status") as status:
                kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                kids = [int(k) for k in children.read().split()]
        except (OSError, StopIteration, ValueError):
            return 0.0
        return kb / 1024 + sum(self._rss_mb(k) for k in kids)

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak_mb = max(self.peak_mb or 0.0, self._rss_mb(self.pid))

    def stop(self) -> None:
        self._done.set()


def _cli(kind: str, args: argparse.Namespace) -> dict:
    """``barenet train`` in a child process; its peak RSS is that of this worker's only child (and, sampled, with its
    own prefetch process).

    The phases are timed from the child's output as it comes: up to the line announcing the training rows
    (start-up and, streamed, the preprocessing pass; whole, reading the table), the epoch (as the progress
    line prints it) and the rest (the report's pass over the rows, saving).
    """
    import resource
    import subprocess

    folder = Path(tempfile.mkdtemp(prefix="barenet-cli-"))
    data, rows = (args.parquet if kind == "cli-parquet" else args.csv), args.rows
    if kind == "cli-csv-memory":  # the first --memory-rows rows, a table that fits in memory, read whole
        data, rows = str(folder / "head.csv"), args.memory_rows
        with open(args.csv) as source, open(data, "w") as head:
            for _ in range(rows + 1):
                head.write(source.readline())
    mode = "--no-stream" if kind in ("cli-csv-whole", "cli-csv-memory") else "--stream"
    cmd = [sys.executable, "-m", "barenet", "train", data, "--target", "label", "--out", str(folder / "model.npz"),
           "--epochs", "1", "--batch-size", str(args.batch_size), "--val-split", "0.1", mode]
    start = time.perf_counter()
    announced, lines = None, []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1) as child:
        tree = _TreeRss(child.pid)
        for line in child.stdout:
            lines.append(line)
            if announced is None and " training rows, " in line:
                announced = time.perf_counter() - start
        stderr = child.stderr.read()
        tree.stop()
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    if child.returncode != 0:
        raise SystemExit(f"{kind}: barenet train failed (exit {child.returncode}):\n{stderr[-2000:]}")
    stdout = "".join(lines)
    accuracy = float(stdout.split("val_accuracy: ")[-1].split()[0]) if "val_accuracy: " in stdout else None
    epoch = float(stdout.split("Epoch 1/1 - ")[-1].split("s")[0]) if "Epoch 1/1 - " in stdout else None
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "rows": rows, "rows_per_s": rows / seconds, "rss_mb": rss,
            "tree_rss_mb": tree.peak_mb, "accuracy": accuracy,
            "before_epoch_s": announced, "epoch_s": epoch,
            "epoch_rows_per_s": rows * 0.9 / epoch if epoch else None}


def _torch(args: argparse.Namespace) -> dict:
    import pyarrow.parquet as pq
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(1)
    files = sorted(Path(args.parquet).glob("*.parquet"))
    groups = [(f, g) for f in files for g in range(pq.ParquetFile(f).num_row_groups)]

    class Groups(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            mine = groups if info is None else groups[info.id::info.num_workers]
            for file, group in mine:
                table = pq.ParquetFile(file).read_row_group(group)
                x, y = encode({name: table[name].to_numpy() for name in table.column_names})
                order = np.random.default_rng(group).permutation(len(y))
                for start in range(0, len(y), args.batch_size):
                    part = order[start:start + args.batch_size]
                    yield torch.from_numpy(x[part]), torch.from_numpy(y[part])

    loader = torch.utils.data.DataLoader(Groups(), batch_size=None, num_workers=2, prefetch_factor=4)
    model = nn.Sequential(nn.Linear(len(NUMERIC) + len(CATEGORIES), 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                          nn.Linear(32, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    rows, correct = 0, 0
    start = time.perf_counter()
    for x, y in loader:
        optimizer.zero_grad()
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        rows += len(y)
        correct += int((logits.argmax(1) == y).sum())
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": rows, "rows_per_s": rows / seconds, "rss_mb": peak_rss_mb(),
            "accuracy": correct / rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=3.0, help="size of the CSV file in GB (default: %(default)s)")
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the files go (default: %(default)s)")
    parser.add_argument("--memory-rows", type=int, default=2_000_000,
                        help="rows trained from memory for the rate comparison (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--buffer", type=int, default=262_144, help="shuffle buffer rows (default: %(default)s)")
    parser.add_argument("--runs", default="memory,parquet,csv,parquet-process,csv-process,torch,read-parquet,"
                                          "read-csv,cli-csv,cli-parquet,cli-csv-memory")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--files", help="a folder of files kept by an earlier --keep run: used again, not generated")
    parser.add_argument("--worker")
    parser.add_argument("--parquet")
    parser.add_argument("--csv")
    parser.add_argument("--rows", type=int)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    folder = Path(args.files) if args.files else Path(tempfile.mkdtemp(prefix="barenet-out-of-core-", dir=args.dir))
    try:
        start = time.perf_counter()
        if args.files:
            import pyarrow.parquet as pq

            csv, parquet = folder / "table.csv", folder / "parquet"
            if not csv.is_file() or not parquet.is_dir():
                parser.error(f"--files {folder} holds no table.csv and parquet/ of an earlier --keep run")
            rows = sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(parquet.glob("*.parquet")))
        else:
            rows, csv, parquet = generate(folder, args.gb)
        print(f"CPU: {cpu_model()}; {os.cpu_count()} cores")
        size_csv = csv.stat().st_size / 1e9
        size_pq = sum(f.stat().st_size for f in parquet.iterdir()) / 1e9
        origin = f"from {folder}" if args.files else f"generated in {time.perf_counter() - start:.0f}s"
        print(f"table: {rows:,} rows; CSV {size_csv:.2f} GB, Parquet {size_pq:.2f} GB in "
              f"{len(list(parquet.iterdir()))} files ({origin})")
        common = ["--parquet", str(parquet), "--csv", str(csv), "--rows", str(rows), "--batch-size",
                  str(args.batch_size), "--memory-rows", str(min(args.memory_rows, rows)), "--buffer", str(args.buffer)]
        results, ratios, memory_rate = {}, {}, None
        for kind in args.runs.split(","):
            results[kind] = run_worker(__file__, kind, common)
            r = results[kind]
            if kind == "memory":
                memory_rate = r["rows_per_s"]
            elif memory_rate is not None and "rows_per_s" in r and not kind.startswith("cli-"):
                ratios.setdefault(kind, []).append(r["rows_per_s"] / memory_rate)  # against the latest memory run
            rate = f"{r['rows_per_s']:>10,.0f} rows/s" if "rows_per_s" in r else f"{r['seconds']:>8.1f} s pass"
            child = f" + child {r['child_rss_mb']:.0f} MB" if r.get("child_rss_mb") else ""
            if r.get("tree_rss_mb"):
                child = f" (with its prefetch process: {r['tree_rss_mb']:.0f} MB at most together)"
            print(f"{kind:<15} {r['rows']:>11,} rows  {rate}  peak RSS {r['rss_mb']:>6.0f} MB{child}", flush=True)
        for kind, turns in ratios.items():  # each run over the memory run before it; the median of those turns
            print(f"{kind} / memory rows/s: {statistics.median(turns):.2f}x (median of "
                  f"{', '.join(f'{t:.2f}' for t in turns)})")
        cli = [kind for kind in results if kind.startswith("cli-")]
        if cli:
            print("cli-* rows/s: rows of the table over the whole command (start-up, the preprocessing pass or "
                  "reading the table, one epoch, the report's pass); the epoch: its training rows over its time")
            for kind in cli:
                r = results[kind]
                rest = r["seconds"] - (r["before_epoch_s"] or 0) - (r["epoch_s"] or 0)
                print(f"{kind:<14} before the epoch {r['before_epoch_s']:7.1f} s, epoch {r['epoch_s']:7.1f} s "
                      f"({r['epoch_rows_per_s']:,.0f} rows/s), after it {rest:6.1f} s")
            for base in ("cli-csv-memory", "cli-csv-whole"):
                if base in results:
                    for kind in ("cli-csv", "cli-parquet"):
                        if kind in results:
                            whole = results[kind]["rows_per_s"] / results[base]["rows_per_s"]
                            epoch = results[kind]["epoch_rows_per_s"] / results[base]["epoch_rows_per_s"]
                            print(f"{kind} / {base} rows/s: {whole:.2f}x the whole command, {epoch:.2f}x the epoch")
    finally:
        if args.keep or args.files:
            print(f"files kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
