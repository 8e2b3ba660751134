"""The voltloop array blob: named 1-D numeric columns in one compressed byte string.

Used for each cycle's raw series (t, V, I, T, ...) and each EIS spectrum. The
format is self-describing and versioned, so a reader never needs pickle or the
code that wrote it (docs/database.md, "Blob format")::

    offset  size  field
    0       4     magic b"VLAB"
    4       1     format version (1)
    5       1     codec: 0 = none, 1 = zlib
    6       1     flags: bit 0 = byte-shuffled columns
    7       1     column count C (1..255)
    8       4     row count N (uint32, little-endian)
    12      4     CRC-32 of the uncompressed payload (uint32, little-endian)
    16      2     column table length H (uint16, little-endian)
    18      H     C entries: name length (1 byte), name (ASCII), dtype (3 ASCII bytes, e.g. "<f4")
    18+H    ...   payload, compressed with the codec

The uncompressed payload is the columns one after another, each N little-endian
values of its dtype. With byte shuffling a column of itemsize k is stored as k
planes (all first bytes, then all second bytes, ...), which lets zlib find the
slowly varying high bytes of smooth measurement series.
"""

from __future__ import annotations

import enum
import re
import struct
import zlib
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from .errors import BlobFormatError

MAGIC = b"VLAB"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBBBBIIH")  # magic, version, codec, flags, C, N, crc, H
_FLAG_SHUFFLE = 0x01
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: dtypes a blob may hold: little-endian integers and floats. Nothing else (no objects).
ALLOWED_DTYPES = frozenset(
    {"<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "<f4", "<f8", "|i1", "|u1"}
)


class Codec(enum.IntEnum):
    NONE = 0
    ZLIB = 1


def encode_arrays(
    columns: Mapping[str, ArrayLike],
    *,
    codec: Codec = Codec.ZLIB,
    level: int = 1,
    shuffle: bool = True,
    strategy: int = zlib.Z_DEFAULT_STRATEGY,
) -> bytes:
    """Pack equal-length 1-D numeric columns (each shape ``(N,)``) into one blob.

    Each column keeps its own dtype (converted to little-endian). ``level`` and
    ``strategy`` tune zlib (e.g. ``zlib.Z_RLE``); any choice gives a standard zlib
    stream, so readers need no option (docs/decisions/0011-array-blob-format.md).
    """
    if not columns:
        raise BlobFormatError("an array blob needs at least one column")
    if len(columns) > 255:
        raise BlobFormatError(f"an array blob holds at most 255 columns, got {len(columns)}")
    arrays: list[np.ndarray] = []
    table = bytearray()
    n_rows: int | None = None
    for name, values in columns.items():
        if not _NAME.match(name):
            raise BlobFormatError(f"column name {name!r} is not an identifier of up to 64 chars")
        array = np.asarray(values)
        if array.ndim != 1:
            raise BlobFormatError(f"column {name!r} must be 1-D, got shape {array.shape}")
        if array.dtype.kind not in "iuf":
            raise BlobFormatError(f"column {name!r} has dtype {array.dtype}; need int or float")
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        code = array.dtype.str
        if code not in ALLOWED_DTYPES:
            raise BlobFormatError(f"column {name!r} has unsupported dtype {code}")
        if n_rows is None:
            n_rows = array.shape[0]
        elif array.shape[0] != n_rows:
            raise BlobFormatError(
                f"column {name!r} has {array.shape[0]} rows, the first column has {n_rows}"
            )
        encoded_name = name.encode("ascii")
        table += bytes([len(encoded_name)]) + encoded_name + code.encode("ascii")
        arrays.append(array)
    assert n_rows is not None
    if n_rows >= 2**32:
        raise BlobFormatError(f"an array blob holds fewer than 2**32 rows, got {n_rows}")
    parts = [_shuffle(a) if shuffle else a.tobytes() for a in arrays]
    payload = b"".join(parts)
    crc = zlib.crc32(payload)
    if codec == Codec.ZLIB:
        if strategy == zlib.Z_DEFAULT_STRATEGY:
            stored = zlib.compress(payload, level)
        else:
            compressor = zlib.compressobj(level, zlib.DEFLATED, 15, 8, strategy)
            stored = compressor.compress(payload) + compressor.flush()
    elif codec == Codec.NONE:
        stored = payload
    else:  # pragma: no cover - IntEnum guards this
        raise BlobFormatError(f"unknown codec {codec!r}")
    flags = _FLAG_SHUFFLE if shuffle else 0
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, int(codec), flags, len(arrays), n_rows, crc, len(table)
    )
    return header + bytes(table) + stored


def decode_arrays(blob: bytes | bytearray | memoryview) -> dict[str, np.ndarray]:
    """Unpack a blob made by :func:`encode_arrays` into ``{name: array of shape (N,)}``.

    Raises :class:`BlobFormatError` for anything that is not a valid version-1 blob
    (wrong magic, unknown version/codec/dtype, truncated data, checksum mismatch).
    """
    data = bytes(blob)
    if len(data) < _HEADER.size:
        raise BlobFormatError(f"array blob too short ({len(data)} bytes)")
    magic, version, codec, flags, n_cols, n_rows, crc, table_len = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BlobFormatError(f"not a voltloop array blob (magic {magic!r})")
    if version != FORMAT_VERSION:
        raise BlobFormatError(f"array blob format version {version} is not supported")
    table_end = _HEADER.size + table_len
    if len(data) < table_end:
        raise BlobFormatError("array blob truncated in its column table")
    columns: list[tuple[str, np.dtype]] = []
    pos = _HEADER.size
    for _ in range(n_cols):
        if pos >= table_end:
            raise BlobFormatError("array blob column table is shorter than its column count")
        name_len = data[pos]
        name = data[pos + 1 : pos + 1 + name_len].decode("ascii", errors="replace")
        code = data[pos + 1 + name_len : pos + 4 + name_len].decode("ascii", errors="replace")
        if code not in ALLOWED_DTYPES:
            raise BlobFormatError(f"array blob column {name!r} has unsupported dtype {code!r}")
        columns.append((name, np.dtype(code)))
        pos += 4 + name_len
    if pos != table_end:
        raise BlobFormatError("array blob column table length does not match its entries")
    stored = data[table_end:]
    if codec == Codec.ZLIB:
        try:
            payload = zlib.decompress(stored)
        except zlib.error as exc:
            raise BlobFormatError(f"array blob payload is not valid zlib data: {exc}") from None
    elif codec == Codec.NONE:
        payload = stored
    else:
        raise BlobFormatError(f"array blob uses unknown codec {codec}")
    expected = sum(dtype.itemsize for _, dtype in columns) * n_rows
    if len(payload) != expected:
        raise BlobFormatError(f"array blob payload has {len(payload)} bytes, expected {expected}")
    if zlib.crc32(payload) != crc:
        raise BlobFormatError("array blob checksum mismatch (corrupted data)")
    out: dict[str, np.ndarray] = {}
    offset = 0
    for name, dtype in columns:
        size = dtype.itemsize * n_rows
        raw = np.frombuffer(payload, dtype=np.uint8, count=size, offset=offset)
        if flags & _FLAG_SHUFFLE and dtype.itemsize > 1:
            raw = raw.reshape(dtype.itemsize, n_rows).T
        out[name] = np.ascontiguousarray(raw).view(dtype).reshape(n_rows)
        offset += size
    return out


def blob_columns(blob: bytes | bytearray | memoryview) -> list[tuple[str, str]]:
    """``[(name, dtype), ...]`` of a blob, read from its header without decompressing."""
    data = bytes(blob[: _HEADER.size + 0xFFFF])
    if len(data) < _HEADER.size or data[:4] != MAGIC:
        raise BlobFormatError("not a voltloop array blob")
    _, _, _, _, n_cols, _, _, _ = _HEADER.unpack_from(data)
    pos = _HEADER.size
    found = []
    for _ in range(n_cols):
        name_len = data[pos]
        found.append(
            (
                data[pos + 1 : pos + 1 + name_len].decode("ascii"),
                data[pos + 1 + name_len : pos + 4 + name_len].decode("ascii"),
            )
        )
        pos += 4 + name_len
    return found


def _shuffle(array: np.ndarray) -> bytes:
    """Bytes of ``array`` as ``itemsize`` planes of shape (N,)."""
    if array.dtype.itemsize == 1:
        return array.tobytes()
    return array.view(np.uint8).reshape(array.shape[0], array.dtype.itemsize).T.tobytes()
