"""The report's data model: plain frozen records and the pure rules behind its numbers.

``report_data.gather_report`` fills a :class:`ReportData` from the database;
``report_plots`` and ``report`` turn it into a page without touching the database.
Everything here is pure (no I/O), so the rules are unit-tested directly.

Measured end of life follows the engine's rule (``orchestrator.observations``):
the first stored cycle with index > 0 whose discharge capacity is below
``lifetime.end_of_life_capacity × cell.nominal_capacity_Ah`` from the campaign
spec. A candidate's observed objective is that measured life if there is one,
else its experiment's latest lifetime prediction — the value the engine hands
the proposer.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voltloop.db.enums import ExperimentStatus
from voltloop.db.readback import StoredSpectrum


@dataclass(frozen=True)
class RoundRow:
    index: int
    status: str
    candidates: int
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    model_version_ids: tuple[int, ...] = ()

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class PredictionRow:
    """The latest lifetime prediction of one experiment (most cycles seen)."""

    predicted_life: float
    std: float | None
    cycles_seen: int
    model: str  # "name v3"
    created_at: dt.datetime | None


@dataclass(frozen=True)
class ExperimentRow:
    id: str
    candidate_id: int | None
    round_index: int | None
    cell_id: str | None
    cycler_url: str | None
    channel: int | None
    status: str
    end_reason: str | None
    created_at: dt.datetime | None
    queued_at: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    cycles_stored: int
    last_cycle: int | None
    measured_life: int | None
    peak_temperature_c: float | None
    channel_hours: float
    prediction: PredictionRow | None


@dataclass(frozen=True)
class CandidateRow:
    id: int
    round_index: int | None
    parameters: dict[str, Any]
    material: str | None  # formula
    acquisition_value: float | None
    predicted_mean: float | None
    predicted_std: float | None
    status: str
    experiment_ids: tuple[str, ...]
    observed_life: float | None  # measured if available, else the latest prediction
    observed_source: str | None  # "measured", "predicted" or None
    metrics: dict[str, float] = field(default_factory=dict)  # objective metric -> value
    #: the pool's name for the material (materials campaigns): formulas may repeat
    material_label: str | None = None

    @property
    def material_text(self) -> str | None:
        """ "label (formula)", or whichever of the two is known."""
        return _label_and_formula(self.material_label, self.material)


@dataclass(frozen=True)
class CapacityTrace:
    """Per-cycle discharge capacity of one experiment; arrays of shape ``(n_cycles,)``."""

    experiment_id: str
    cycle_index: np.ndarray  # int64
    discharge_capacity_ah: np.ndarray  # float64


@dataclass(frozen=True)
class SpectrumSet:
    """The EIS spectra of one experiment, ordered by cycle index."""

    experiment_id: str
    cell_id: str | None
    spectra: tuple[StoredSpectrum, ...]


@dataclass(frozen=True)
class EventRow:
    id: int
    created_at: dt.datetime | None
    level: str
    kind: str
    message: str
    experiment_id: str | None
    cell_id: str | None


@dataclass(frozen=True)
class Recommendation:
    candidate_id: int | None
    parameters: dict[str, Any] | None
    objective: float | None
    message: str
    level: str
    created_at: dt.datetime | None
    label: str | None = None  # materials: the material's label and formula
    formula: str | None = None
    metric: str | None = None  # the objective's metric (materials campaigns name it)
    rule: str | None = None  # how it was chosen
    #: a confirmation round's protocols (decision 0085): parameters, lives, mean_life,
    #: predicted_mean/std (posterior mean when chosen), peak_temperature_C, ...
    confirmed: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str  # "maximize" | "minimize"
    threshold: float | None = None


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows about one campaign."""

    name: str
    kind: str
    status: str
    seed: int
    description: str
    spec: dict[str, Any]
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    generated_at: dt.datetime
    database: str
    eol_threshold_ah: float | None
    nominal_capacity_ah: float | None
    objectives: tuple[Objective, ...]
    parameter_names: tuple[str, ...]
    rounds: tuple[RoundRow, ...]
    candidates: tuple[CandidateRow, ...]
    experiments: tuple[ExperimentRow, ...]
    traces: dict[str, CapacityTrace]
    spectra: tuple[SpectrumSet, ...]
    spectra_total: int  # spectra stored for the campaign (all experiments)
    events: tuple[EventRow, ...]  # newest last
    events_total: int
    event_counts: dict[str, int]
    event_levels: dict[str, int]
    recommendation: Recommendation | None

    def experiments_by_status(self) -> dict[str, int]:
        counts = Counter(e.status for e in self.experiments)
        return {s.value: counts.get(s.value, 0) for s in ExperimentStatus}

    def candidate(self, candidate_id: int | None) -> CandidateRow | None:
        return next((c for c in self.candidates if c.id == candidate_id), None)


def end_of_life_threshold(spec: dict[str, Any]) -> float | None:
    """``end_of_life_capacity × nominal_capacity_Ah`` from a campaign spec, in Ah."""
    try:
        fraction = float(spec.get("lifetime", {}).get("end_of_life_capacity", 0.8))
        nominal = float(spec["cell"]["nominal_capacity_Ah"])
    except (KeyError, TypeError, ValueError):
        return None
    return fraction * nominal


def measured_end_of_life(
    cycle_index: np.ndarray, discharge_capacity_ah: np.ndarray, threshold_ah: float | None
) -> int | None:
    """The first cycle (index > 0) whose discharge capacity is below ``threshold_ah``.

    Arrays have shape ``(n_cycles,)`` and are ordered by cycle index.
    """
    if threshold_ah is None or len(cycle_index) == 0:
        return None
    below = (np.asarray(cycle_index) > 0) & (np.asarray(discharge_capacity_ah) < threshold_ah)
    hits = np.flatnonzero(below)
    return None if hits.size == 0 else int(np.asarray(cycle_index)[hits[0]])


def objectives_of(spec: dict[str, Any]) -> tuple[Objective, ...]:
    out = []
    for item in spec.get("objectives") or []:
        if isinstance(item, dict) and "metric" in item:
            out.append(
                Objective(
                    str(item["metric"]),
                    str(item.get("direction", "maximize")),
                    item.get("threshold"),
                )
            )
    return tuple(out)


def parameter_names_of(spec: dict[str, Any], parameters: list[dict[str, Any]]) -> tuple[str, ...]:
    space = spec.get("space")
    if isinstance(space, dict):
        names = [p["name"] for p in space.get("parameters") or [] if isinstance(p, dict)]
        if names:
            return tuple(names)
    seen: list[str] = []
    for values in parameters:
        for name in values:
            if name not in seen:
                seen.append(name)
    return tuple(seen)


def candidate_metric_values(
    metrics: list[str], life: float | None, series: list[dict[str, np.ndarray]]
) -> dict[str, float]:
    """The objective metrics that stored cycles can give for one candidate.

    ``series`` holds the summary columns of the candidate's experiments (arrays of
    shape ``(n_cycles,)``); values are averaged over experiments. Metrics that need
    data the database does not hold (``specific_energy`` needs the cathode mass,
    ``thermal_risk`` comes from a surrogate) are left out.
    """
    out: dict[str, float] = {}
    per_metric: dict[str, list[float]] = {}
    for data in series:
        index = data["cycle_index"]
        full = index > 0  # cycle 0 is the conditioning cycle, as in the end-of-life rule
        q = data["discharge_capacity_ah"][full]
        values: dict[str, float | None] = {
            "capacity_retention": float(q[-1] / q[0]) if q.size >= 2 and q[0] > 0 else None,
            "discharge_capacity": float(q[0]) if q.size else None,
            "peak_temperature": nanmax(data["temperature_max_c"]),
            "charge_time": nanmean(data["charge_time_s"][full]) / 60.0
            if nanmean(data["charge_time_s"][full]) is not None
            else None,
        }
        for metric, value in values.items():
            if value is not None and math.isfinite(value):
                per_metric.setdefault(metric, []).append(value)
    for metric in metrics:
        if metric == "cycle_life":
            if life is not None:
                out[metric] = float(life)
        elif per_metric.get(metric):
            out[metric] = float(np.mean(per_metric[metric]))
    return out


def nanmean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else None


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def nanmax(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else None


_WITHOUT_RESULT = (ExperimentStatus.FAILED.value, ExperimentStatus.ABORTED.value)


def observed_life(experiments: list[ExperimentRow]) -> tuple[float | None, str | None]:
    """Measured end of life if any experiment reached it, else the latest prediction
    (experiments that failed or were aborted teach nothing, as in the engine)."""
    useful = [e for e in experiments if e.status not in _WITHOUT_RESULT]
    measured = [e.measured_life for e in useful if e.measured_life is not None]
    if measured:
        return float(np.mean(measured)), "measured"
    predicted = [e.prediction.predicted_life for e in useful if e.prediction is not None]
    if predicted:
        return float(np.mean(predicted)), "predicted"
    return None, None


@dataclass(frozen=True)
class BestSoFar:
    """Per round: the best observed objective among candidates of rounds ≤ it."""

    round_index: int
    best: float | None  # None while nothing has been observed
    candidate_id: int | None
    round_values: tuple[float, ...]  # every observed value of this round's candidates


def best_so_far(
    candidates: tuple[CandidateRow, ...] | list[CandidateRow],
    round_indices: list[int],
    *,
    maximize: bool = True,
) -> list[BestSoFar]:
    """Best-so-far of the observed life by round (maximised unless ``maximize`` is False)."""
    out = []
    best: float | None = None
    best_id: int | None = None
    for index in sorted(round_indices):
        values = []
        for c in candidates:
            if c.round_index != index or c.observed_life is None:
                continue
            values.append(c.observed_life)
            better = best is None or (
                c.observed_life > best if maximize else c.observed_life < best
            )
            if better:
                best, best_id = c.observed_life, c.id
        out.append(BestSoFar(index, best, best_id, tuple(values)))
    return out


def pareto_mask(points: np.ndarray, maximize: tuple[bool, ...]) -> np.ndarray:
    """Non-dominated rows of ``points`` (shape ``(n, k)``), as a bool array ``(n,)``.

    A row is dominated if another is at least as good in every objective and
    strictly better in one (``maximize[j]`` gives objective ``j``'s direction).
    """
    values = np.asarray(points, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(maximize):
        raise ValueError(f"points must have shape (n, {len(maximize)}), got {values.shape}")
    signed = values * np.where(np.asarray(maximize), 1.0, -1.0)  # larger is better
    n = signed.shape[0]
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        at_least = np.all(signed >= signed[i], axis=1)
        strictly = np.any(signed > signed[i], axis=1)
        if np.any(at_least & strictly):
            keep[i] = False
    return keep


@dataclass(frozen=True)
class LoadingSheetRow:
    """One line of a round's loading sheet: which cell goes into which channel."""

    round_index: int
    cell_id: str
    candidate_id: int | None
    cycler_url: str | None
    channel: int | None
    experiment_id: str
    status: str
    parameters: dict[str, Any]
    material: str | None
    material_label: str | None = None

    @property
    def material_text(self) -> str | None:
        return _label_and_formula(self.material_label, self.material)


def _label_and_formula(label: str | None, formula: str | None) -> str | None:
    if label and formula and label != formula:
        return f"{label} ({formula})"
    return label or formula


def loading_sheet(data: ReportData, round_index: int) -> list[LoadingSheetRow]:
    """Cell id ↔ candidate ↔ channel for every experiment of a round, by cell id."""
    rows = []
    for e in data.experiments:
        if e.round_index != round_index:
            continue
        candidate = data.candidate(e.candidate_id)
        rows.append(
            LoadingSheetRow(
                round_index=round_index,
                cell_id=e.cell_id or e.id,
                candidate_id=e.candidate_id,
                cycler_url=e.cycler_url,
                channel=e.channel,
                experiment_id=e.id,
                status=e.status,
                parameters={} if candidate is None else dict(candidate.parameters),
                material=None if candidate is None else candidate.material,
                material_label=None if candidate is None else candidate.material_label,
            )
        )
    return sorted(rows, key=lambda r: (r.cell_id, r.experiment_id))


def downsample(index: np.ndarray, values: np.ndarray, max_points: int) -> tuple[np.ndarray, ...]:
    """At most ``max_points`` evenly strided points of a series (shape ``(n,)``), always
    keeping the first and last, so long campaigns stay small in the page."""
    n = len(index)
    if n <= max_points or max_points < 2:
        return np.asarray(index), np.asarray(values)
    keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return np.asarray(index)[keep], np.asarray(values)[keep]
