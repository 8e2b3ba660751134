"""Records → complete cycles with a per-cycle summary (what the ``cycle`` table stores).

:class:`CycleAssembler` takes record batches as they are fetched (contiguous record
indices, any batch boundaries) and releases a cycle only once it is complete: when a
record of a later cycle arrives, or when the experiment has ended
(:meth:`CycleAssembler.finish`). A cycle still running is held back, so a stored cycle
is never partial. :func:`summarise_cycle` computes the summary of one cycle:

* ``charge_Ah`` / ``discharge_Ah``: the instrument's per-cycle counters (max over the
  cycle of ``charge_Ah`` / ``discharge_Ah``);
* ``charge_energy_Wh`` / ``discharge_energy_Wh``: trapezoidal ∫ V·I dt over the positive
  and negative parts of the power;
* ``coulombic_efficiency`` = discharge / charge (None without charge);
* temperature max / mean (mean of the samples) / min;
* ``internal_resistance_ohm``: median |ΔV/ΔI| over current steps inside the cycle
  (consecutive records whose current changes by at least ``max(min_step_A,
  0.25·max|I|)`` within ``max_step_gap_s``), None if the cycle has none;
* ``charge_time_s``: time spent charging (I > ``current_eps_A``); ``cv_time_s``: time
  of it in constant-voltage steps — known from the protocol's step kinds when given,
  else detected (charging within ``cv_tolerance_V`` of the cycle's top voltage while
  the current falls below 95 % of where that plateau began).

Time intervals are attributed to the record that ends them.

Checkpoint steps (EIS and reference performance tests) belong to the aging cycle
they follow (decision 0021), so their current would inflate that cycle's
capacity, energy and charge time and their rests would cool its temperatures.
Given the protocol's ``checkpoint`` step indices (:func:`checkpoint_steps`), every
figure above except the cycle's span (records, start and end time) is computed from
the aging cycle's own records: counters as their rise over those records, the rest
over them alone. :func:`aging_mask` says which records those are.
"""

from __future__ import annotations

# ruff: noqa: N815 - field names carry SI units
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from voltloop.campaigns.checkpoints import aging_mask, checkpoint_steps
from voltloop.drivers.records import SAMPLE_DTYPE, empty_records

__all__ = ["aging_mask", "checkpoint_steps"]  # re-exported for the cycler host's callers


class CycleSummary(BaseModel):
    """Per-cycle figures; every field a plain number so it maps to SQL columns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cycle: int
    first_record: int
    last_record: int
    n_records: int
    start_t_s: float
    end_t_s: float
    charge_Ah: float
    discharge_Ah: float
    charge_energy_Wh: float
    discharge_energy_Wh: float
    coulombic_efficiency: float | None
    temperature_max_C: float
    temperature_mean_C: float
    temperature_min_C: float
    internal_resistance_ohm: float | None
    charge_time_s: float
    cv_time_s: float


@dataclass(frozen=True)
class Cycle:
    """One complete cycle: its summary and its raw records (structured array of shape
    ``(n_records,)``, dtype ``SAMPLE_DTYPE``)."""

    summary: CycleSummary
    records: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The raw time series as float64 arrays of shape ``(n_records,)``: t, V, I, T."""
        r = self.records
        return {
            "t_s": r["t_s"].astype(np.float64),
            "voltage_V": r["voltage_V"].astype(np.float64),
            "current_A": r["current_A"].astype(np.float64),
            "temperature_C": r["temperature_C"].astype(np.float64),
        }


def step_kinds(protocol: Any) -> dict[int, str]:
    """Step index → unicycler step kind (``"constant_voltage"``, …) for an
    ``aurora_unicycler.CyclingProtocol`` or its dict, for exact CV times."""
    method = protocol["method"] if isinstance(protocol, Mapping) else protocol.method
    return {
        i: (step["step"] if isinstance(step, Mapping) else step.step)
        for i, step in enumerate(method)
    }


def _counter_rise(counter: np.ndarray, mask: np.ndarray) -> float:
    """How much a per-cycle cumulative counter rose over the masked records."""
    if mask.all():
        return float(counter.max())
    rise, i, n = 0.0, 0, len(mask)
    while i < n:
        if not mask[i]:
            i += 1
            continue
        j = i
        while j < n and mask[j]:
            j += 1
        before = float(counter[i - 1]) if i > 0 else 0.0
        rise += max(float(counter[i:j].max()) - before, 0.0)
        i = j
    return rise


@dataclass(frozen=True)
class SummaryOptions:
    current_eps_A: float = 1e-3
    cv_tolerance_V: float = 0.005
    min_step_A: float = 0.05
    max_step_gap_s: float = 60.0

    @classmethod
    def for_capacity(cls, nominal_Ah: float) -> SummaryOptions:
        """Current thresholds in proportion to the cell: 1 mA and 50 mA per Ah (a coin
        cell of 3 mAh charges at 3 mA; fixed 1 mA / 50 mA would miss its charge and
        current steps)."""
        return cls(current_eps_A=1e-3 * nominal_Ah, min_step_A=0.05 * nominal_Ah)


def _cv_mask(
    records: np.ndarray, kinds: Mapping[int, str] | None, opts: SummaryOptions
) -> np.ndarray:
    current = records["current_A"].astype(np.float64)
    voltage = records["voltage_V"].astype(np.float64)
    charging = current > opts.current_eps_A
    if kinds is not None:
        cv_steps = [i for i, kind in kinds.items() if kind == "constant_voltage"]
        return charging & np.isin(records["step"], cv_steps)
    if not charging.any():
        return np.zeros(len(records), dtype=bool)
    top = voltage[charging].max()
    plateau = charging & (voltage >= top - opts.cv_tolerance_V)
    mask = np.zeros(len(records), dtype=bool)
    i, n = 0, len(records)
    while i < n:
        if not plateau[i]:
            i += 1
            continue
        j = i
        while j < n and plateau[j]:
            j += 1
        start_current = current[i]
        mask[i:j] = current[i:j] < 0.95 * start_current
        i = j
    return mask


def _internal_resistance(records: np.ndarray, opts: SummaryOptions) -> float | None:
    if len(records) < 2:
        return None
    current = records["current_A"].astype(np.float64)
    voltage = records["voltage_V"].astype(np.float64)
    d_i = np.diff(current)
    d_v = np.diff(voltage)
    d_t = np.diff(records["t_s"])
    threshold = max(opts.min_step_A, 0.25 * float(np.abs(current).max()))
    steps = (np.abs(d_i) >= threshold) & (d_t <= opts.max_step_gap_s)
    if not steps.any():
        return None
    return float(np.median(np.abs(d_v[steps] / d_i[steps])))


def summarise_cycle(
    records: np.ndarray,
    *,
    kinds: Mapping[int, str] | None = None,
    options: SummaryOptions | None = None,
    checkpoint: frozenset[int] | None = None,
) -> CycleSummary:
    """The summary of one complete cycle (records of a single cycle index, in order);
    ``checkpoint``: step indices whose records are left out of the figures (module
    docstring)."""
    opts = options or SummaryOptions()
    if len(records) == 0:
        raise ValueError("a cycle needs at least one record")
    cycles = np.unique(records["cycle"])
    if len(cycles) != 1:
        raise ValueError(f"records span cycles {cycles.tolist()}, expected one")
    span = records
    aging = aging_mask(records["step"], checkpoint)
    charge_Ah = _counter_rise(records["charge_Ah"].astype(np.float64), aging)
    discharge_Ah = _counter_rise(records["discharge_Ah"].astype(np.float64), aging)
    t_span = span["t_s"].astype(np.float64)
    dt = np.diff(t_span, prepend=t_span[0])  # interval ending at each record
    dt[1:][aging[1:] & ~aging[:-1]] = 0.0  # the interval before an aging segment is not its
    dt = dt[aging]
    records = records[aging]
    t = records["t_s"].astype(np.float64)
    current = records["current_A"].astype(np.float64)
    voltage = records["voltage_V"].astype(np.float64)
    temperature = records["temperature_C"].astype(np.float64)
    power = voltage * current
    if len(records) > 1:
        charge_Wh = float(np.trapezoid(np.clip(power, 0, None), t)) / 3600.0
        discharge_Wh = float(np.trapezoid(np.clip(-power, 0, None), t)) / 3600.0
    else:
        charge_Wh = discharge_Wh = 0.0
    charging = current > opts.current_eps_A
    cv = _cv_mask(records, kinds, opts)
    return CycleSummary(
        cycle=int(cycles[0]),
        first_record=int(span["record"][0]),
        last_record=int(span["record"][-1]),
        n_records=len(span),
        start_t_s=float(span["t_s"][0]),
        end_t_s=float(span["t_s"][-1]),
        charge_Ah=charge_Ah,
        discharge_Ah=discharge_Ah,
        charge_energy_Wh=charge_Wh,
        discharge_energy_Wh=discharge_Wh,
        coulombic_efficiency=discharge_Ah / charge_Ah if charge_Ah > 0 else None,
        temperature_max_C=float(temperature.max()),
        temperature_mean_C=float(temperature.mean()),
        temperature_min_C=float(temperature.min()),
        internal_resistance_ohm=_internal_resistance(records, opts),
        charge_time_s=float(dt[charging].sum()),
        cv_time_s=float(dt[cv].sum()),
    )


class CycleAssembler:
    """Turns fetched record batches into complete :class:`Cycle` s (see module doc).

    ``next_record`` is the index the next batch must start at (resume it from the
    database after a restart: the first record not yet in a stored cycle, and feed
    the held-back records again from there).
    """

    def __init__(
        self,
        next_record: int = 0,
        *,
        kinds: Mapping[int, str] | None = None,
        options: SummaryOptions | None = None,
        checkpoint: frozenset[int] | None = None,
    ) -> None:
        self.next_record = next_record
        self.kinds = kinds
        self.checkpoint = checkpoint
        self.options = options or SummaryOptions()
        self._pending = empty_records()

    @property
    def pending(self) -> np.ndarray:
        """Records of the cycle still running (held back)."""
        return self._pending

    def feed(self, records: np.ndarray) -> list[Cycle]:
        """Add a batch; returns the cycles it completed, oldest first."""
        if len(records) == 0:
            return []
        if records.dtype != SAMPLE_DTYPE:
            raise ValueError(f"records must have dtype SAMPLE_DTYPE, got {records.dtype}")
        expected = np.arange(self.next_record, self.next_record + len(records))
        if not np.array_equal(records["record"], expected):
            raise ValueError(
                f"records must continue at index {self.next_record} without gaps, "
                f"got {int(records['record'][0])}..{int(records['record'][-1])}"
            )
        self.next_record += len(records)
        self._pending = np.concatenate([self._pending, records])
        cycles = self._pending["cycle"]
        bounds = np.flatnonzero(cycles[1:] != cycles[:-1]) + 1  # where a new cycle starts
        starts = np.concatenate([[0], bounds])
        done = [self._cycle(self._pending[a:b]) for a, b in zip(starts[:-1], bounds, strict=True)]
        if bounds.size:
            self._pending = self._pending[bounds[-1] :]
        return done

    def finish(self) -> list[Cycle]:
        """The experiment ended: release the last cycle (if any records remain)."""
        if len(self._pending) == 0:
            return []
        last = self._cycle(self._pending)
        self._pending = empty_records()
        return [last]

    def _cycle(self, records: np.ndarray) -> Cycle:
        records = records.copy()
        summary = summarise_cycle(
            records, kinds=self.kinds, options=self.options, checkpoint=self.checkpoint
        )
        return Cycle(summary, records)
