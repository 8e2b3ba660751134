"""The record blocks' CRC-32 is zlib's, computed by ISA-L (drivers/checksum.py)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from voltloop.drivers.checksum import crc32


def test_isal_computes_it() -> None:
    """isal is a dependency: the zlib fallback is for platforms without its wheels."""
    assert crc32.__module__.startswith("isal")


@pytest.mark.parametrize("size", [0, 1, 7, 44, 4096, 65_537, 4_600_000])
def test_same_values_as_zlib(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32(data) == zlib.crc32(data)
    # a running CRC over parts (FETC? sums the channels' blocks one after another)
    cut = size // 3
    assert crc32(data[cut:], crc32(data[:cut])) == zlib.crc32(data)
    assert crc32(memoryview(data)) == zlib.crc32(data)
