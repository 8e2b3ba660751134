"""Cell-health models over the database: fit per campaign, assess live cells.

Labels: a training cell is *failing* if it ended ``failed``/``safety_stopped`` or
reached end of life before ``short_life_fraction`` × the median life of the
training cells (default 0.6: the short-lived tail the loop should stop early).
Features: EIS features (:mod:`.eis_features`) of each cell's latest spectrum at or
before the early-prediction cycle. The anomaly detector learns from the healthy
cells only. Both SVMs go into one ``model_version`` of kind ``cell_health``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from voltloop.db.enums import ExperimentStatus
from voltloop.db.models import Experiment, ModelVersion
from voltloop.surrogates.lifetime import artifacts
from voltloop.surrogates.lifetime.dataset import CellHistory, LifetimeDataError, cycle_lives
from voltloop.surrogates.lifetime.eis_features import EIS_FEATURES, eis_feature_matrix
from voltloop.surrogates.lifetime.health import (
    AnomalyDetector,
    FailureRiskClassifier,
    HealthAssessment,
    assess,
)
from voltloop.surrogates.lifetime.training import (
    HEALTH_KIND,
    UnknownModelError,
    cell_from_db,
    resolve_campaign,
    store_model_version,
    training_set_hash,
)

FAILED_STATUSES = (ExperimentStatus.FAILED, ExperimentStatus.SAFETY_STOPPED)


@dataclass
class CellHealthModels:
    classifier: FailureRiskClassifier | None
    detector: AnomalyDetector
    up_to_cycle: int
    notes: dict[str, str]
    model_version_id: int | None = None

    @classmethod
    def fit(
        cls,
        cells: Sequence[CellHistory],
        failing: np.ndarray,
        up_to_cycle: int,
        names: Sequence[str] = EIS_FEATURES,
    ) -> CellHealthModels:
        """cells (n,) with spectra, failing (n,) bool labels."""
        X = eis_feature_matrix(cells, names, up_to_cycle)
        failing = np.asarray(failing, bool)
        notes: dict[str, str] = {}
        classifier = None
        try:
            classifier = FailureRiskClassifier(names).fit(X, failing)
        except LifetimeDataError as exc:  # documented fallback: anomaly detector only
            notes["classifier"] = f"not trained: {exc}"
        detector = AnomalyDetector(names).fit(X[~failing])
        return cls(classifier, detector, up_to_cycle, notes)

    def assess(self, cells: Sequence[CellHistory]) -> list[HealthAssessment]:
        X = eis_feature_matrix(cells, self.detector.feature_names, None)
        return assess([c.cell_id for c in cells], X, self.classifier, self.detector)

    def to_blob(self) -> bytes:
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"up_to_cycle": self.up_to_cycle, "notes": self.notes}
        det_arrays, meta["detector"] = self.detector.to_arrays()
        arrays["detector/pipeline"] = det_arrays["pipeline"]
        if self.classifier is not None:
            clf_arrays, meta["classifier"] = self.classifier.to_arrays()
            arrays["classifier/pipeline"] = clf_arrays["pipeline"]
        return artifacts.pack(arrays, meta)

    @classmethod
    def from_blob(cls, blob: bytes) -> CellHealthModels:
        arrays, meta = artifacts.unpack(blob)
        detector = AnomalyDetector.from_arrays(
            {"pipeline": arrays["detector/pipeline"]}, meta["detector"]
        )
        classifier = None
        if "classifier/pipeline" in arrays:
            classifier = FailureRiskClassifier.from_arrays(
                {"pipeline": arrays["classifier/pipeline"]}, meta["classifier"]
            )
        return cls(classifier, detector, int(meta["up_to_cycle"]), dict(meta["notes"]))


def failure_labels(
    cells: Sequence[CellHistory], failed: Sequence[bool], short_life_fraction: float = 0.6
) -> np.ndarray:
    """failing (n,): failed/safety-stopped, or life < fraction × median life."""
    lives = cycle_lives(list(cells))
    return np.asarray(failed, bool) | (lives < short_life_fraction * np.median(lives))


def fit_health(
    session: Session,
    campaign: str | int,
    up_to_cycle: int = 100,
    short_life_fraction: float = 0.6,
    history: Sequence[dict[str, Any]] | None = None,
) -> int:
    """Fit both SVMs on the campaign's finished cells with spectra, and on ``history``
    (plain dicts, as for ``pretrain_health``) if given; returns the version id."""
    row = resolve_campaign(session, campaign)
    experiments = session.execute(
        select(Experiment.id, Experiment.status).where(Experiment.campaign_id == row.id)
    ).all()
    cells, failed = [], []
    for experiment_id, status in experiments:
        cell = cell_from_db(session, experiment_id)
        has_spectrum = any(s.cycle <= up_to_cycle for s in cell.spectra)
        if has_spectrum and (cell.end_of_life_cycle is not None or status in FAILED_STATUSES):
            if cell.end_of_life_cycle is None:  # failed early: count it as life = last cycle
                cell.end_of_life_cycle = max(cell.last_cycle, 1)
            cells.append(cell)
            failed.append(status in FAILED_STATUSES)
    if len(cells) < 5:
        raise LifetimeDataError(
            f"campaign {row.name!r} has {len(cells)} finished cells with an EIS spectrum up to "
            f"cycle {up_to_cycle}; the health models need at least 5"
        )
    for cell in _history_cells(history or (), up_to_cycle):
        cells.append(cell)
        failed.append(False)
    labels = failure_labels(cells, failed, short_life_fraction)
    return _store(
        session, cells, labels, f"{row.name}/cell-health@{up_to_cycle}", row.id, up_to_cycle,
        short_life_fraction,
    )  # fmt: skip


def _history_cells(history: Sequence[dict[str, Any]], up_to_cycle: int) -> list[CellHistory]:
    """Historical cells with a spectrum up to ``up_to_cycle`` and an end of life."""
    cells = [CellHistory.from_dict(c) for c in history]
    cells = [
        c
        for c in cells
        if any(s.cycle <= up_to_cycle for s in c.spectra)
        and (c.end_of_life_cycle or c.observed_end_of_life()) is not None
    ]
    for cell in cells:
        cell.end_of_life_cycle = cell.end_of_life_cycle or cell.observed_end_of_life()
    return cells


def pretrain_health(
    session: Session,
    history: Sequence[dict[str, Any]],
    up_to_cycle: int = 100,
    short_life_fraction: float = 0.6,
) -> int:
    """Fit both SVMs on a generated historical dataset (plain dicts, as for the lifetime
    models' ``pretrain``), stored without a campaign; returns the version id."""
    cells = [CellHistory.from_dict(c) for c in history]
    cells = [
        c
        for c in cells
        if any(s.cycle <= up_to_cycle for s in c.spectra)
        and (c.end_of_life_cycle or c.observed_end_of_life()) is not None
    ]
    if len(cells) < 5:
        raise LifetimeDataError(
            f"the historical dataset has {len(cells)} cells with an EIS spectrum up to cycle "
            f"{up_to_cycle} and an end of life; the health models need at least 5"
        )
    for cell in cells:
        cell.end_of_life_cycle = cell.end_of_life_cycle or cell.observed_end_of_life()
    labels = failure_labels(cells, [False] * len(cells), short_life_fraction)
    return _store(
        session, cells, labels, f"cell-health-pretrained@{up_to_cycle}", None, up_to_cycle,
        short_life_fraction,
    )  # fmt: skip


def latest_health_version(session: Session, campaign_id: int | None) -> int | None:
    """The campaign's newest cell-health version, else the newest pretrained one."""
    rows = session.execute(
        select(ModelVersion.id, ModelVersion.campaign_id)
        .where(ModelVersion.kind == HEALTH_KIND)
        .order_by(ModelVersion.id.desc())
    ).all()
    for scope in (campaign_id, None):
        for rid, cid in rows:
            if cid == scope:
                return int(rid)
    return None


def _store(
    session: Session,
    cells: Sequence[CellHistory],
    labels: np.ndarray,
    name: str,
    campaign_id: int | None,
    up_to_cycle: int,
    short_life_fraction: float,
) -> int:
    models = CellHealthModels.fit(cells, labels, up_to_cycle)
    return store_model_version(
        session,
        kind=HEALTH_KIND,
        name=name,
        campaign_id=campaign_id,
        blob=models.to_blob(),
        training_hash=training_set_hash(cells),
        hyperparameters={
            "up_to_cycle": up_to_cycle,
            "short_life_fraction": short_life_fraction,
            "features": list(EIS_FEATURES),
            "nu": models.detector.nu,
            "gamma": models.detector.gamma,
        },
        metrics={
            "n_cells": len(cells),
            "n_failing": int(labels.sum()),
            "cv_balanced_accuracy": models.classifier.cv_score if models.classifier else None,
            **models.notes,
        },
    )


def assess_experiments(
    session: Session, experiment_ids: Sequence[str], model_version_id: int
) -> list[HealthAssessment]:
    """Scores and actions (continue / review / stop) for live cells, from their latest spectra."""
    row = session.get(ModelVersion, model_version_id)
    if row is None or row.kind != HEALTH_KIND or row.artifact is None:
        raise UnknownModelError(f"no cell-health model version {model_version_id}")
    models = CellHealthModels.from_blob(row.artifact)
    cells = [cell_from_db(session, e) for e in experiment_ids]
    return models.assess(cells)
