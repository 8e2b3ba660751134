"""Which steps of a compiled protocol are checkpoints, not the aging cycle itself.

A compiled protocol (drivers/protocols.py, decision 0021) names every step by its
role in its ``id``: EIS checkpoint steps start with ``eis`` and reference
performance tests with ``rpt``. A checkpoint belongs to the aging cycle it follows,
so a cycle's records mix both; cycle summaries and lifetime features use only the
aging cycle's own records (:func:`aging_mask`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

#: Step-id prefixes of checkpoint steps (``eis_set_soc``, ``eis``, ``rpt_charge``, ...).
CHECKPOINT_PREFIXES = ("eis", "rpt")


def checkpoint_steps(protocol: Any) -> frozenset[int]:
    """Indices of the checkpoint steps (EIS, reference tests) of a compiled protocol
    (an ``aurora_unicycler.CyclingProtocol`` or its dict), by their step ids."""
    method = protocol["method"] if isinstance(protocol, Mapping) else protocol.method
    found = set()
    for i, step in enumerate(method):
        step_id = step.get("id") if isinstance(step, Mapping) else getattr(step, "id", None)
        if step_id and str(step_id).startswith(CHECKPOINT_PREFIXES):
            found.add(i)
    return frozenset(found)


def aging_mask(steps: np.ndarray, checkpoint: frozenset[int] | None) -> np.ndarray:
    """Records (by their ``step`` column, shape ``(n,)``) of the aging cycle itself:
    not in a checkpoint step. All records if that would leave none."""
    if not checkpoint:
        return np.ones(len(steps), dtype=bool)
    mask = ~np.isin(steps, np.fromiter(checkpoint, dtype=np.int64))
    return mask if mask.any() else np.ones(len(steps), dtype=bool)


def aging_discharge(
    voltage: np.ndarray,
    current: np.ndarray,
    discharge_Ah: np.ndarray,
    steps: np.ndarray,
    checkpoint: frozenset[int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The aging cycle's discharge curve ``(V, Q)`` from one cycle's series (each of
    shape ``(n,)``): records discharging outside checkpoint steps, with ``Q`` counted
    from where the cycle's discharge counter stood before them (a checkpoint at the
    start of the cycle has already discharged some)."""
    selected = (current < 0) & aging_mask(steps, checkpoint)
    if not selected.any():
        return voltage[selected], discharge_Ah[selected]
    first = int(np.argmax(selected))
    before = float(discharge_Ah[first - 1]) if first > 0 else 0.0
    return voltage[selected], discharge_Ah[selected] - before
