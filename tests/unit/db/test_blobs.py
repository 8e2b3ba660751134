"""The voltloop array blob: round trips, format checks, no pickle."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from voltloop.db.blobs import MAGIC, Codec, blob_columns, decode_arrays, encode_arrays
from voltloop.db.errors import BlobFormatError


def _series(n: int = 500) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "t_s": np.cumsum(rng.uniform(0.9, 1.1, n)),
        "voltage_V": (3.3 + 0.1 * rng.standard_normal(n)).astype(np.float32),
        "current_A": rng.normal(0, 1, n).astype(np.float32),
        "step": np.arange(n, dtype=np.int32) // 50,
    }


@pytest.mark.parametrize("codec", list(Codec))
@pytest.mark.parametrize("shuffle", [True, False])
def test_round_trip_keeps_names_dtypes_and_values(codec: Codec, shuffle: bool) -> None:
    series = _series()
    decoded = decode_arrays(encode_arrays(series, codec=codec, shuffle=shuffle))
    assert list(decoded) == list(series)
    for name, values in series.items():
        assert decoded[name].dtype == values.dtype.newbyteorder("<")
        np.testing.assert_array_equal(decoded[name], values)


def test_header_is_documented_layout() -> None:
    blob = encode_arrays({"voltage_V": np.zeros(3, np.float32)}, codec=Codec.NONE, shuffle=False)
    magic, version, codec, flags, n_cols, n_rows, crc, table_len = struct.unpack_from(
        "<4sBBBBIIH", blob
    )
    assert (magic, version, codec, flags, n_cols, n_rows) == (MAGIC, 1, 0, 0, 1, 3)
    assert blob[18 : 18 + table_len] == b"\x09voltage_V<f4"
    assert crc == zlib.crc32(bytes(12))
    assert blob_columns(blob) == [("voltage_V", "<f4")]


def test_big_endian_input_is_stored_little_endian() -> None:
    values = np.arange(5, dtype=">f8")
    decoded = decode_arrays(encode_arrays({"t_s": values}))
    assert decoded["t_s"].dtype.str == "<f8"
    np.testing.assert_array_equal(decoded["t_s"], values)


def test_empty_columns_round_trip() -> None:
    decoded = decode_arrays(encode_arrays({"t_s": np.array([], dtype=np.float64)}))
    assert decoded["t_s"].shape == (0,)


def test_shuffle_helps_smooth_series() -> None:
    series = _series(2000)
    assert len(encode_arrays(series, shuffle=True)) < len(encode_arrays(series, shuffle=False))


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({}, "at least one column"),
        ({"x": np.zeros((2, 2))}, "1-D"),
        ({"x": np.array(["a"], dtype=object)}, "need int or float"),
        ({"x": np.zeros(2), "y": np.zeros(3)}, "has 3 rows"),
        ({"bad name": np.zeros(2)}, "not an identifier"),
        ({"z": np.zeros(2, dtype=np.complex128)}, "need int or float"),
    ],
)
def test_encode_refuses_what_the_format_cannot_hold(columns: dict, message: str) -> None:
    with pytest.raises(BlobFormatError, match=message):
        encode_arrays(columns)


def test_decode_refuses_foreign_truncated_and_corrupt_bytes() -> None:
    blob = encode_arrays(_series(100), codec=Codec.NONE)
    with pytest.raises(BlobFormatError, match="not a voltloop array blob"):
        decode_arrays(b"\x80\x04\x95" + blob[3:])  # a pickle header is just foreign bytes
    with pytest.raises(BlobFormatError, match="too short"):
        decode_arrays(blob[:10])
    with pytest.raises(BlobFormatError, match="payload has"):
        decode_arrays(blob[:-4])
    corrupt = bytearray(blob)
    corrupt[-1] ^= 0xFF
    with pytest.raises(BlobFormatError, match="checksum"):
        decode_arrays(bytes(corrupt))
    future = bytearray(blob)
    future[4] = 2
    with pytest.raises(BlobFormatError, match="version 2"):
        decode_arrays(bytes(future))


@given(
    hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint8]),
        shape=st.integers(0, 300),
    ),
    st.booleans(),
)
def test_any_numeric_column_round_trips(values: np.ndarray, shuffle: bool) -> None:
    decoded = decode_arrays(encode_arrays({"x": values}, shuffle=shuffle))["x"]
    assert decoded.tobytes() == values.astype(values.dtype.newbyteorder("<")).tobytes()
