"""A channel's record memory: growing NumPy chunks indexed by record number.

Records of one experiment are numbered 0, 1, 2, ... without gaps, so the record
with index ``r`` sits at position ``r - first`` of the concatenated chunks. Chunks
are appended whole (one per clock advance) and never copied until read.
An optional ``max_records`` keeps only the newest records, like the finite buffer
of a hardware cycler; reads before the oldest kept record start at the oldest.
"""

from __future__ import annotations

import bisect

import numpy as np

from voltloop.drivers.records import SAMPLE_DTYPE, empty_records


class RecordBuffer:
    """Records of one channel's current experiment (dtype ``SAMPLE_DTYPE``)."""

    def __init__(self, max_records: int | None = None) -> None:
        self.max_records = max_records
        self.clear()

    def clear(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._starts: list[int] = []  # record index of each chunk's first row
        self.count = 0  # records ever appended (= next record index)
        self.first = 0  # index of the oldest kept record

    def append(self, chunk: np.ndarray) -> None:
        """Append rows whose ``record`` field continues the numbering."""
        if chunk.size == 0:
            return
        self._starts.append(self.count)
        self._chunks.append(chunk)
        self.count += chunk.size
        if self.max_records is not None:
            while (
                self._chunks
                and self.count - self._starts[0] - self._chunks[0].size >= 0
                and (self.count - (self._starts[0] + self._chunks[0].size) >= self.max_records)
            ):
                self._starts.pop(0)
                self._chunks.pop(0)
            self.first = self._starts[0] if self._starts else self.count

    def since(self, since: int, limit: int = 100_000) -> np.ndarray:
        """Rows with ``record >= since`` (oldest first), at most ``limit``: a read-only
        view of the buffer where they lie in one chunk (a host that fetches after every
        clock advance asks for exactly one), else a copy."""
        since = max(int(since), self.first)
        if since >= self.count or limit <= 0:
            return empty_records(0)
        k = bisect.bisect_right(self._starts, since) - 1
        out: list[np.ndarray] = []
        taken = 0
        offset = since - self._starts[k]
        while k < len(self._chunks) and taken < limit:
            part = self._chunks[k][offset : offset + (limit - taken)]
            out.append(part)
            taken += part.size
            offset = 0
            k += 1
        if len(out) == 1:
            view = out[0].view()
            view.flags.writeable = False  # the buffer's own rows
            return view
        # copied as raw bytes: NumPy copies a packed structured array field by field,
        # ~30x slower than the same bytes (it dominated a fetch of a few thousand rows)
        raw = np.concatenate([np.ascontiguousarray(o).view(np.uint8) for o in out])
        result = raw.view(SAMPLE_DTYPE)
        assert result.dtype == SAMPLE_DTYPE
        return result

    def last(self) -> np.ndarray | None:
        """The newest record, or None."""
        return self._chunks[-1][-1] if self._chunks else None
