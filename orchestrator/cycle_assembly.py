"""Fetched records → complete cycles for the database.

The cycler reports records with a cycle index. A cycle is complete once a record
of a later cycle has arrived, or the experiment has ended. Records of the cycle
still running are not stored: the ingest position stays at its first record, so
the next poll fetches them again together with the rest of the cycle. A crash
therefore never leaves half a cycle in the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from voltloop.db.cycles import CycleData, CycleSummary
from voltloop.drivers.cycle_summary import summarise_cycle


@dataclass(frozen=True)
class AssembledCycles:
    """Complete cycles and the record index the next fetch should start from."""

    cycles: list[CycleData]
    next_record: int


def to_cycle_data(records: np.ndarray, kinds: Mapping[int, str] | None) -> CycleData:
    """One complete cycle's records → the database row, summarised by the cycler host's
    summariser (the same one that summarises the lifetime models' training history)."""
    s = summarise_cycle(records, kinds=kinds)
    summary = CycleSummary(
        charge_capacity_ah=s.charge_Ah,
        discharge_capacity_ah=s.discharge_Ah,
        charge_energy_wh=s.charge_energy_Wh,
        discharge_energy_wh=s.discharge_energy_Wh,
        t_start_s=s.start_t_s,
        t_end_s=s.end_t_s,
        sample_count=s.n_records,
        coulombic_efficiency=s.coulombic_efficiency,
        temperature_max_c=s.temperature_max_C,
        temperature_mean_c=s.temperature_mean_C,
        temperature_min_c=s.temperature_min_C,
        internal_resistance_ohm=s.internal_resistance_ohm,
        charge_time_s=s.charge_time_s,
        cv_time_s=s.cv_time_s,
    )
    return CycleData(s.cycle, summary, records)


def assemble_cycles(
    records: np.ndarray,
    since: int,
    *,
    final: bool,
    kinds: Mapping[int, str] | None = None,
) -> AssembledCycles:
    """Split ``records`` (SAMPLE_DTYPE, shape ``(n,)``, record indices ``since…``) into
    complete cycles. With ``final`` the experiment has ended and the last cycle is
    complete too (if it holds any record). ``kinds`` maps protocol step index → step
    kind, for exact constant-voltage times."""
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
    cycles = [to_cycle_data(records[a:b], kinds) for a, b in zip(starts, ends, strict=True)]
    consumed = int(ends[-1]) if len(ends) else 0
    return AssembledCycles(cycles, since + consumed)
