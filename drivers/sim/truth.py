"""Ground truth without the wire: true cycle lives by fast-forwarding cells.

``fast_forward_life`` runs one (copied) cell under a protocol until its discharge
capacity falls below a fraction of nominal; ``cycle_lives`` does the same for many
(cell, protocol) pairs in one vectorised bank and can keep the early records needed
for early-life features. Both run without records by default, as fast as possible.

EIS checkpoints in a protocol do not end a fast-forward: with no potentiostat to
serve them, the cell rests at the checkpoint for ``eis_rest_s`` (about as long as a
10 kHz -> 10 mHz sweep takes) and the protocol continues, as it would under a prompt
host. The checkpoint is noted as skipped in the private lab (never on a real channel).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voltloop.drivers.sim.cell_model import CellBank
from voltloop.drivers.sim.executor import Executor, RunState
from voltloop.drivers.sim.program import compile_protocol
from voltloop.drivers.sim.virtual_lab import CellSpec, InstrumentLimits

#: Virtual time advanced per chunk while fast-forwarding (s).
CHUNK_S = 6 * 3600.0
#: Rest at an EIS checkpoint while fast-forwarding (s): ~one 61-point sweep to 10 mHz.
EIS_REST_S = 600.0
_LIVE = (RunState.RUNNING, RunState.WAITING_EIS)


def first_below(capacities: np.ndarray, threshold_Ah: float) -> int | None:
    """Index of the first cycle whose capacity is below ``threshold_Ah`` (None if none)."""
    below = np.flatnonzero(capacities < threshold_Ah)
    return int(below[0]) if below.size else None


def fast_forward_life(
    bank: CellBank,
    protocol_json: str,
    limits: InstrumentLimits,
    eol_fraction: float = 0.8,
    max_cycles: int = 5000,
    eis_rest_s: float = EIS_REST_S,
) -> int | None:
    """Cycles until EOL for the single cell in ``bank`` (slot 0) under ``protocol_json``
    (EIS checkpoints rest the cell ``eis_rest_s`` and continue)."""
    chem = bank.chemistry[0]
    assert chem is not None
    ex = Executor(bank, limits.max_steps, keep_records=False, eis_timeout_s=eis_rest_s)
    ex.start(0, compile_protocol(protocol_json, limits, chem.nominal_capacity_Ah))
    threshold = eol_fraction * chem.nominal_capacity_Ah
    while True:
        ex.advance(CHUNK_S)
        life = first_below(ex.capacities(0)[1:], threshold)
        if life is not None:
            return life + 1
        if ex.run[0] not in _LIVE or ex.cycle[0] >= max_cycles:
            return None


@dataclass
class LifeRun:
    """Result of :func:`cycle_lives` (one entry per cell)."""

    lives: np.ndarray  # cycles to EOL, NaN if not reached (shape (n,))
    capacities: list[np.ndarray]  # discharge capacity per cycle (Ah)
    early_records: list[np.ndarray] | None  # records of cycles <= record_cycles


def cycle_lives(
    specs: Sequence[CellSpec],
    protocols: Sequence[str],
    eol_fraction: float = 0.8,
    max_cycles: int = 3000,
    record_cycles: int = 0,
    limits: InstrumentLimits | None = None,
    seed: int = 0,
    eis_rest_s: float = EIS_REST_S,
    **lab_options: Any,
) -> LifeRun:
    """True cycle lives of ``specs[i]`` under ``protocols[i]``, all in one bank.

    With ``record_cycles`` > 0 the records of cycles 0..record_cycles are kept and
    returned (for early-life features such as the Severson ΔQ(V)). EIS checkpoints
    rest the cell ``eis_rest_s`` and continue. ``lab_options`` go to
    ``SimulatedLab`` (e.g. ``cell_types``, ``cell_model``).
    """
    from voltloop.drivers.sim.lab import SimulatedLab

    n = len(specs)
    if n != len(protocols):
        raise ValueError("specs and protocols must have the same length")
    # the early records are read once, after cycle ``record_cycles``: keep them all
    lab_options.setdefault("max_records_per_channel", None)
    lab = SimulatedLab(
        n,
        seed=seed,
        limits=limits,
        keep_records=record_cycles > 0,
        eis_timeout_s=eis_rest_s,
        **lab_options,
    )
    for i, spec in enumerate(specs):
        lab.load_cell(i, spec)
        lab.start(i, protocols[i], f"life-{i}")
    ex = lab.executor
    nominal = lab.bank.nominal_Ah
    lives = np.full(n, np.nan)
    early: list[np.ndarray] | None = None
    while True:
        lab.advance(CHUNK_S)
        if early is None and record_cycles > 0 and ex.cycle.min() > record_cycles:
            early = []
            for i in range(n):
                rec = lab.records(i, 0, limit=10**9)
                early.append(rec[rec["cycle"] <= record_cycles])
                ex.buffers[i].clear()
            ex.keep_records = False
        for i in np.flatnonzero(np.isnan(lives)):
            caps = ex.capacities(i)
            life = first_below(caps[1:], eol_fraction * nominal[i])
            if life is not None:
                lives[i] = life + 1
                ex.halt(i, RunState.STOPPED, "end of life reached")
            elif ex.cycle[i] >= max_cycles:
                ex.halt(i, RunState.STOPPED, "cycle budget used up")
        if not np.isin(ex.run, _LIVE).any():
            break
    if record_cycles > 0 and early is None:
        early = [lab.records(i, 0, limit=10**9) for i in range(n)]
        early = [r[r["cycle"] <= record_cycles] for r in early]
    return LifeRun(
        lives=lives, capacities=[ex.capacities(i) for i in range(n)], early_records=early
    )
