"""Fetched records → complete cycles as database rows.

The cycler host's :class:`~voltloop.drivers.cycle_summary.CycleAssembler` releases a
cycle once a record of a later cycle has arrived, or the experiment has ended, and
summarises it (the same summariser that summarises the lifetime models' training
history). Records of the cycle still running are not stored: the ingest position
stays at its first record, so the next poll fetches them again together with the
rest of the cycle. A crash therefore never leaves half a cycle in the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from voltloop.db.cycles import CycleData, CycleSummary
from voltloop.drivers.cycle_summary import Cycle, CycleAssembler, SummaryOptions


@dataclass(frozen=True)
class AssembledCycles:
    """Complete cycles and the record index the next fetch should start from."""

    cycles: list[CycleData]
    next_record: int


def to_cycle_data(cycle: Cycle) -> CycleData:
    """One complete cycle (summary and records) → the database row."""
    s = cycle.summary
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
    return CycleData(s.cycle, summary, cycle.records)


def assemble_cycles(
    records: np.ndarray,
    since: int,
    *,
    final: bool,
    kinds: Mapping[int, str] | None = None,
    checkpoint: frozenset[int] | None = None,
    options: SummaryOptions | None = None,
) -> AssembledCycles:
    """Complete cycles in ``records`` (SAMPLE_DTYPE, shape ``(n,)``, record indices
    ``since…`` without gaps). With ``final`` the experiment has ended and its last
    cycle is complete too. ``kinds`` maps protocol step index → step kind, for exact
    constant-voltage times; ``checkpoint`` the protocol's checkpoint steps, left out of
    the cycle's figures."""
    assembler = CycleAssembler(since, kinds=kinds, checkpoint=checkpoint, options=options)
    cycles = assembler.feed(records)
    if final:
        cycles += assembler.finish()
    next_record = assembler.next_record - len(assembler.pending)
    return AssembledCycles([to_cycle_data(c) for c in cycles], next_record)
