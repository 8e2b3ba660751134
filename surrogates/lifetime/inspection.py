"""Inspecting stored model versions: what ``voltloop models list|show|evaluate`` prints."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from voltloop.db.models import Campaign, ModelVersion, Prediction
from voltloop.surrogates.lifetime.dataset import MissingDataError, cycle_lives
from voltloop.surrogates.lifetime.training import (
    ARTIFACT_FORMAT,
    LIFETIME_KIND,
    UnknownModelError,
    load_model_version,
    resolve_campaign,
    training_cells,
)


def list_model_versions(
    session: Session, campaign: str | int | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    """Model versions (any kind) as plain dicts, newest first, artifacts left out."""
    statement = select(ModelVersion, Campaign.name).outerjoin(
        Campaign, Campaign.id == ModelVersion.campaign_id
    )
    if campaign is not None:
        statement = statement.where(
            ModelVersion.campaign_id == resolve_campaign(session, campaign).id
        )
    if kind is not None:
        statement = statement.where(ModelVersion.kind == kind)
    rows = session.execute(statement.order_by(ModelVersion.id.desc())).all()
    return [_describe(row, name) for row, name in rows]


def _describe(row: ModelVersion, campaign_name: str | None) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "kind": row.kind,
        "name": row.name,
        "version": int(row.version),
        "campaign": campaign_name,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "training_set_hash": row.training_set_hash,
        "artifact_format": row.artifact_format,
        "artifact_bytes": len(row.artifact) if row.artifact is not None else 0,
        "hyperparameters": row.hyperparameters,
        "metrics": row.metrics,
    }


def show_model_version(session: Session, model_version_id: int) -> dict[str, Any]:
    """One version in full; for lifetime models also the coefficient of each feature."""
    row = session.get(ModelVersion, model_version_id)
    if row is None:
        raise UnknownModelError(f"no model version {model_version_id}")
    campaign = session.get(Campaign, row.campaign_id) if row.campaign_id else None
    out = _describe(row, campaign.name if campaign else None)
    if row.kind == LIFETIME_KIND and row.artifact_format == ARTIFACT_FORMAT:
        model = load_model_version(session, model_version_id).model
        lin = model._model
        out["coefficients_per_std"] = dict(
            zip(model.feature_names, map(float, lin.coef), strict=True)
        )
        out["intercept_log10"] = float(lin.intercept)
        out["n_predictions"] = int(
            session.scalar(
                select(func.count())
                .select_from(Prediction)
                .where(Prediction.model_version_id == model_version_id)
            )
        )
    return out


def evaluate_model_version(
    session: Session, model_version_id: int, campaign: str | int, coverage: float = 0.9
) -> dict[str, Any]:
    """Score a stored lifetime version on the campaign's cells that reached end of life.

    Cells the version was trained on are scored too (it cannot tell); the figure is
    then optimistic, and the report says how many cells there were.
    """
    predictor = load_model_version(session, model_version_id)
    cells = training_cells(session, resolve_campaign(session, campaign), predictor.config)
    usable = [
        c
        for c in cells
        if c.end_of_life_cycle and c.end_of_life_cycle > predictor.config.early_cycle
    ]
    if not usable:
        raise MissingDataError(
            f"campaign {campaign!r} has no cell that reached end of life after cycle "
            f"{predictor.config.early_cycle}; nothing to evaluate on"
        )
    lives = cycle_lives(usable)
    estimate = predictor.predict_cells(
        [c.truncated(predictor.config.early_cycle) for c in usable], coverage
    )
    return {
        "model_version_id": model_version_id,
        "n_cells": len(usable),
        "mape": float(np.mean(np.abs(estimate.life - lives) / lives)),
        "mspe_log10": float(np.mean((np.log10(estimate.life) - np.log10(lives)) ** 2)),
        "analytic_mspe_log10": predictor.model.training_stats.get("analytic_mspe_log10"),
        "coverage": coverage,
        "empirical_coverage": float(np.mean((lives >= estimate.lower) & (lives <= estimate.upper))),
    }
