"""Which optional packages each command needs, checked before the command starts.

``pip install barenet`` brings NumPy only. The commands that read tables, split data, score or
draw need the ``cli`` extra; without it they say so in one line (exit status 2) instead of
failing with a ``ModuleNotFoundError`` half-way through.
"""

from __future__ import annotations

import importlib.util

from ..errors import ConfigError

#: import name -> the name pip knows it by
PACKAGES = {"pandas": "pandas", "sklearn": "scikit-learn", "matplotlib": "matplotlib",
            "dask": "dask", "distributed": "distributed"}

#: command -> (modules it imports, the extra that brings them)
NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "train": (("pandas", "sklearn", "matplotlib"), "cli"),
    "evaluate": (("pandas", "sklearn", "matplotlib"), "cli"),
    "predict": (("pandas",), "cli"),
    "tune": (("pandas", "sklearn"), "cli"),
    "demo": (("sklearn",), "cli"),
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install counts as missing
        return False


def require(command: str, *, scheduler: bool = False) -> None:
    """Raise :class:`ConfigError` naming the missing packages and the extra to install for ``command``."""
    modules, extra = NEEDS.get(command, ((), ""))
    if scheduler:
        modules, extra = (*modules, "dask", "distributed"), "cli,dask"
    missing = [PACKAGES[m] for m in modules if not _installed(m)]
    if missing:
        raise ConfigError(f"'barenet {command}' needs {', '.join(missing)}, which a plain install leaves out; "
                          f'install them with: pip install "barenet[{extra}]"')
