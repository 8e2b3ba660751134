"""Decoding the cycler's record replies (``DATA?`` and ``FETC?``, docs/protocols/cycler.md
§4.6–4.7): the header, the block's length and CRC-32, and that every channel's record
indices run on from the ``since`` asked for. Rows are returned without a copy, as
views of the buffer the transport read the block into. Any fault raises
:class:`ProtocolError` (the driver then asks again; docs/decisions/0041).
"""

from __future__ import annotations

import functools
import re
import uuid

import numpy as np

from voltloop.drivers.checksum import crc32
from voltloop.drivers.errors import ProtocolError
from voltloop.drivers.records import SAMPLE_DTYPE
from voltloop.drivers.scpi import split_fields
from voltloop.drivers.transport import BlockReply

#: A DATA? reply prefix: "<uuid or empty>",<since>,<count>,<crc32>,
_DATA_PREFIX = re.compile(r'"([0-9a-fA-F-]*)",(\d+),(\d+),([0-9A-F]{8}),')
#: A FETC? reply prefix in its usual form, <k>,{"<uuid or empty>",<since>,<count>,}<crc32>,
#: (read by two regular expressions; anything else goes through split_fields).
_SWEEP_PREFIX = re.compile(r'(\d+),((?:"[0-9a-fA-F-]*",\d+,\d+,)*)([0-9A-F]{8}),')
_SWEEP_HEAD = re.compile(r'"([0-9a-fA-F-]*)",(\d+),(\d+),')


@functools.lru_cache(maxsize=1024)
def _experiment_uuid(text: str) -> uuid.UUID:
    """An experiment id from a reply header (a poll repeats the same few dozen)."""
    return uuid.UUID(text)


def decode_batch(reply: BlockReply, since: int, url: str) -> tuple[uuid.UUID | None, np.ndarray]:
    """Check a ``DATA?`` reply asked from ``since``: (experiment, rows)."""
    try:
        fast = _DATA_PREFIX.fullmatch(reply.prefix)  # the usual form, without split_fields
        fields = list(fast.groups()) + [""] if fast else split_fields(reply.prefix)
        exp, since_text, count_text, crc_text, rest = fields
        got_since, count, crc = int(since_text), int(count_text), int(crc_text, 16)
    except ValueError as exc:
        raise ProtocolError(f"bad DATA? header {reply.prefix!r}", url=url) from exc
    if rest or got_since != since:
        raise ProtocolError(f"DATA? header {reply.prefix!r} for since={since}", url=url)
    (records,) = _checked_rows(reply.data, [(since, count)], crc, "DATA?", url)
    return _experiment(exp, "DATA?", url), records


def _checked_rows(
    data: bytes | bytearray | memoryview,
    parts: list[tuple[int, int]],
    crc: int,
    what: str,
    url: str,
) -> list[np.ndarray]:
    """Split a record block into one array per (since, count) part, shape (count,)
    of ``SAMPLE_DTYPE`` each, after checking length, CRC-32 and that every part's
    record indices run ``since, since+1, …`` (ProtocolError otherwise)."""
    total = sum(count for _, count in parts)
    if len(data) != total * SAMPLE_DTYPE.itemsize:
        raise ProtocolError(f"{what} block of {len(data)} bytes for {total} records", url=url)
    if crc32(data) != crc:
        raise ProtocolError(f"{what} block CRC mismatch", url=url)
    # the transport read the block into a buffer no other reply uses while these rows
    # live (transport.BlockReply): wrap it, no copy
    rows = np.frombuffer(data, dtype=SAMPLE_DTYPE)
    if not rows.flags.writeable:  # a read-only bytes block: own a copy
        rows = rows.copy()
    if not parts:
        return []
    starts = np.fromiter((since for since, _ in parts), np.int64, len(parts))
    counts = np.fromiter((count for _, count in parts), np.int64, len(parts))
    # every row's index is its part's since plus its place in the part (one pass)
    ends = np.cumsum(counts)
    expected = np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - counts), counts)
    wrong = np.flatnonzero(rows["record"] != expected)
    if wrong.size:
        since = starts[np.searchsorted(ends, wrong[0], side="right")]
        raise ProtocolError(f"{what} record indices not contiguous from {since}", url=url)
    return [
        rows[end - count : end] for end, count in zip(ends.tolist(), counts.tolist(), strict=True)
    ]


def _experiment(text: str, what: str, url: str) -> uuid.UUID | None:
    try:
        return _experiment_uuid(text) if text else None
    except ValueError as exc:
        raise ProtocolError(f"bad experiment id {text!r} in {what}", url=url) from exc


def decode_sweep(
    reply: BlockReply, wanted: list[tuple[int, int]], url: str
) -> list[tuple[uuid.UUID | None, np.ndarray]]:
    """Check a ``FETC?`` reply against the (channel, since) pairs asked for."""
    usual = _SWEEP_PREFIX.fullmatch(reply.prefix)
    if usual is not None:
        heads = [(e, int(s), int(n)) for e, s, n in _SWEEP_HEAD.findall(usual.group(2))]
        if len(heads) == int(usual.group(1)):
            return _sweep_rows(reply, wanted, heads, int(usual.group(3), 16), url)
    try:
        fields = split_fields(reply.prefix)
        k = int(fields[0])
        heads = [
            (fields[1 + 3 * i], int(fields[2 + 3 * i]), int(fields[3 + 3 * i])) for i in range(k)
        ]
        crc, rest = int(fields[1 + 3 * k], 16), fields[2 + 3 * k :]
    except (ValueError, IndexError) as exc:
        raise ProtocolError(f"bad FETC? header {reply.prefix[:200]!r}", url=url) from exc
    if rest != [""]:
        raise ProtocolError(
            f"FETC? header {reply.prefix[:200]!r} does not answer {wanted!r}", url=url
        )
    return _sweep_rows(reply, wanted, heads, crc, url)


def _sweep_rows(
    reply: BlockReply,
    wanted: list[tuple[int, int]],
    heads: list[tuple[str, int, int]],
    crc: int,
    url: str,
) -> list[tuple[uuid.UUID | None, np.ndarray]]:
    """The rows of a ``FETC?`` reply whose header gave ``heads`` (experiment, since,
    count per channel) and ``crc``."""
    if [since for _, since, _ in heads] != [s for _, s in wanted]:
        raise ProtocolError(
            f"FETC? header {reply.prefix[:200]!r} does not answer {wanted!r}", url=url
        )
    parts = _checked_rows(reply.data, [(s, n) for _, s, n in heads], crc, "FETC?", url)
    ids = [_experiment(exp, "FETC?", url) for exp, _, _ in heads]
    return list(zip(ids, parts, strict=True))
