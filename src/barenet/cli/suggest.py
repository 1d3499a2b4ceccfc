"""The ``barenet train`` command line for a setting found by ``barenet tune``.

``tune`` ends with the best candidate written as flags, so the user can paste it and train that
model on the whole table: ``barenet train DATA --target T --layers 64,32 --lr 0.01 ... --out MODEL``.
"""

from __future__ import annotations

import shlex
from typing import Any

#: ``--grid`` key -> ``barenet train`` flag (``batch-norm`` is a switch: present when true)
TRAIN_FLAGS = {"layers": "--layers", "lr": "--lr", "alpha": "--l2", "l2": "--l2", "activation": "--activation",
               "batch-size": "--batch-size", "dropout": "--dropout", "batch-norm": "--batch-norm",
               "epochs": "--epochs", "optimizer": "--optimizer"}


#: scikit-learn's activation names, which tune accepts, as ``barenet train`` spells them
_ACTIVATIONS = {"logistic": "sigmoid", "identity": "linear"}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return _ACTIVATIONS.get(value, value)
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def train_command(data: str, target: str, setting: dict[str, Any], *, epochs: int, scale: str, task: str,
                  seed: int, out: str = "model.barenet") -> str:
    """A shell-quoted ``barenet train`` line for ``setting`` (``--grid`` key -> value) and tune's other flags.

    >>> train_command("my data.csv", "y", {"layers": (64, 32), "batch-norm": False}, epochs=9, scale="none",
    ...               task="auto", seed=0, out="m")
    "barenet train 'my data.csv' --target y --layers 64,32 --epochs 9 --scale none --seed 0 --out m"
    """
    words = ["barenet", "train", data, "--target", target]
    for key, value in setting.items():
        flag = TRAIN_FLAGS[key]
        if key == "batch-norm":
            words += [flag] if value else []
        else:
            words += [flag, _text(value)]
    if "epochs" not in setting:
        words += ["--epochs", str(epochs)]
    words += ["--scale", scale] + (["--task", task] if task != "auto" else []) + ["--seed", str(seed), "--out", out]
    return shlex.join(words)
