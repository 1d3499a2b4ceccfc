"""The streamed ``barenet train`` reads its table once per epoch: each block's validation rows go, encoded, to a
:class:`HeldRows` store that validation and the report read back. Real CSV and Parquet files, the command's
own parser and training loop, and real ``barenet`` subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from barenet.cli import build_parser, streaming
from barenet.cli.fitting import fit_network
from barenet.cli.held_rows import HeldRows
from barenet.cli.streaming import PREDICT_ROWS, ValidationRows, open_training, prepare_stream, validation_rows


def table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    color = rng.choice(["red", "green", "blue"], n)
    label = np.where(x[:, 0] - x[:, 1] + (color == "red") > 0.3, "yes", "no")
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "color": color, "label": label})


def parquet_folder(folder: Path, frame: pd.DataFrame, files: int = 2, row_group: int = 700) -> Path:
    folder.mkdir()
    size = -(-len(frame) // files)
    for i in range(files):
        frame.iloc[i * size:(i + 1) * size].to_parquet(folder / f"part-{i}.parquet", index=False,
                                                      row_group_size=row_group)
    return folder


class Reads(Mapping):
    """How many times each part of a table source (its files or row groups) was read, in this process or in the
    child processes that read the training epochs: each read appends a line to a log file."""

    def __init__(self, log: Path) -> None:
        self.log = log
        log.touch()

    def note(self, part) -> None:
        descriptor = os.open(self.log, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(descriptor, f"{part}\n".encode())
        finally:
            os.close(descriptor)

    def _counts(self) -> Counter:
        return Counter(self.log.read_text().splitlines())

    def __getitem__(self, part: str) -> int:
        return self._counts()[part]

    def __iter__(self):
        return iter(self._counts())

    def __len__(self) -> int:
        return len(self._counts())

    def __repr__(self) -> str:
        return repr(self._counts())


def counted(table_source, log: Path) -> Reads:
    """Count the reads of each part of a table source (its files or row groups), in any process."""
    reads = Reads(log)
    read = table_source.read

    def counting(part):
        reads.note(part)
        return read(part)

    table_source.read = counting
    return reads


def train_in_process(data: Path, tmp_path: Path, *options: str):
    args = build_parser().parse_args(["train", str(data), "--target", "label", "--out", str(tmp_path / "m.npz"),
                                      "--stream", *options])
    source = open_training(args)
    reads = counted(source, tmp_path / "reads.log")
    prepared = prepare_stream(source, args)
    return args, prepared, reads


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_each_epoch_reads_the_table_once_and_validation_matches_the_table(tmp_path, kind):
    frame = table(3000, seed=1)
    if kind == "csv":
        data = tmp_path / "t.csv"
        frame.to_csv(data, index=False)
    else:
        data = parquet_folder(tmp_path / "parts", frame)
    args, prepared, reads = train_in_process(data, tmp_path, "--epochs", "3", "--val-split", "0.3", "--seed", "4")
    try:
        fitted = fit_network(prepared, args, verbose=False)
        assert fitted.reason == "completed" and len(fitted.snapshot.history) == 3
        # the preprocessing pass, one read per epoch, the report's pass over the training rows
        assert set(reads.values()) == {1 + 3 + 1}, reads
        assert len(reads) == (1 if kind == "csv" else 6)  # the CSV file, or 2 files of 3 row groups each
        assert prepared.held.written == prepared.val_rows and prepared.held.x_path.exists()
        # the rows read back equal the validation rows encoded from the table again, in the same order
        direct = ValidationRows(prepared.table, prepared.prep, prepared.val_rows, args.seed, args.val_split, None)
        stored = ValidationRows(prepared.table, prepared.prep, prepared.val_rows, args.seed, args.val_split,
                                prepared.held)
        before = dict(reads)
        (x1, y1), (x2, y2) = (next(iter(d.batch(prepared.val_rows))) for d in (direct, stored))
        assert sum(reads.values()) - sum(before.values()) == len(reads)  # only the direct one read the table
        np.testing.assert_array_equal(x2, x1)
        np.testing.assert_array_equal(y2, y1)
        # the last epoch's val_loss is that of those rows; the report's validation counts cover each of them
        model = fitted.model
        expected = model.evaluate(direct.batch(PREDICT_ROWS), verbose=0)
        assert fitted.snapshot.history[-1]["val_loss"] == pytest.approx(expected["loss"], rel=1e-12)
        confusion = fitted.outputs["validation"].confusion
        predicted = model.predict(x1).argmax(axis=1)
        np.testing.assert_array_equal(confusion, np.bincount(y1 * 2 + predicted, minlength=4).reshape(2, 2))
        assert fitted.outputs["train"].n + fitted.outputs["validation"].n == 3000
    finally:
        prepared.close()
    assert not prepared.held.x_path.parent.exists()


def test_a_pass_cut_short_leaves_its_part_to_the_next_pass(tmp_path):
    frame = table(2000, seed=2)
    data = parquet_folder(tmp_path / "parts", frame, files=1, row_group=500)  # 4 parts
    args, prepared, reads = train_in_process(data, tmp_path, "--val-split", "0.25")
    try:
        train, _, _ = prepared.fit_data()
        epoch = train.iterate(0)
        next(epoch)  # the shuffle buffer (every row here) read: every part written, in the child process
        epoch.close()  # the pass cut short: the child stops and hands nothing back; what it wrote is written over
        assert prepared.held.finished == (set() if streaming._FORKS else {0, 1, 2, 3})
        assert sum(1 for _ in train.iterate(1)) and prepared.held.finished == {0, 1, 2, 3}  # a whole pass hands back
        held = HeldRows(4, prepared.n_features, np.int64, folder=str(tmp_path))
        cut = prepared._training()
        cut.held = held
        blocks = cut.iterate(0)
        next(blocks)  # the first block of the first part, then the pass stops
        blocks.close()
        assert held.finished == set() and not held.has(0)
        assert list(cut.iterate(1)) and held.finished == {0, 1, 2, 3}  # the next pass writes every part whole
        for part in range(4):
            ours = np.concatenate([x for x, _ in held.blocks(part)])
            theirs = np.concatenate([x for x, _ in prepared.held.blocks(part)])
            np.testing.assert_array_equal(ours, theirs)
        held.close()
    finally:
        prepared.close()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full, a device that is always full")
def test_a_store_that_cannot_be_written_gives_up_and_the_table_is_read_again(tmp_path, capfd):
    """(``capfd``: the first epoch writes, and warns, in the child process that reads it.)"""
    frame = table(1500, seed=3)
    frame.to_csv(tmp_path / "t.csv", index=False)
    args, prepared, reads = train_in_process(tmp_path / "t.csv", tmp_path, "--epochs", "2", "--val-split", "0.2")
    try:
        prepared.held._x.close()
        prepared.held._x = open("/dev/full", "wb")  # noqa: SIM115 - the store closes it; every write fails
        fitted = fit_network(prepared, args, verbose=False)
        assert capfd.readouterr().err.count("cannot keep the validation rows") == 1
        assert prepared.held.broken and fitted.reason == "completed"
        assert reads[str(tmp_path / "t.csv")] == 1 + 2 * 2 + 2  # validation read from the table each time
        assert fitted.outputs["train"].n + fitted.outputs["validation"].n == 1500
    finally:
        prepared.close()


def test_the_command_leaves_no_temporary_files_and_trains_as_before(tmp_path):
    frame = table(2500, seed=5)
    frame.to_csv(tmp_path / "t.csv", index=False)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    result = subprocess.run([sys.executable, "-m", "barenet", "train", str(tmp_path / "t.csv"), "--target", "label",
                             "--out", str(tmp_path / "m.npz"), "--epochs", "2", "--stream", "--seed", "2"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert list(scratch.iterdir()) == []
    metrics = json.loads((tmp_path / "m.npz.report" / "metrics.json").read_text())
    held = validation_rows(0, 0, 2500, seed=2, fraction=0.2)
    assert metrics["validation"]["samples"] == int(held.sum())
    assert metrics["train"]["samples"] == int((~held).sum())
