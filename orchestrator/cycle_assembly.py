"""Fetched records → complete cycles for the database.

The cycler reports records with a cycle index. A cycle is complete once a record
of a later cycle has arrived, or the experiment has ended. Records of the cycle
still running are not stored: the ingest position stays at its first record, so
the next poll fetches them again together with the rest of the cycle. A crash
therefore never leaves half a cycle in the database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voltloop.db.cycles import CycleData


@dataclass(frozen=True)
class AssembledCycles:
    """Complete cycles and the record index the next fetch should start from."""

    cycles: list[CycleData]
    next_record: int


def assemble_cycles(records: np.ndarray, since: int, *, final: bool) -> AssembledCycles:
    """Split ``records`` (SAMPLE_DTYPE, shape ``(n,)``, record indices ``since…``) into
    complete cycles. With ``final`` the experiment has ended and the last cycle is
    complete too (if it holds any record)."""
    if records.shape[0] == 0:
        return AssembledCycles([], since)
    cycle_index = records["cycle"]
    if np.any(np.diff(cycle_index) < 0):
        raise ValueError("records go back to an earlier cycle; the instrument log is inconsistent")
    boundaries = np.flatnonzero(np.diff(cycle_index)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [records.shape[0]]))
    if not final:
        starts, ends = starts[:-1], ends[:-1]  # the last cycle may still be running
    cycles = [
        CycleData.from_series(int(cycle_index[a]), records[a:b])
        for a, b in zip(starts, ends, strict=True)
    ]
    consumed = int(ends[-1]) if len(ends) else 0
    return AssembledCycles(cycles, since + consumed)
