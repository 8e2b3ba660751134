"""Sequence forecasters (GRU, hybrid) in the retraining API: fit, store, predict.

The forecasters get static context: the Severson "discharge" features at the
early cycle and the protocol parameters (named in the stored version, so a
prediction uses exactly the training inputs). Versions have kind
``lifetime_sequence``; the elastic net stays the default predictor
(:func:`training.predict`) because it measured best (docs/lifetime.md) — the
orchestrator asks for a sequence version by id. Forecasts carry no interval: the
prediction row's std is NULL, never a made-up number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from voltloop.db.ingest import store_prediction
from voltloop.db.models import Experiment, ModelVersion
from voltloop.surrogates.lifetime import artifacts
from voltloop.surrogates.lifetime.dataset import (
    CellHistory,
    LifetimeDataError,
    MissingDataError,
    cycle_lives,
)
from voltloop.surrogates.lifetime.features import FEATURE_SETS, FeatureConfig, feature_matrix
from voltloop.surrogates.lifetime.sequence import SequenceConfig, SequenceLifetimeModel
from voltloop.surrogates.lifetime.training import (
    UnknownModelError,
    cell_from_db,
    resolve_campaign,
    store_model_version,
    training_cells,
    training_set_hash,
)

SEQUENCE_KIND = "lifetime_sequence"


@dataclass
class SequencePredictor:
    model: SequenceLifetimeModel
    feature_names: list[str]
    protocol_names: list[str]

    def static(self, cells: Sequence[CellHistory]) -> np.ndarray:
        """Static inputs (n, features + protocol parameters)."""
        config = FeatureConfig(early_cycle=self.model.config.early_cycle)
        X = feature_matrix(cells, self.feature_names, config)
        rows = []
        for cell in cells:
            missing = [k for k in self.protocol_names if k not in cell.protocol]
            if missing:
                raise MissingDataError(
                    f"cell {cell.cell_id}: protocol parameter(s) {', '.join(missing)} missing"
                )
            rows.append([cell.protocol[k] for k in self.protocol_names])
        return np.hstack([X, np.asarray(rows, float).reshape(len(cells), -1)])

    @classmethod
    def fit(cls, cells: Sequence[CellHistory], config: SequenceConfig) -> SequencePredictor:
        if len(cells) < 6:
            raise LifetimeDataError(f"need at least 6 cells at end of life; got {len(cells)}")
        longest = float(np.max(cycle_lives(list(cells))))
        horizon = int(np.ceil(1.5 * longest / config.stride)) * config.stride
        config = replace(config, max_cycle=max(horizon, config.early_cycle + config.stride))
        protocol_names = sorted(set.intersection(*(set(c.protocol) for c in cells)))
        predictor = cls(
            SequenceLifetimeModel(config), list(FEATURE_SETS["discharge"]), protocol_names
        )
        predictor.model.fit(cells, predictor.static(cells))
        return predictor

    def predict_cells(self, cells: Sequence[CellHistory]) -> tuple[np.ndarray, np.ndarray]:
        """Lives (n,) and censored flags (n,)."""
        return self.model.predict(cells, self.static(cells))

    def to_blob(self) -> bytes:
        arrays, meta = self.model.to_arrays()
        meta.update(feature_names=self.feature_names, protocol_names=self.protocol_names)
        return artifacts.pack(arrays, meta)

    @classmethod
    def from_blob(cls, blob: bytes) -> SequencePredictor:
        arrays, meta = artifacts.unpack(blob)
        return cls(
            SequenceLifetimeModel.from_arrays(arrays, meta),
            list(meta["feature_names"]),
            list(meta["protocol_names"]),
        )


def fit_sequence(
    session: Session,
    campaign: str | int | None = None,
    history: Sequence[dict[str, Any]] | None = None,
    config: SequenceConfig | None = None,
) -> int:
    """Train a forecaster (default: the hybrid) on the campaign's finished cells and/or
    historical cells; store it and return the model version id."""
    config = config or SequenceConfig(hybrid=True, stride=10, epochs=80)
    cells: list[CellHistory] = []
    campaign_id = None
    if campaign is not None:
        row = resolve_campaign(session, campaign)
        campaign_id = row.id
        cells += training_cells(session, row, FeatureConfig(early_cycle=config.early_cycle))
    cells += [CellHistory.from_dict(c) for c in history or ()]
    cells = [c for c in cells if (c.end_of_life_cycle or c.observed_end_of_life())]
    predictor = SequencePredictor.fit(cells, config)
    kind = "hybrid" if config.hybrid else config.cell
    name = f"{'lifetime' if campaign_id is None else resolve_campaign(session, campaign).name}"
    return store_model_version(
        session,
        kind=SEQUENCE_KIND,
        name=f"{name}/lifetime-{kind}@{config.early_cycle}",
        campaign_id=campaign_id,
        blob=predictor.to_blob(),
        training_hash=training_set_hash(cells),
        hyperparameters={
            "model": kind,
            **asdict(predictor.model.config),
            "static_features": predictor.feature_names,
            "protocol_parameters": predictor.protocol_names,
        },
        metrics={"n_cells": len(cells), "final_loss": predictor.model.loss_history[-1]},
    )


def predict_sequence(
    session: Session, experiment_id: str, cycles_seen: int, model_version_id: int
) -> tuple[float, bool]:
    """Forecast one experiment's life with a stored sequence version and store it.

    Returns (life, censored). A censored forecast (no crossing of 80 % within the
    horizon) is not stored: its "life" is only the horizon.
    """
    row = session.get(ModelVersion, model_version_id)
    if row is None or row.kind != SEQUENCE_KIND or row.artifact is None:
        raise UnknownModelError(f"no sequence lifetime model version {model_version_id}")
    if session.get(Experiment, experiment_id) is None:
        raise UnknownModelError(f"no experiment {experiment_id!r}")
    predictor = SequencePredictor.from_blob(row.artifact)
    need = predictor.model.config.early_cycle
    if cycles_seen < need:
        raise MissingDataError(
            f"model version {model_version_id} predicts from {need} cycles; experiment "
            f"{experiment_id} has seen {cycles_seen}"
        )
    cell = cell_from_db(session, experiment_id, (10, need), up_to_cycle=cycles_seen)
    lives, censored = predictor.predict_cells([cell])
    if not censored[0]:
        store_prediction(session, experiment_id, model_version_id, cycles_seen, float(lives[0]))
    return float(lives[0]), bool(censored[0])
