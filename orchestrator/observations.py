"""What the campaign has learned so far, read from the database for the proposer.

Protocol campaigns (:func:`gather`): a candidate is *observed* once its cell reached
end of life (measured cycle life, small noise) or was early-predicted (the predictor's
mean and std). Candidates with experiments still in flight are *pending*. Constraint
outcomes (peak cell temperature) come from the stored cycle summaries.

Materials campaigns (:func:`gather_materials`): every metric of a finished cell is
read from its stored cycles at the fixed test cycle (:func:`materials_metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voltloop.campaigns.base import Direction, Metric
from voltloop.campaigns.materials_campaign import MaterialsCampaign
from voltloop.db.enums import ExperimentStatus, RoundKind
from voltloop.db.models import Candidate, Cycle, Experiment, Prediction, Round
from voltloop.orchestrator.ports import Observation

#: Std of a measured end-of-life cycle count: the life is read at cycle resolution
#: from a noisy capacity trace (a few cycles), far below an early prediction's std.
MEASURED_LIFE_STD = 5.0
PEAK_TEMPERATURE = "peak_temperature_C"

_FINISHED_WITHOUT_RESULT = (ExperimentStatus.FAILED, ExperimentStatus.ABORTED)


@dataclass(frozen=True)
class CampaignKnowledge:
    observations: list[Observation]
    pending: list[dict[str, float]]
    tested: list[dict[str, float]]


def end_of_life_cycle(session: Session, experiment_id: str, threshold_ah: float) -> int | None:
    """The first stored cycle whose discharge capacity fell below ``threshold_ah``."""
    return session.scalar(
        select(func.min(Cycle.cycle_index)).where(
            Cycle.experiment_id == experiment_id,
            Cycle.cycle_index > 0,
            Cycle.discharge_capacity_ah < threshold_ah,
        )
    )


def peak_temperature(session: Session, experiment_id: str) -> float | None:
    return session.scalar(
        select(func.max(Cycle.temperature_max_c)).where(Cycle.experiment_id == experiment_id)
    )


def latest_prediction(session: Session, experiment_id: str) -> Prediction | None:
    return session.scalar(
        select(Prediction)
        .where(Prediction.experiment_id == experiment_id)
        .order_by(Prediction.cycles_seen.desc(), Prediction.id.desc())
        .limit(1)
    )


def gather(session: Session, campaign_id: int, eol_threshold_ah: float) -> CampaignKnowledge:
    """Observations, pending and tested parameter sets of a campaign."""
    rows = session.execute(
        select(Candidate, Experiment)
        .join(Experiment, Experiment.candidate_id == Candidate.id)
        .where(Candidate.campaign_id == campaign_id)
        .order_by(Candidate.id)
    ).all()
    observations: list[Observation] = []
    pending: list[dict[str, float]] = []
    tested: list[dict[str, float]] = []
    for candidate, experiment in rows:
        parameters = {k: float(v) for k, v in candidate.parameters.items()}
        tested.append(parameters)
        if experiment.status in _FINISHED_WITHOUT_RESULT:
            continue
        outcomes: dict[str, float] = {}
        peak = peak_temperature(session, experiment.id)
        if peak is not None:
            outcomes[PEAK_TEMPERATURE] = float(peak)
        life = end_of_life_cycle(session, experiment.id, eol_threshold_ah)
        if life is not None:
            observations.append(
                Observation(candidate.id, parameters, float(life), MEASURED_LIFE_STD, outcomes)
            )
            continue
        prediction = latest_prediction(session, experiment.id)
        if prediction is not None:
            observations.append(
                Observation(
                    candidate.id,
                    parameters,
                    float(prediction.predicted_life_cycles),
                    prediction.predicted_life_std,
                    outcomes,
                )
            )
        elif experiment.status == ExperimentStatus.SAFETY_STOPPED and outcomes:
            # No lifetime, but the constraint outcome is real: a tripped limit
            # teaches the safety model where not to go.
            observations.append(Observation(candidate.id, parameters, float("nan"), None, outcomes))
        elif not experiment.status.is_terminal:
            pending.append(parameters)
    return CampaignKnowledge(observations, pending, tested)


def in_confirmation_round(session: Session, candidate_id: int | None) -> bool:
    """Was this candidate proposed by a confirmation round (its cell runs to end of life)?"""
    if candidate_id is None:
        return False
    kind = session.scalar(
        select(Round.kind)
        .join(Candidate, Candidate.round_id == Round.id)
        .where(Candidate.id == candidate_id)
    )
    return kind == RoundKind.CONFIRMATION


@dataclass(frozen=True)
class ConfirmedProtocol:
    """One protocol of a confirmation round: its fresh cells, run to end of life."""

    parameters: dict[str, float]
    candidate_ids: list[int]
    lives: list[int]  # measured end-of-life cycles of the cells that reached it
    peak_temperatures_C: list[float]
    unfinished: int  # cells still running, or ended without reaching end of life
    safety_stopped: int
    predicted_mean: float | None  # posterior-mean life when it was chosen
    predicted_std: float | None
    #: cells that finished their protocol (``max_cycles``) above end of life: the
    #: cycles they ran, a lower bound on their life
    censored: list[int] = field(default_factory=list)

    @property
    def mean_life(self) -> float:
        """Mean life over the cells with a result; a censored cell counts with the
        cycles it ran, so with any censored cell this is a lower bound."""
        results = [*self.lives, *self.censored]
        return float(sum(results) / len(results)) if results else float("nan")

    def as_dict(self) -> dict:
        return {
            "parameters": self.parameters,
            "lives": self.lives,
            "censored": self.censored,
            "mean_life": self.mean_life if self.lives or self.censored else None,
            "cells": len(self.candidate_ids),
            "unfinished": self.unfinished,
            "safety_stopped": self.safety_stopped,
            "peak_temperature_C": max(self.peak_temperatures_C, default=None),
            "predicted_mean": self.predicted_mean,
            "predicted_std": self.predicted_std,
        }


def confirmed_protocols(
    session: Session, campaign_id: int, eol_threshold_ah: float
) -> list[ConfirmedProtocol]:
    """The protocols of the campaign's confirmation round, in the order chosen."""
    rows = session.execute(
        select(Candidate, Experiment)
        .join(Experiment, Experiment.candidate_id == Candidate.id)
        .join(Round, Round.id == Candidate.round_id)
        .where(Candidate.campaign_id == campaign_id, Round.kind == RoundKind.CONFIRMATION)
        .order_by(Candidate.id)
    ).all()
    groups: dict[tuple, dict] = {}
    for candidate, experiment in rows:
        parameters = {k: float(v) for k, v in candidate.parameters.items()}
        group = groups.setdefault(
            tuple(sorted(parameters.items())),
            {
                "parameters": parameters,
                "candidate_ids": [],
                "lives": [],
                "peaks": [],
                "unfinished": 0,
                "censored": [],
                "safety_stopped": 0,
                "predicted": (candidate.predicted_mean, candidate.predicted_std),
            },
        )
        group["candidate_ids"].append(candidate.id)
        peak = peak_temperature(session, experiment.id)
        if peak is not None:
            group["peaks"].append(float(peak))
        life = end_of_life_cycle(session, experiment.id, eol_threshold_ah)
        if life is not None:
            group["lives"].append(int(life))
        elif experiment.status == ExperimentStatus.COMPLETED:  # ran all of max_cycles
            ran = session.scalar(
                select(func.max(Cycle.cycle_index)).where(Cycle.experiment_id == experiment.id)
            )
            group["censored"].append(int(ran or 0))
        else:
            group["unfinished"] += 1
        if experiment.status == ExperimentStatus.SAFETY_STOPPED:
            group["safety_stopped"] += 1
    return [
        ConfirmedProtocol(
            parameters=g["parameters"],
            candidate_ids=g["candidate_ids"],
            lives=g["lives"],
            peak_temperatures_C=g["peaks"],
            unfinished=g["unfinished"],
            safety_stopped=g["safety_stopped"],
            censored=g["censored"],
            predicted_mean=g["predicted"][0],
            predicted_std=g["predicted"][1],
        )
        for g in groups.values()
    ]


def _meets_limits(spec: Any, confirmed: ConfirmedProtocol) -> bool:
    """Every cell of a confirmed protocol stayed within the campaign's limits as
    measured: no safety stop, peak temperature inside each peak-temperature constraint."""
    if confirmed.safety_stopped:
        return False
    for c in spec.constraints:
        if c.metric != Metric.PEAK_TEMPERATURE:
            continue
        for peak in confirmed.peak_temperatures_C:
            if (c.max is not None and peak > c.max) or (c.min is not None and peak < c.min):
                return False
    return True


def confirmed_recommendation(spec: Any, session: Session, campaign_id: int) -> dict | None:
    """After a confirmation round: the confirmed protocol with the longest mean measured
    life among those that met every limit (decision 0085); None without one."""
    eol_ah = spec.lifetime.end_of_life_capacity * spec.cell.nominal_capacity_Ah
    confirmed = confirmed_protocols(session, campaign_id, eol_ah)
    eligible = [c for c in confirmed if (c.lives or c.censored) and _meets_limits(spec, c)]
    if not eligible:
        return None
    best = max(eligible, key=lambda c: c.mean_life)
    cells = "/".join(str(n) for n in sorted({len(c.candidate_ids) for c in confirmed}))
    return {
        "candidate_id": best.candidate_ids[0],
        "parameters": best.parameters,
        "objective": best.mean_life,
        "rule": f"longest mean measured life among the {len(eligible)} of {len(confirmed)} "
        f"protocols confirmed on fresh cells run to end of life ({cells} cell(s) each) "
        "that met every limit"
        + (
            "; a cell that reached max_cycles above end of life counts with the cycles "
            "it ran (a lower bound)"
            if any(c.censored for c in eligible)
            else ""
        ),
        "measured_lives": best.lives,
        "censored_lives": best.censored,
        "predicted_mean": best.predicted_mean,
        "predicted_std": best.predicted_std,
        "meets_limits": True,
        "confirmed": [c.as_dict() for c in confirmed],
    }


# --- materials campaigns ----------------------------------------------------------------
#
# A materials campaign tests every material with the same fixed protocol and reads its
# metrics from the stored cycle summaries (docs/decisions/0007): cycle 0 holds the
# formation cycles, so the first full test cycle is index 1; the *test cycle* is the
# last cycle of the fixed test (``lifetime.stop_cycle`` cycles: index stop_cycle - 1),
# or the last stored cycle when the cell stopped before it (end of life, safety stop).

#: Below this share of nominal capacity a first cycle has nothing to retain (retention 0).
RETENTION_FLOOR = 0.05


def materials_metrics(
    discharge_ah: Sequence[float],
    discharge_wh: Sequence[float],
    temperature_max_c: Sequence[float | None],
    *,
    test_cycle: int,
    nominal_ah: float,
    cathode_mass_g: float | None,
    eol_threshold_ah: float,
) -> dict[str, float]:
    """The materials metrics of one cell from its per-cycle summaries (index = cycle).

    Keys are ``campaigns.base.Metric`` values: ``specific_energy`` (Wh per kg of
    cathode, discharge energy at the test cycle; absent without a cathode mass),
    ``discharge_capacity`` (Ah, first full cycle), ``capacity_retention`` (Q at the test
    cycle / Q at the first full cycle), ``peak_temperature`` (°C, whole test) and
    ``cycle_life`` (first cycle below the end-of-life capacity, else the cycles run: a
    lower bound).
    """
    n = len(discharge_ah)
    if n == 0:
        return {}
    first = min(1, n - 1)
    test = min(test_cycle, n - 1)
    q_first, q_test = float(discharge_ah[first]), float(discharge_ah[test])
    retention = q_test / q_first if q_first >= RETENTION_FLOOR * nominal_ah else 0.0
    below = [i for i in range(1, n) if discharge_ah[i] < eol_threshold_ah]
    metrics = {
        "discharge_capacity": q_first,
        "capacity_retention": retention,
        "cycle_life": float(below[0] if below else n),
    }
    temperatures = [t for t in temperature_max_c if t is not None]
    if temperatures:
        metrics["peak_temperature"] = float(max(temperatures))
    if cathode_mass_g:
        metrics["specific_energy"] = float(discharge_wh[test]) / (cathode_mass_g / 1000.0)
    return metrics


def cell_metrics(
    session: Session, experiment_id: str, **settings: float | int | None
) -> dict[str, float]:
    """:func:`materials_metrics` of one experiment's stored cycles."""
    rows = session.execute(
        select(
            Cycle.cycle_index,
            Cycle.discharge_capacity_ah,
            Cycle.discharge_energy_wh,
            Cycle.temperature_max_c,
        )
        .where(Cycle.experiment_id == experiment_id)
        .order_by(Cycle.cycle_index)
    ).all()
    rows = [r for i, r in enumerate(rows) if r.cycle_index == i]  # contiguous from cycle 0
    return materials_metrics(
        [r.discharge_capacity_ah for r in rows],
        [r.discharge_energy_wh for r in rows],
        [r.temperature_max_c for r in rows],
        **settings,  # type: ignore[arg-type]
    )


def gather_materials(
    session: Session,
    campaign_id: int,
    objective: str,
    **settings: float | int | None,
) -> CampaignKnowledge:
    """Observations of a materials campaign: the ``objective`` metric of each finished
    cell, every metric in ``outcomes``, and the material it was made of.

    ``settings`` go to :func:`materials_metrics`. Pending and tested entries are the
    candidates' parameters (``{"material_id": id}``). A safety-stopped cell is observed
    with a NaN objective but its real outcomes (the safety model learns from it).
    """
    rows = session.execute(
        select(Candidate, Experiment)
        .join(Experiment, Experiment.candidate_id == Candidate.id)
        .where(Candidate.campaign_id == campaign_id)
        .order_by(Candidate.id)
    ).all()
    knowledge = CampaignKnowledge([], [], [])
    for candidate, experiment in rows:
        parameters = {k: float(v) for k, v in candidate.parameters.items()}
        knowledge.tested.append(parameters)
        if not experiment.status.is_terminal:
            knowledge.pending.append(parameters)
            continue
        if experiment.status in _FINISHED_WITHOUT_RESULT:
            continue
        outcomes = cell_metrics(session, experiment.id, **settings)
        if not outcomes:
            continue
        value = outcomes.get(objective, float("nan"))
        if experiment.status == ExperimentStatus.SAFETY_STOPPED:
            value = float("nan")
        knowledge.observations.append(
            Observation(
                candidate.id,
                parameters,
                value,
                None,
                outcomes,
                material_id=candidate.material_id,
            )
        )
    return knowledge


@dataclass(frozen=True)
class OutcomeLimit:
    """A measured outcome the proposal must keep within ``lower``/``upper``."""

    metric: str
    upper: float | None
    lower: float | None
    safety: bool


def outcome_limits(spec: MaterialsCampaign) -> list[OutcomeLimit]:
    """A materials campaign's limits on measured outcomes: further objectives with a
    threshold (ε-constraints, decision 0006), then its constraints but thermal_risk
    (a score of the structure, not measured)."""
    limits = []
    for objective in spec.objectives[1:]:
        if objective.threshold is None:
            continue
        upper = objective.threshold if objective.direction == Direction.MINIMIZE else None
        lower = objective.threshold if objective.direction == Direction.MAXIMIZE else None
        limits.append(OutcomeLimit(objective.metric.value, upper, lower, False))
    for c in spec.constraints:
        if c.metric == Metric.THERMAL_RISK:
            continue
        safety = c.safe_mode and c.max is not None and c.min is None
        limits.append(OutcomeLimit(c.metric.value, c.max, c.min, safety))
    return limits


def meets_limits(limits: Sequence[OutcomeLimit], outcomes: dict[str, float]) -> bool:
    """True if every limit's outcome is measured and within its bounds."""
    for limit in limits:
        value = outcomes.get(limit.metric, math.nan)
        if not math.isfinite(value):
            return False
        if limit.upper is not None and value > limit.upper:
            return False
        if limit.lower is not None and value < limit.lower:
            return False
    return True
