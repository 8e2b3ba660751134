"""What the campaign has learned so far, read from the database for the proposer.

A candidate is *observed* once its cell reached end of life (measured cycle life,
small noise) or was early-predicted (the predictor's mean and std). Candidates with
experiments still in flight are *pending*. Constraint outcomes (peak cell
temperature) come from the stored cycle summaries.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voltloop.db.enums import ExperimentStatus
from voltloop.db.models import Candidate, Cycle, Experiment, Prediction
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
