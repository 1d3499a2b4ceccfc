"""Reading the members of an untrusted zip archive with hard limits, and ``.npy`` headers without ``eval``.

Every read here is capped *before* it happens: a member is read in chunks of at most
:data:`CHUNK` bytes and never past the size its zip entry declares (so a member that inflates
far beyond its entry's claim costs one chunk, not its whole inflated size), and a ``.npy``
header is parsed by a small strict parser of the one dict literal NumPy writes, never by
Python's tokenizer. Everything wrong raises :class:`~barenet.errors.ModelFileError`.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from typing import IO

import numpy as np

from .errors import ModelFileError

#: Bytes inflated per read: bounds the memory a single read of a hostile member can take.
CHUNK = 1 << 20
#: The longest ``.npy`` header accepted (NumPy writes a few hundred bytes at most for our arrays).
MAX_NPY_HEADER = 1 << 16
_MAGIC = b"\x93NUMPY"
_SUPPORTED = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)

# One entry of the header's dict literal: a quoted key, then a quoted string, a boolean or a tuple of integers.
_ENTRY = re.compile(r"\s*'(\w{1,32})'\s*:\s*('[^'\\]{0,64}'|True|False|\((?:\s*\d{1,19}\s*,)*(?:\s*\d{1,19}\s*)?\))"
                    r"\s*(?:,|$)")
_DESCR = re.compile(r"[<>|=]?[a-zA-Z]\d{0,2}")


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` member declares: ``dtype``, ``shape``, memory order, and where its data starts."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int

    @property
    def nbytes(self) -> int:
        """Bytes of data the header implies (Python integers: no overflow)."""
        count = 1
        for n in self.shape:
            count *= n
        return count * self.dtype.itemsize


def check_entry(info: zipfile.ZipInfo) -> None:
    """Refuse entries this reader does not inflate with a bound (bzip2, lzma, encrypted ones)."""
    if info.compress_type not in _SUPPORTED:
        raise ModelFileError(f"{info.filename} uses zip compression method {info.compress_type}; "
                             "only stored and deflated members are read")
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{info.filename} is encrypted; barenet model files are never encrypted")


def read_capped(stream: IO[bytes], size: int, what: str) -> bytes:
    """Exactly ``size`` bytes from ``stream``, inflated at most :data:`CHUNK` bytes at a time.

    Raises :class:`ModelFileError` when the stream ends early.
    """
    parts, left = [], size
    while left > 0:
        part = stream.read(min(left, CHUNK))
        if not part:
            raise ModelFileError(f"{what} ends after {size - left} of its {size} bytes: truncated or corrupt")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def read_into(stream: IO[bytes], out: memoryview, what: str) -> None:
    """Fill the byte view ``out`` from ``stream`` chunk by chunk (no second copy of the data in memory)."""
    done, size = 0, len(out)
    while done < size:
        part = stream.read(min(size - done, CHUNK))
        if not part:
            raise ModelFileError(f"{what} ends after {done} of its {size} data bytes: truncated or corrupt")
        out[done:done + len(part)] = part
        done += len(part)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The whole content of a (small) member such as the JSON description, refused above ``limit`` bytes."""
    check_entry(info)
    if info.file_size > limit:
        raise ModelFileError(f"{info.filename} is {info.file_size} bytes; at most {limit} allowed")
    with archive.open(info) as stream:
        data = read_capped(stream, info.file_size, info.filename)
        # The last read checks the CRC; a stream that still has data lied about its size.
        if stream.read(1):
            raise ModelFileError(f"{info.filename} holds more than the {info.file_size} bytes its entry declares")
    return data


def read_npy_header(stream: IO[bytes], member_size: int, what: str) -> NpyHeader:
    """Parse the magic string and header of a ``.npy`` stream (format versions 1.0 and 2.0).

    The header is a Python dict literal such as ``{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }``
    padded with spaces; it is matched entry by entry against the only forms NumPy writes, so no
    input can reach a general-purpose parser. ``member_size`` (the zip entry's declared size) caps the read.
    """
    def fail(reason: str) -> ModelFileError:
        return ModelFileError(f"{what} is not a valid .npy array: {reason}")

    prefix = read_capped(stream, min(10, member_size), what) if member_size >= 10 else b""
    if len(prefix) < 10 or not prefix.startswith(_MAGIC):
        raise fail("it does not start with the .npy magic string")
    major, minor = prefix[6], prefix[7]
    if (major, minor) == (1, 0):
        length, start = int.from_bytes(prefix[8:10], "little"), 10
    elif (major, minor) == (2, 0):
        extra = read_capped(stream, 2, what) if member_size >= 12 else b""
        if len(extra) < 2:
            raise fail("the header length is cut off")
        length, start = int.from_bytes(prefix[8:10] + extra, "little"), 12
    else:
        raise fail(f".npy format version {major}.{minor} is not supported (1.0 and 2.0 are)")
    if length > MAX_NPY_HEADER or start + length > member_size:
        raise fail(f"its header claims {length} bytes, more than the member holds or {MAX_NPY_HEADER} allowed")
    text = read_capped(stream, length, what).decode("latin1")  # every byte decodes
    return _parse_header(text, start + length, fail)


def _parse_header(text: str, data_offset: int, fail) -> NpyHeader:
    body = text.rstrip(" \n")
    if not (body.startswith("{") and body.endswith("}")):
        raise fail(f"the header is not a dict literal: {text[:60]!r}")
    entries: dict[str, str] = {}
    pos, end = 1, len(body) - 1
    while pos < end and body[pos:end].strip():
        match = _ENTRY.match(body, pos, end)
        if match is None:
            raise fail(f"cannot read the header at {body[pos:pos + 40]!r}")
        key, value = match.group(1), match.group(2)
        if key in entries:
            raise fail(f"the header repeats the key {key!r}")
        entries[key] = value
        pos = match.end()
    if set(entries) != {"descr", "fortran_order", "shape"}:
        raise fail(f"the header has keys {sorted(entries)}; expected ['descr', 'fortran_order', 'shape']")
    descr, order, shape_text = entries["descr"], entries["fortran_order"], entries["shape"]
    if not descr.startswith("'") or not _DESCR.fullmatch(descr[1:-1]):
        raise fail(f"descr {descr} is not a simple dtype")
    if order not in ("True", "False"):
        raise fail(f"fortran_order is {order}; expected True or False")
    if not shape_text.startswith("("):
        raise fail(f"shape is {shape_text}; expected a tuple of integers")
    try:
        dtype = np.dtype(descr[1:-1])
    except TypeError:
        raise fail(f"descr {descr} is not a dtype") from None
    shape = tuple(int(n) for n in shape_text[1:-1].replace(",", " ").split())
    return NpyHeader(dtype=dtype, shape=shape, fortran_order=order == "True", data_offset=data_offset)
