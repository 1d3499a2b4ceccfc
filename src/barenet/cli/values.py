"""Checks of the command line's numeric flag values: seeds, finite numbers, network sizes.

Each ``argparse`` type here turns a bad value into one ``barenet: error: argument --x: ...`` line
(exit status 2) before any file is read.
"""

from __future__ import annotations

import argparse
import math

from ..errors import ConfigError

#: Seeds reach NumPy's generator and scikit-learn's ``random_state``; the latter takes [0, 2**32 - 1].
SEED_MAX = 2**32 - 1
#: Units of one hidden layer. A wider layer of float64 weights on even 100 inputs is 80 MB, and two are 80 GB.
MAX_UNITS = 100_000
#: Weights and biases of the whole network: 400 MB in float64, about 1.6 GB with gradients and Adam's moments.
MAX_PARAMETERS = 50_000_000


def seed(text: str) -> int:
    """``--seed``: an integer in ``[0, 2**32 - 1]``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {SEED_MAX}], got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, {SEED_MAX}] (2**32 - 1), got {value}")
    return value


def finite_number(text: str) -> float:
    """A float flag (``--lr``, ``--l2``, ...): any finite number; ``nan`` and ``inf`` are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def count_parameters(n_inputs: int, hidden: list[int], n_outputs: int) -> int:
    """Weights and biases of ``Dense`` layers ``n_inputs -> hidden[0] -> ... -> n_outputs``."""
    sizes = [n_inputs, *hidden, n_outputs]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))


def check_parameter_budget(n_inputs: int, hidden: list[int], n_outputs: int) -> None:
    """Refuse, before anything is allocated, a network with more than :data:`MAX_PARAMETERS` parameters."""
    total = count_parameters(n_inputs, hidden, n_outputs)
    if total > MAX_PARAMETERS:
        shape = " -> ".join(map(str, [n_inputs, *hidden, n_outputs]))
        raise ConfigError(f"the network {shape} would have {total:,} parameters; the command line's limit is "
                          f"{MAX_PARAMETERS:,} (400 MB of float64 weights); choose smaller --layers")
