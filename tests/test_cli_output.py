"""The command line's outputs and its refusals: extras, impossible flag values, output paths, reports.

Commands run as real ``barenet`` subprocesses on CSV files written to tmp_path; independent
commands are started together to keep the suite quick. The flag fuzzer drives ``barenet.cli.main``
in-process (what the ``barenet`` entry point runs) so that it can try many combinations.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_cli import assert_one_line_error, cli, flowers, png_size

import barenet as bn

SRC = Path(__file__).resolve().parents[1] / "src"


def run_all(cases: list[list], env: dict[str, str] | None = None,
            python: tuple[str, ...] = ()) -> list[subprocess.CompletedProcess]:
    """Run ``barenet ARGS`` for every case at once; results in the order of ``cases``."""
    procs = [subprocess.Popen([sys.executable, *python, "-m", "barenet", *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for args in cases]
    results = []
    for proc, args in zip(procs, cases, strict=True):
        stdout, stderr = proc.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr))
    return results


# ----------------------------------------------------------------- item 11: extras
def test_commands_without_extras_name_the_extra_and_exit_2(tmp_path):
    """A plain install (NumPy and barenet only): every command that needs more says which extra, in one line."""
    numpy_dir = Path(np.__file__).parent
    site = tmp_path / "site"
    site.mkdir()
    for entry in numpy_dir.parent.iterdir():  # numpy itself and its bundled libraries, nothing else
        if entry.name == "numpy" or entry.name.startswith("numpy.libs") or entry.name.startswith("numpy-"):
            (site / entry.name).symlink_to(entry)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{site}"}
    data = tmp_path / "flowers.csv"
    flowers(30).to_csv(data, index=False)
    model = tmp_path / "m.barenet"
    net = bn.Sequential([bn.layers.Dense(3, "softmax", input_dim=2)], seed=0)
    net.build()
    bn.save(net, model)
    cases = [
        ["train", data, "--target", "species", "--out", tmp_path / "new.barenet"],
        ["predict", model, data],
        ["evaluate", model, data, "--target", "species"],
        ["tune", data, "--target", "species", "--grid", "layers=4"],
        ["demo", "--epochs", "1"],
        ["--version"],
        ["--help"],
        ["summary", model],
    ]
    results = run_all(cases, env=env, python=("-S",))  # -S: no site-packages, so pandas & co are not there
    assert "No module named 'pandas'" in subprocess.run(
        [sys.executable, "-S", "-c", "import pandas"], capture_output=True, text=True, env=env).stderr
    for result in results[:5]:
        assert_one_line_error(result, 'pip install "barenet[cli]"')
        assert "needs" in result.stderr and f"'barenet {result.args[0]}'" in result.stderr
    assert "scikit-learn" in results[4].stderr and "pandas" not in results[4].stderr  # demo needs only sklearn
    version, help_, summary = results[5:]
    assert version.returncode == 0 and version.stdout.strip() == f"barenet {bn.__version__}", version.stderr
    assert help_.returncode == 0 and "train" in help_.stdout, help_.stderr
    assert summary.returncode == 0 and "Dense(3" in summary.stdout, summary.stderr
    assert not (tmp_path / "new.barenet").exists()


# ----------------------------------------------------------------- item 13: impossible values
def test_impossible_values_and_unwritable_outputs_are_one_line_errors(tmp_path):
    data = tmp_path / "flowers.csv"
    flowers(40).to_csv(data, index=False)
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("keep me\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    foreign = tmp_path / "notes.report"  # a folder of the user's own files: --force must not delete it
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    out = tmp_path / "m.barenet"
    train = ["train", data, "--target", "species", "--epochs", "1", "--layers", "4"]
    model = tmp_path / "kept" / "m.barenet"  # the outputs of predict and evaluate are checked after their inputs
    model.parent.mkdir()
    assert cli(*train, "--out", model).returncode == 0
    tune = ["tune", data, "--target", "species", "--grid", "layers=4", "--cv", "2", "--epochs", "1"]
    cases: list[tuple[list, str]] = []
    for command, seeds in ((train + ["--out", out], ("-1", str(2**32), str(2**64), "x")),
                           (tune, ("-1", str(2**64))), (["demo", "--epochs", "1"], ("-1", str(2**32)))):
        for bad_seed in seeds:
            cases.append(([*command, f"--seed={bad_seed}"], "argument --seed: expected an integer in [0, 4294967295]"))
    cases += [
        ([*train, "--out", out, "--layers", "10000000000"], "at most 100000 units each"),
        ([*train, "--out", out, "--layers", "1" * 40], "at most 100000 units each"),
        ([*train, "--out", out, "--layers", "90000,90000"], "the command line's limit is 50,000,000"),
        ([*tune[:4], "--grid", "layers=90000,90000", "--cv", "2"], "the command line's limit is 50,000,000"),
        ([*train, "--out", out, "--lr", "nan"], "argument --lr: expected a finite number"),
        ([*train, "--out", out, "--l2", "inf"], "argument --l2: expected a finite number"),
        ([*train, "--out", a_file / "p.csv"], "a_file.txt' is a file, not a folder"),
        ([*train, "--out", tmp_path / "no" / "such" / "m.barenet"], "does not exist"),
        ([*train, "--out", fifo, "--force"], "is not a regular file"),
        ([*train, "--out", folder, "--force"], "is a folder; give a file name"),
        ([*train, "--out", out, "--report", a_file, "--force"], "exists and is not a folder"),
        ([*train, "--out", out, "--report", a_file / "rep"], "a_file.txt' is a file, not a folder"),
        ([*train, "--out", out, "--report", foreign, "--force"], "'notes.txt', which no report writes"),
        (["predict", model, data, "--out", a_file / "p.csv"], "is a file, not a folder"),
        (["predict", model, data, "--out", folder, "--force"], "is a folder"),
        (["evaluate", model, data, "--target", "species", "--report", a_file, "--force"], "exists and is not a folder"),
    ]
    for result, (_, fragment) in zip(run_all([args for args, _ in cases]), cases, strict=True):
        assert_one_line_error(result, fragment)
    assert not out.exists() and not Path(f"{out}.report").exists()
    assert a_file.read_text() == "keep me\n" and (foreign / "notes.txt").read_text() == "mine\n"
    assert fifo.exists() and not fifo.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file.txt", "flowers.csv", "folder", "kept",
                                                          "notes.report", "pipe"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_write_error_after_the_checks_is_one_line(tmp_path):
    """/dev/full accepts opening and fails every write: the error comes from writing, not from the checks."""
    data = tmp_path / "points.csv"
    pd.DataFrame({"x": np.linspace(0, 1, 40), "y": np.linspace(0, 2, 40)}).to_csv(data, index=False)
    model = tmp_path / "m.barenet"
    assert cli("train", data, "--target", "y", "--out", model, "--epochs", "1", "--layers", "4").returncode == 0
    result = cli("predict", model, data, "--out", "/dev/full", "--force")
    assert_one_line_error(result, "cannot write output file '/dev/full': No space left on device")
    assert Path("/dev/full").is_char_device()


# ----------------------------------------------------------------- output folders and permissions
def test_every_output_into_a_missing_folder_is_refused_naming_it(tmp_path):
    data = tmp_path / "flowers.csv"
    flowers(40).to_csv(data, index=False)
    model = tmp_path / "m.barenet"
    trained = cli("train", data, "--target", "species", "--out", model, "--epochs", "1", "--layers", "4")
    assert trained.returncode == 0, trained.stderr
    nodir = tmp_path / "nodir"
    train = ["train", data, "--target", "species", "--epochs", "1", "--layers", "4"]
    cases = [
        ([*train, "--out", nodir / "m.barenet"], nodir / "m.barenet", "model file"),
        ([*train, "--out", tmp_path / "new.barenet", "--report", nodir / "rep"], nodir / "rep", "report folder"),
        (["predict", model, data, "--out", nodir / "p.csv"], nodir / "p.csv", "output file"),
        (["evaluate", model, data, "--report", nodir / "rep"], nodir / "rep", "report folder"),
        (["export", model, nodir / "x.onnx"], nodir / "x.onnx", "ONNX file"),
    ]
    for result, (_, path, what) in zip(run_all([args for args, _, _ in cases]), cases, strict=True):
        assert_one_line_error(result, f"cannot write {what} {str(path)!r}: folder {str(nodir)!r} does not exist; "
                                      "create it first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flowers.csv", "m.barenet", "m.barenet.report"]


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["022", "077"])
def test_outputs_get_the_permissions_of_a_plain_open(tmp_path, umask):
    data = tmp_path / "flowers.csv"
    flowers(40).to_csv(data, index=False)
    model = tmp_path / "m.barenet"

    def run(*args: str | Path) -> None:
        result = subprocess.run([sys.executable, "-m", "barenet", *map(str, args)], capture_output=True, text=True,
                                timeout=120, umask=umask)
        assert result.returncode == 0, result.stderr

    run("train", data, "--target", "species", "--out", model, "--epochs", "1", "--layers", "4")
    run("predict", model, data, "--out", tmp_path / "p.csv")
    run("evaluate", model, data)
    run("export", model, tmp_path / "m.onnx")
    files = [model, tmp_path / "p.csv", tmp_path / "m.onnx", *Path(f"{model}.report").iterdir(),
             *Path(f"{model}.evaluation").iterdir()]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(0o666 & ~umask) for p in files}
    folders = [Path(f"{model}.report"), Path(f"{model}.evaluation")]
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {oct(0o777 & ~umask)}


# ----------------------------------------------------------------- reruns: barenet's own report folders, inputs first
def test_a_default_report_folder_is_replaced_and_a_named_one_needs_force(tmp_path):
    data = tmp_path / "flowers.csv"
    flowers(40).to_csv(data, index=False)
    model = tmp_path / "m.barenet"
    assert cli("train", data, "--target", "species", "--out", model, "--epochs", "1", "--layers", "4").returncode == 0
    evaluation = Path(f"{model}.evaluation")
    for _ in range(2):  # evaluating twice just works: the folder is barenet's own
        result = cli("evaluate", model, data)
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in evaluation.iterdir()) == ["confusion_matrix.png", "curves.png", "metrics.json"]
    shutil.rmtree(Path(f"{model}.report"))
    model.unlink()  # retraining to the same --out: its leftover report folder is replaced too
    for _ in range(2):
        result = cli("train", data, "--target", "species", "--out", model, "--epochs", "1", "--layers", "4",
                     *(["--force"] if model.exists() else []))
        assert result.returncode == 0, result.stderr
    named = tmp_path / "mine"
    assert cli("evaluate", model, data, "--report", named).returncode == 0
    assert_one_line_error(cli("evaluate", model, data, "--report", named),
                          f"report folder {str(named)!r} already exists; pass --force to overwrite it")
    (evaluation / "notes.txt").write_text("mine\n")  # barenet's name, the user's file: never deleted
    assert_one_line_error(cli("evaluate", model, data), "which no report writes; a report replaces only an "
                                                        "earlier report")
    assert (evaluation / "notes.txt").read_text() == "mine\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_data_errors_come_before_output_errors(tmp_path):
    data = tmp_path / "flowers.csv"
    flowers(40).to_csv(data, index=False)
    model = tmp_path / "m.barenet"
    assert cli("train", data, "--target", "species", "--out", model, "--epochs", "1", "--layers", "4").returncode == 0
    named = tmp_path / "named"
    named.mkdir()
    taken = tmp_path / "taken.csv"
    taken.write_text("keep me\n")
    broken = tmp_path / "broken.csv"
    broken.write_text("")
    lacking = tmp_path / "lacking.csv"
    flowers(10).drop(columns="petal").to_csv(lacking, index=False)
    cases = [
        (["evaluate", model, broken, "--report", named], "is empty"),
        (["evaluate", model, lacking], "lacks the feature columns ['petal']"),
        (["predict", model, broken, "--out", taken], "is empty"),
        (["train", broken, "--target", "species", "--out", model], "is empty"),
        (["train", data, "--target", "Species", "--out", model], "no column named 'Species'"),
        (["export", tmp_path / "missing.barenet", taken], "does not exist"),
    ]
    for result, (_, fragment) in zip(run_all([args for args, _ in cases]), cases, strict=True):
        assert_one_line_error(result, fragment)
        assert "--force" not in result.stderr
    assert taken.read_text() == "keep me\n" and list(named.iterdir()) == []


# ----------------------------------------------------------------- item 21: a report is one run's, whole
def test_force_replaces_the_whole_report_folder(tmp_path):
    data = tmp_path / "flowers.csv"
    frame = flowers(60)
    frame.to_csv(data, index=False)
    report = tmp_path / "report"
    first = cli("train", data, "--target", "species", "--out", tmp_path / "a.barenet", "--report", report,
                "--epochs", "2", "--layers", "4")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in report.iterdir()) == ["confusion_matrix.png", "curves.png", "metrics.json"]
    second = cli("train", data, "--target", "petal", "--out", tmp_path / "b.barenet", "--report", report,
                 "--epochs", "2", "--layers", "4", "--force")
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in report.iterdir()) == ["curves.png", "metrics.json", "predicted_vs_actual.png"]
    assert json.loads((report / "metrics.json").read_text())["task"] == "regression"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    assert oct(report.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_report_leaves_the_earlier_one_as_it_was(tmp_path, failure):
    from barenet.cli.paths import write_folder
    from barenet.errors import OutputError

    report = tmp_path / "report"
    report.mkdir()
    (report / "metrics.json").write_text("earlier\n")

    def fill(folder: Path) -> None:
        (folder / "curves.png").write_bytes(b"half")
        raise failure

    with pytest.raises(OutputError if isinstance(failure, OSError) else KeyboardInterrupt) as caught:
        write_folder(report, fill)
    if isinstance(failure, OSError):
        assert str(caught.value) == f"cannot write report folder {str(report)!r}: No space left on device"
    assert [p.name for p in report.iterdir()] == ["metrics.json"]
    assert (report / "metrics.json").read_text() == "earlier\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]

    fresh = tmp_path / "new"  # no earlier report: nothing is left behind
    with pytest.raises(OutputError if isinstance(failure, OSError) else KeyboardInterrupt):
        write_folder(fresh, fill)
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


# ----------------------------------------------------------------- item 14: many classes
def test_a_thousand_class_report_is_quick_and_readable(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(3000) % 1000
    data = tmp_path / "many.csv"
    pd.DataFrame({"a": y / 1000 + rng.normal(0, 0.01, 3000), "b": rng.normal(size=3000),
                  "label": [f"class {v}" for v in y]}).to_csv(data, index=False)
    model = tmp_path / "many.barenet"
    result = cli("train", data, "--target", "label", "--out", model, "--epochs", "1", "--layers", "8",
                 timeout=180)  # a full matrix would draw a million labels: many minutes
    assert result.returncode == 0, result.stderr
    width, height = png_size(Path(f"{model}.report") / "confusion_matrix.png")
    assert 600 <= width <= 2000 and 600 <= height <= 2000
    assert len(json.loads((Path(f"{model}.report") / "metrics.json").read_text())["validation"]["per_class"]) == 1000


def test_confusion_figure_pools_classes_and_drops_cell_numbers():
    import matplotlib.pyplot as plt

    from barenet.cli.report import TOP_CLASSES, confusion_figure

    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 1000, 5000)
    y_pred = np.where(rng.random(5000) < 0.5, y_true, rng.integers(0, 1000, 5000))
    fig = confusion_figure(y_true, y_pred, [f"c{i}" for i in range(1000)], "title")
    ax = fig.axes[0]
    assert len(ax.texts) == 0
    assert len(ax.get_xticklabels()) == TOP_CLASSES + 1 and ax.get_xticklabels()[-1].get_text() == "other (970)"
    assert "the other 970 pooled as 'other'" in ax.get_title() and "share of each true class" in ax.get_title()
    plt.close(fig)
    few = confusion_figure(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), ["a", "b", "c"], "title")
    assert sorted(t.get_text() for t in few.axes[0].texts) == ["0", "0", "0", "0", "0", "0", "1", "1", "2"]
    assert few.axes[0].get_title() == "title"
    plt.close(few)


def test_confusion_counts_pool_the_classes_not_shown():
    from sklearn.metrics import confusion_matrix

    from barenet.cli.report import confusion_counts

    rng = np.random.default_rng(1)
    y_true, y_pred = rng.integers(0, 7, 300), rng.integers(0, 7, 300)
    full = confusion_matrix(y_true, y_pred, labels=range(7))
    np.testing.assert_array_equal(confusion_counts(y_true, y_pred, np.arange(7), 7), full)
    shown = np.array([1, 4])
    pooled = confusion_counts(y_true, y_pred, shown, 7)
    rest = np.array([0, 2, 3, 5, 6])
    expected = np.array([[full[1, 1], full[1, 4], full[1, rest].sum()],
                         [full[4, 1], full[4, 4], full[4, rest].sum()],
                         [full[rest, 1].sum(), full[rest, 4].sum(), full[np.ix_(rest, rest)].sum()]])
    np.testing.assert_array_equal(pooled, expected)


# ----------------------------------------------------------------- help, hints and messages
def test_help_shows_every_default():
    import argparse

    from barenet.cli import build_parser

    result = cli("train", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split("options:")[1].split())
    for flag, default in (("--epochs EPOCHS", "50"), ("--layers LAYERS", "64,32"), ("--batch-size BATCH_SIZE", "32"),
                          ("--lr LR", "0.001"), ("--val-split VAL_SPLIT", "0.2"), ("--scale", "standard")):
        after = text[text.index(flag):]
        assert f"(default: {default})" in after[:after.index(" --", len(flag))], flag
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        for action in command._actions:
            if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
                assert f"(default: {action.default})" in (action.help or "") % {"default": action.default}, \
                    (name, action.option_strings)


# ----------------------------------------------------------------- item 22: curves, hints, tune flags
def test_curves_have_whole_epoch_ticks_and_name_the_loss():
    import matplotlib.pyplot as plt

    from barenet.cli.report import LOSS_LABELS, curves_figure

    history = {"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, None, 0.6], "r2": [0.1, 0.5, 0.6]}
    fig = curves_figure(history, "title", LOSS_LABELS["regression"])
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert fig.axes[0].get_title() == "loss (mean squared error of the standardized target)"
    plt.close(fig)


def test_latin1_and_semicolon_csv_files_get_a_hint(tmp_path):
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("ville,temp\nZürich,3\nGenève,5\nBâle,4\n".encode("latin-1"))
    semicolon = tmp_path / "semicolon.csv"
    semicolon.write_text("a;b;label\n1,5;2;x\n2,5;3;y\n3,5;1;x\n")
    semicolon_plain = tmp_path / "semicolon2.csv"
    semicolon_plain.write_text("a;b;label\n1;2;x\n2;3;y\n3;1;x\n")
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes("a,label\n1,x\n2,y\n".encode("utf-16"))
    out = ["--out", tmp_path / "m.barenet"]
    cases = [
        (["train", latin1, "--target", "temp", *out],
         "Latin-1 or Windows-1252 file (as spreadsheets save 'CSV'); convert it to UTF-8, e.g. iconv -f latin1"),
        (["train", semicolon, "--target", "label", *out], "its header row is separated by semicolons, not commas"),
        (["train", semicolon_plain, "--target", "label", *out], "reads as one column named 'a;b;label'"),
        (["train", utf16, "--target", "label", *out], "UTF-16 byte order mark"),
    ]
    for result, (_, fragment) in zip(run_all([args for args, _ in cases]), cases, strict=True):
        assert_one_line_error(result, fragment)


def test_tune_prints_a_train_command_that_runs(tmp_path):
    data = tmp_path / "my flowers.csv"
    flowers(60).to_csv(data, index=False)
    result = cli("tune", data, "--target", "species", "--grid", "layers=4|6 lr=0.01 activation=sigmoid",
                 "--cv", "2", "--epochs", "2", "--seed", "7", "--batch-size", "16")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2] == "train it on the whole table with:"
    words = shlex.split(lines[-1])
    best = "4" if lines[-3].startswith("best: --layers 4 ") else "6"
    assert words == ["barenet", "train", str(data), "--target", "species", "--task", "classification", "--layers",
                     best, "--activation",
                     "sigmoid", "--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--seed", "7", "--out",
                     "model.barenet"]
    words[-1] = str(tmp_path / "model.barenet")
    trained = cli(*words[1:])
    assert trained.returncode == 0, trained.stderr
    assert bn.load(tmp_path / "model.barenet").metadata["training"]["seed"] == 7


def test_tune_command_repeats_every_grid_value_of_the_best_line_even_a_default(tmp_path):
    data = tmp_path / "flowers.csv"
    flowers(40).to_csv(data, index=False)
    result = cli("tune", data, "--target", "species", "--grid", "layers=64,32 lr=0.001 batch-norm=false",
                 "--cv", "2", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-3].startswith("best: --layers 64,32 --lr 0.001 (accuracy ")  # train's defaults, all three
    words = shlex.split(lines[-1])
    assert words[words.index("--layers") + 1] == "64,32" and words[words.index("--lr") + 1] == "0.001"
    assert "--batch-norm" not in words  # false has no flag, in the best: line or in the command


# ----------------------------------------------------------------- item 13: a fuzzer over the flags
def _number_texts():
    from hypothesis import strategies as st

    return st.one_of(st.sampled_from(["0", "-1", "0.5", "1e400", "-1e400", "nan", "inf", "x", "", "1e-320", "0.99"]),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr))


def _int_texts(valid: list[str]):
    from hypothesis import strategies as st

    return st.one_of(st.sampled_from([*valid, "-1", "0", "x", "1.5", "", "1" * 40]),
                     st.integers(-(2**70), 2**70).map(str))


def _flags():
    """``barenet`` argument lists: real commands with random values and combinations of their flags."""
    from hypothesis import strategies as st

    seeds = st.one_of(st.integers(-(2**70), 2**70).map(str), st.sampled_from(["0", "x", "-0", "4294967295"]))
    paths = st.sampled_from(["{tmp}/m.barenet", "{tmp}/a_file.txt", "{tmp}/a_file.txt/m", "{tmp}/folder",
                             "{tmp}/no/such/m", "{tmp}/m.barenet.report", "{tmp}/fifo", ""])
    train_flags = {
        "--layers": st.one_of(st.sampled_from(["", "none", "4", "4,3", "0", "x", "4,,3", "100001", "1" * 40,
                                               "90000,90000", " 3 "]), st.integers(-5, 10**12).map(str)),
        "--epochs": st.sampled_from(["-1", "0", "1", "2", "x", "1.5", ""]),  # a huge count is valid, and slow
        "--batch-size": _int_texts(["1", "7", "1000"]),
        "--lr": _number_texts(), "--l2": _number_texts(), "--dropout": _number_texts(),
        "--val-split": _number_texts(), "--seed": seeds,
        "--activation": st.sampled_from(["relu", "tanh", "linear", "bogus"]),
        "--optimizer": st.sampled_from(["adam", "sgd", "rmsprop", "adamw", "bogus"]),
        "--scale": st.sampled_from(["standard", "minmax", "none", "log"]),
        "--task": st.sampled_from(["auto", "classification", "regression", "bogus"]),
        "--early-stopping": st.sampled_from(["-1", "0", "1", "x"]),
        "--report": paths,
    }
    tune_flags = {
        "--grid": st.one_of(st.sampled_from(["layers=4", "layers=4|3,2 lr=0.01|nan", "lr=inf", "layers=1" + "0" * 12,
                                             "epochs=1|-1", "batch-size=0", "dropout=2", "optimizer=bogus",
                                             "activation=logistic batch-norm=maybe", "layers=90000,90000", "a=b=c",
                                             "", "alpha=-1", "l2=1e400"]), st.text(max_size=20)),
        "--cv": st.sampled_from(["-1", "0", "1", "2", "3", "x", "1000"]),
        "--epochs": st.sampled_from(["-1", "0", "1", "x"]),
        "--seed": seeds, "--task": train_flags["--task"], "--scale": train_flags["--scale"],
    }
    switches = {"train": ["--batch-norm", "--force"], "tune": [], "predict": ["--proba", "--force"],
                "evaluate": ["--force"], "demo": []}

    @st.composite
    def argv(draw) -> list[str]:
        command = draw(st.sampled_from(["train", "train", "train", "tune", "tune", "predict", "evaluate", "demo"]))
        data = draw(st.sampled_from(["{data}/flowers.csv", "{data}/flowers.csv", "{data}/missing.csv"]))
        target = draw(st.sampled_from(["species", "species", "petal", "nope"]))
        words = {"train": [command, data, "--target", target, "--out", draw(paths)],
                 "tune": [command, data, "--target", target],
                 "predict": [command, "{data}/model.barenet", data, "--out", draw(paths)],
                 "evaluate": [command, "{data}/model.barenet", data, "--target", target, "--report", draw(paths)],
                 "demo": [command, "--epochs", draw(st.sampled_from(["-1", "0", "x", "1.5"]))]}[command]
        if command == "tune":
            words += ["--grid", draw(tune_flags["--grid"])]
        flags = {"train": train_flags, "tune": tune_flags}.get(command, {"--seed": seeds})
        chosen = draw(st.lists(st.sampled_from(sorted(flags)), max_size=6, unique=True))
        for flag in chosen:
            words.append(f"{flag}={draw(flags[flag])}")
        if switches[command]:
            words += draw(st.lists(st.sampled_from(switches[command]), max_size=2, unique=True))
        if command == "train" and "--epochs" not in chosen:
            words += ["--epochs", "1"]  # keep every run short; --epochs itself is fuzzed above
        if command == "tune":
            words += ["--epochs", "1"] if "--epochs" not in chosen else []
            words += ["--cv", "2"] if "--cv" not in chosen else []
        return words

    return argv()


def _run_main(argv: list[str]) -> tuple[int, str]:
    """``barenet ARGV`` as the entry point runs it; the exit status and stderr."""
    import contextlib
    import io

    from barenet.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse: --help, or a usage error already written to stderr
            status = exc.code if isinstance(exc.code, int) else 1
    return status, err.getvalue()


def test_fuzzed_flags_end_in_a_status_never_a_traceback(tmp_path_factory):
    """Random values and combinations of flags: exit 0, 1, 2 or 130, a one-line error for 2, no exception."""
    import tempfile
    import warnings

    from hypothesis import HealthCheck, given, settings

    shared = tmp_path_factory.mktemp("fuzz-data")
    flowers(40).to_csv(shared / "flowers.csv", index=False)
    status, err = _run_main(["train", str(shared / "flowers.csv"), "--target", "species", "--out",
                             str(shared / "model.barenet"), "--epochs", "1", "--layers", "3"])
    assert status == 0, err
    root = tmp_path_factory.mktemp("fuzz")

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_flags())
    def check(template: list[str]) -> None:
        tmp = Path(tempfile.mkdtemp(dir=root))
        (tmp / "a_file.txt").write_text("keep\n")
        (tmp / "folder").mkdir()
        os.mkfifo(tmp / "fifo")
        argv = [w.replace("{tmp}", str(tmp)).replace("{data}", str(shared)) for w in template]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status, err = _run_main(argv)
        assert status in (0, 1, 2, 130), (argv, status, err)
        assert "Traceback" not in err, (argv, err)
        if status == 2:
            lines = [line for line in err.splitlines() if line.startswith("barenet: error:")]
            assert len(lines) == 1, (argv, err)
        assert "--force" in argv or (tmp / "a_file.txt").read_text() == "keep\n", argv
        assert not (tmp / "fifo").is_file(), argv

    check()
