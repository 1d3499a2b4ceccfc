"""Output paths of the command line: checked before any training starts, written whole or not at all.

The rules are the library's (:mod:`barenet._output`): an output's folder must exist (none is
created), and a file is written whole, with the permissions a plain ``open`` gives. On top of them:

* :func:`check_output_file` and :func:`check_report_folder` refuse, after the inputs were checked
  and before training, an output that cannot be written: a file where a folder is needed and the
  reverse, a missing or read-only folder, a device that an atomic rename would replace, a folder that
  holds anything but an earlier report, and an output the user named that exists without ``--force``.
* :func:`write_folder` fills a fresh hidden sibling folder and renames it into place, so a report
  folder holds exactly the files of one run; if anything fails, the earlier folder is left as it
  was (or nothing is left, when there was none).
* :func:`write_file` does the same for one file (or writes into a device such as ``/dev/stdout``);
  :func:`output_errors` turns an ``OSError`` from writing (a full disk, a lost permission) into one
  :class:`~barenet.errors.OutputError` line.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TypeVar

from .. import _output
from .._output import check_folder, fsync_path, output_errors, sibling
from ..errors import ConfigError, OutputError

__all__ = ["check_output_file", "check_report_folder", "output_errors", "write_file", "write_folder"]

T = TypeVar("T")


def check_output_file(path: str | os.PathLike, force: bool, what: str, *, devices_ok: bool = False) -> Path:
    """Check that the file ``path`` can be written; return it as a :class:`Path`.

    An existing file needs ``force``. An existing device, pipe or socket is refused unless
    ``devices_ok`` (the output is then written into it, not renamed over it).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {str(path)!r} is a folder; give a file name")
    exists = path.exists() or path.is_symlink()
    if exists and not force:
        raise ConfigError(f"{what} {str(path)!r} already exists; pass --force to overwrite it")
    if exists and not path.is_file() and not devices_ok:
        raise OutputError(f"{what} {str(path)!r} is not a regular file (a device, pipe or socket), which saving "
                          "would replace; give a file name")
    if not (exists and not path.is_file()):
        check_folder(path, what)
    return path


def check_report_folder(path: str | os.PathLike, force: bool, allowed: Collection[str], *,
                        default: bool = False) -> Path:
    """Check that the report folder ``path`` can be written; return it as a :class:`Path`.

    An existing folder may hold only files named in ``allowed`` (the files a report writes): a report
    replaces an earlier report, never a folder of other files. A folder the user named (``--report``)
    is replaced only with ``force``; the ``default`` one, named by barenet after the model
    (``MODEL.report``, ``MODEL.evaluation``), is replaced without it, so that running a command again
    just works.
    """
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise OutputError(f"report folder {str(path)!r} exists and is not a folder; remove it or give another "
                          "--report")
    if path.exists():
        if not force and not default:
            raise ConfigError(f"report folder {str(path)!r} already exists; pass --force to overwrite it")
        try:
            strangers = sorted(e.name for e in path.iterdir() if e.name not in allowed or not e.is_file())
        except OSError as exc:
            raise OutputError(f"cannot read report folder {str(path)!r}: {exc.strerror or exc}") from None
        if strangers:
            shown = ", ".join(repr(n) for n in strangers[:5]) + (", ..." if len(strangers) > 5 else "")
            replaces = "a report" if default and not force else "--force"
            raise OutputError(f"report folder {str(path)!r} holds {shown}, which no report writes; {replaces} "
                              "replaces only an earlier report; remove them or give another --report")
    check_folder(path, "report folder")
    return path


def write_folder(path: str | os.PathLike, fill: Callable[[Path], T]) -> T:
    """Call ``fill(folder)`` on a fresh sibling folder, then put it in place of ``path``; return its result.

    The old folder at ``path`` (if any) is moved aside, the new one renamed in, and the old one
    deleted: two renames on one file system. If ``fill`` or a rename fails (or Ctrl-C lands), the
    new folder is deleted and the old one is back at ``path``.
    """
    path = Path(path)
    check_folder(path, "report folder")
    with output_errors("report folder", path):
        while True:
            fresh = sibling(path, "tmp")
            try:
                fresh.mkdir()  # unlike mkdtemp, mkdir applies the umask: the report gets normal permissions
                break
            except FileExistsError:
                continue
    old: Path | None = None
    try:
        with output_errors("report folder", path):
            result = fill(fresh)
            for entry in fresh.iterdir():
                fsync_path(entry)
            if path.exists():
                old = sibling(path, "old")
                os.rename(path, old)
            os.rename(fresh, path)
    except BaseException:
        if old is not None and not path.exists():
            os.rename(old, path)
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    try:
        fsync_path(path.parent)  # makes the rename durable where the platform lets a folder be opened
    except OSError:
        pass
    return result


def write_file(path: str | os.PathLike, write: Callable[[Path], None], what: str) -> None:
    """Call ``write(target)`` so that ``path`` is written whole or not at all.

    A regular (or new) file is written by :func:`barenet._output.write_file`: to a sibling, renamed over
    ``path``; a device or pipe (``/dev/stdout``) is written in place. ``OSError`` becomes :class:`OutputError`.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        with output_errors(what, path):
            write(path)
        return
    _output.write_file(path, write, what)
