"""Writing output files, the one way every writer in barenet does it (models, checkpoints, ONNX files and
the command line's outputs).

* **The folder must exist.** barenet creates no folder on its way to an output: a missing one (or a
  file where a folder is needed, or a folder that cannot be written) is an
  :class:`~barenet.errors.OutputError` naming it, raised before anything is written.
* **Whole or not at all.** The content goes to a hidden file beside the target, is fsynced and
  renamed over it; if anything fails on the way (a full disk, Ctrl-C) the hidden file is removed and
  a previous file at the path is left as it was.
* **Ordinary permissions.** The hidden file is created as a plain ``open`` creates a file (mode
  ``0o666`` less the umask), and a file that is replaced passes its permission bits on, as a plain
  ``open`` that truncates it would keep them.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import BarenetError, OutputError


@contextmanager
def output_errors(what: str, path: str | os.PathLike) -> Iterator[None]:
    """Re-raise an ``OSError`` from the block as ``OutputError("cannot write {what} {path}: {reason}")``."""
    try:
        yield
    except BarenetError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {what} {str(path)!r}: {exc.strerror or exc}") from None


def _nearest_existing(path: Path) -> Path:
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path("/")


def check_folder(path: str | os.PathLike, what: str) -> None:
    """Raise :class:`OutputError` unless the folder that is to hold ``path`` exists, is a folder and can
    be written to (``what`` names the output in the message: ``"model file"``, ``"report folder"``).
    A path the system cannot take (a NUL character, a name too long) is an :class:`OutputError` too."""
    path = _usable(path, what)
    with output_errors(what, path):
        folder = path.parent
        if not folder.exists():
            ancestor = _nearest_existing(path)
            if not ancestor.is_dir():
                raise OutputError(f"cannot write {what} {str(path)!r}: {str(ancestor)!r} is a file, not a folder")
            raise OutputError(f"cannot write {what} {str(path)!r}: folder {str(folder)!r} does not exist; create "
                              "it first (barenet creates no folders for its outputs)")
        if not folder.is_dir():
            raise OutputError(f"cannot write {what} {str(path)!r}: {str(folder)!r} is a file, not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {what} {str(path)!r}: folder {str(folder)!r} is not writable")


def _usable(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a :class:`Path`; a NUL character, which no system call takes, is an :class:`OutputError`."""
    if "\x00" in os.fspath(path):
        raise OutputError(f"cannot write {what} {os.fspath(path)!r}: a path cannot hold a NUL character")
    return Path(path)


def check_output_path(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a :class:`Path` after checking that a file can be written there: it is not a folder,
    and its folder passes :func:`check_folder`."""
    path = _usable(path, what)
    with output_errors(what, path):
        if path.is_dir():
            raise OutputError(f"{what} {str(path)!r} is a folder; give a file name")
    check_folder(path, what)
    return path


def sibling(path: Path, tag: str) -> Path:
    """A hidden name beside ``path`` that keeps its suffixes (pandas infers compression from them)."""
    return path.parent / f".{tag}-{secrets.token_hex(4)}-{path.name}"


def fsync_path(path: Path) -> None:
    """fsync a file, or a folder where the platform lets one be opened (raises ``OSError`` otherwise)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike, write: Callable[[Path], None], what: str) -> None:
    """Call ``write(target)`` so that the file ``path`` is written whole or not at all.

    ``target`` is an empty hidden file beside ``path`` (same suffixes), created with the permissions a
    plain ``open`` would give ``path``; ``write`` opens it by name and fills it. It is then fsynced and
    renamed over ``path``. ``path`` is checked first (:func:`check_output_path`); an ``OSError`` becomes
    an :class:`OutputError` naming ``what`` and ``path``.
    """
    path = check_output_path(path, what)
    with output_errors(what, path):
        keep_mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else None
        while True:
            target = sibling(path, "tmp")
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies
                break
            except FileExistsError:
                continue
        try:
            if keep_mode is not None:
                os.chmod(target, keep_mode)
            write(target)
            fsync_path(target)
            os.replace(target, path)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    try:
        fsync_path(path.parent)  # makes the rename durable
    except OSError:
        pass
