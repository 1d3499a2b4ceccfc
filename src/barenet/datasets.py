"""Loaders for real data sets, read from local files (barenet never downloads).

:func:`load_fashion_mnist` reads Fashion-MNIST from its four standard IDX files; :func:`read_idx`
reads any IDX file, gzipped or raw.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import DataError

#: IDX type codes and the big-endian NumPy dtypes they stand for.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: The names of the ten Fashion-MNIST classes, indexed by label.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
_INSTALL_HINT = ("install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four "
                 "files (optionally .gz) in a folder and set BARENET_DATA to it")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped when its name ends in ``.gz``) into an array.

    Returns
    -------
    ndarray
        Of the shape in the header and the native-byte-order form of the header's dtype
        (``uint8`` for images and labels).

    Notes
    -----
    The IDX format: two zero bytes, a type code (``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16,
    ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), the number of dimensions :math:`d`,
    :math:`d` big-endian uint32 sizes, then the values in C order, big-endian. The file must hold
    exactly :math:`\\prod_k n_k` values, no more and no fewer.

    Raises
    ------
    DataError
        The file is missing, not gzip when named ``.gz``, or its header or size is invalid.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise DataError(f"IDX file {str(path)!r} does not exist or is not a file")
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as stream:
                raw = stream.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read IDX file {str(path)!r}: {exc}") from None
    return parse_idx(raw, str(path))


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse the bytes of an IDX file; see :func:`read_idx` for the format."""
    if len(raw) < 4:
        raise DataError(f"{name} is {len(raw)} bytes, shorter than the 4-byte IDX magic number")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name} does not start with an IDX magic number (00 00 type ndim); got {raw[:4].hex(' ')}")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{name} has IDX type code 0x{code:02X}; expected one of {known}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name} declares {ndim} dimensions but is only {len(raw)} bytes, too short for the sizes")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{name} has shape {shape} of {dtype.newbyteorder('=').name}, which needs {expected} data "
                        f"bytes, but holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _candidate_dirs(path: str | os.PathLike | None) -> list[Path]:
    if path is not None:
        return [Path(os.fspath(path))]
    env = os.environ.get("BARENET_DATA")
    if env:
        return [Path(env), Path(env) / "fashion-mnist"]
    return [DEFAULT_DATA_DIR]


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _missing(folder: Path) -> list[str]:
    return [stem for stem in FASHION_MNIST_FILES.values() if _find(folder, stem) is None]


def load_fashion_mnist(path: str | os.PathLike | None = None) -> tuple[tuple[np.ndarray, np.ndarray],
                                                                       tuple[np.ndarray, np.ndarray]]:
    """Load Fashion-MNIST (Xiao et al., 2017) from local IDX files.

    Parameters
    ----------
    path : str or PathLike, optional
        Folder holding the four standard files (``train-images-idx3-ubyte`` ... ``t10k-labels-idx1-ubyte``,
        each gzipped with ``.gz`` or raw). Without it, ``$BARENET_DATA`` (the folder itself or its
        ``fashion-mnist`` subfolder) is tried, else ``/usr/share/datasets/fashion-mnist``.

    Returns
    -------
    (X_train, y_train), (X_test, y_test)
        ``X : uint8 (n, 28, 28)`` pixel intensities 0..255 and ``y : uint8 (n,)`` labels 0..9
        (names in :data:`FASHION_MNIST_CLASSES`); 60,000 training and 10,000 test images.

    Raises
    ------
    DataError
        The files are absent (the message lists where it looked and how to install them), or a file
        is not a valid IDX file of the expected kind, or label and image counts differ.
    """
    folders = _candidate_dirs(path)
    folder = next((f for f in folders if not _missing(f)), None)
    if folder is None:
        looked = "; ".join(f"{str(f)!r} (missing: {', '.join(_missing(f))})" for f in folders)
        raise DataError(f"Fashion-MNIST files not found. Looked in {looked}. To get the data set, {_INSTALL_HINT}")
    arrays = {key: read_idx(_find(folder, stem)) for key, stem in FASHION_MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        where = _find(folder, FASHION_MNIST_FILES[f"{split}_images"])
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{where} holds {images.dtype} images of shape {images.shape}; expected uint8 "
                            "(n, 28, 28)")
        where = _find(folder, FASHION_MNIST_FILES[f"{split}_labels"])
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(f"{where} holds {labels.dtype} labels of shape {labels.shape}; expected uint8 (n,)")
        if len(labels) != len(images):
            raise DataError(f"the {split} split has {len(images)} images but {len(labels)} labels; they must match")
        if len(labels) and labels.max() > 9:
            raise DataError(f"{where} has label {int(labels.max())}; Fashion-MNIST labels are 0..9")
    return (arrays["train_images"], arrays["train_labels"]), (arrays["test_images"], arrays["test_labels"])


__all__ = ["FASHION_MNIST_CLASSES", "IDX_DTYPES", "load_fashion_mnist", "parse_idx", "read_idx"]
