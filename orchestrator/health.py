"""The engine's cell-health monitor: voltloop.surrogates.lifetime health models.

After every EIS checkpoint the engine asks for a verdict on the cell: a failure-risk
SVM (RBF, trained on failing and healthy cells) and a one-class SVM (trained on
healthy cells) score its latest spectrum. ``review`` puts a warning in the audit
trail for a person to look at; ``stop`` stops the cell, which ends ``aborted``
with the scores in its reason. Before a campaign has five finished cells with a
spectrum, the models come from the same simulated history that pretrains the
lifetime predictor, so the first round is already watched. The models learn spectra
up to the early-prediction cycle; checkpoints after it (cells that run on to end of
life) get no verdict, as the models know nothing of cells that old.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from voltloop.orchestrator.ports import HealthAction, HealthVerdict


class CellHealthMonitor:
    """Implements ``orchestrator.ports.HealthMonitor``."""

    def __init__(self, history: Callable[[], list[dict[str, Any]]], up_to_cycle: int):
        self.history = history
        self.up_to_cycle = up_to_cycle
        self.last_note = ""

    def prepare(self, session: Session, campaign_id: int) -> str:
        from voltloop.surrogates.lifetime.dataset import LifetimeDataError
        from voltloop.surrogates.lifetime.health_training import (
            fit_health,
            latest_health_version,
            pretrain_health,
        )

        notes = []
        if latest_health_version(session, campaign_id) is None:
            try:
                pretrain_health(session, self.history(), self.up_to_cycle)
                notes.append("cell-health models pretrained on the simulated history")
            except LifetimeDataError as exc:
                notes.append(f"no pretrained cell-health models: {exc}")
        try:
            fit_health(session, campaign_id, up_to_cycle=self.up_to_cycle, history=self.history())
            notes.append("cell-health models refit on the campaign and the history")
        except LifetimeDataError as exc:
            notes.append(f"cell-health models not refit: {exc}")
        self.last_note = "; ".join(notes)
        return self.last_note

    def assess(self, session: Session, experiment_id: str) -> HealthVerdict | None:
        from sqlalchemy import func, select

        from voltloop.db.models import EisSpectrum, Experiment
        from voltloop.surrogates.lifetime.health_training import (
            assess_experiments,
            latest_health_version,
        )

        experiment = session.get(Experiment, experiment_id)
        version = latest_health_version(session, experiment.campaign_id)
        if version is None:
            return None
        latest = session.scalar(
            select(func.max(EisSpectrum.cycle_index)).where(
                EisSpectrum.experiment_id == experiment_id
            )
        )
        if latest is not None and latest > self.up_to_cycle:
            # the models learned what spectra look like up to ``up_to_cycle``: a cell
            # that runs on to end of life ages past that, and every later spectrum
            # would look anomalous (one run flagged 359 such checkpoints for review)
            return None
        (verdict,) = assess_experiments(session, [experiment_id], version)
        return HealthVerdict(
            action=HealthAction(verdict.action.value),
            failure_score=verdict.failure_score,
            anomaly_score=verdict.anomaly_score,
            model_version_id=version,
        )
