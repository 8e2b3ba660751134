"""Held-out evaluation of the lifetime models on cells with known lives.

:func:`evaluate_split` trains every requested model on ``train`` cells and scores
it on ``test`` cells from their first ``early_cycle`` cycles: mean absolute
percentage error (MAPE) of cycle life, mean squared error of log10 life (the
field's MSPE) and, for the elastic net, the empirical coverage of its 90 % CV+
interval and the analytic baseline error σ²(1 + p/(n − p − 1)) beside it.
Used by ``voltloop bench lifetime`` and ``voltloop models evaluate``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from voltloop.surrogates.lifetime.dataset import CellHistory, LifetimeDataError, cycle_lives
from voltloop.surrogates.lifetime.features import FEATURE_SETS, FeatureConfig, severson_features
from voltloop.surrogates.lifetime.sequence import SequenceConfig, SequenceLifetimeModel
from voltloop.surrogates.lifetime.training import EarlyLifePredictor


class ModelName(enum.StrEnum):
    ELASTIC_NET = "elastic_net"  # full Severson feature set
    ELASTIC_NET_VARIANCE = "elastic_net_variance"  # log var ΔQ only
    GRU = "gru"  # encoder–decoder, causal
    HYBRID = "hybrid"  # physics-informed GRU + monotone accumulator


def usable_cells(
    cells: Sequence[CellHistory], early_cycle: int
) -> tuple[list[CellHistory], dict[str, str]]:
    """Cells with an observed end of life past ``early_cycle`` whose features compute."""
    config = FeatureConfig(early_cycle=early_cycle)
    kept, dropped = [], {}
    for cell in cells:
        eol = cell.end_of_life_cycle or cell.observed_end_of_life()
        if eol is None:
            dropped[cell.cell_id] = "no end of life within the cycles run (censored)"
            continue
        if eol <= early_cycle:
            dropped[cell.cell_id] = f"end of life at cycle {eol}, before the early window"
            continue
        try:
            severson_features(cell, config)
        except LifetimeDataError as exc:
            dropped[cell.cell_id] = str(exc)
            continue
        kept.append(cell)
    return kept, dropped


def _errors(predicted: np.ndarray, lives: np.ndarray) -> dict[str, float]:
    return {
        "mape": float(np.mean(np.abs(predicted - lives) / lives)),
        "mspe_log10": float(np.mean((np.log10(predicted) - np.log10(lives)) ** 2)),
    }


def _static(cells: Sequence[CellHistory], early_cycle: int) -> np.ndarray:
    config = FeatureConfig(early_cycle=early_cycle)
    names = FEATURE_SETS["discharge"]
    rows = [list(severson_features(c, config, names).values()) for c in cells]
    protocol = [[c.protocol.get(k, 0.0) for k in sorted(c.protocol)] for c in cells]
    return np.hstack([np.asarray(rows), np.asarray(protocol).reshape(len(cells), -1)])


def evaluate_split(
    train: Sequence[CellHistory],
    test: Sequence[CellHistory],
    early_cycle: int,
    models: Sequence[ModelName] = tuple(ModelName),
    sequence_config: SequenceConfig | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Figures per model for one train/test split (see module docstring)."""
    lives = cycle_lives(list(test))
    out: dict[str, Any] = {}
    config = FeatureConfig(early_cycle=early_cycle)
    for name in models:
        started = time.perf_counter()
        if name in (ModelName.ELASTIC_NET, ModelName.ELASTIC_NET_VARIANCE):
            feature_set = "full" if name == ModelName.ELASTIC_NET else "variance"
            predictor = EarlyLifePredictor.fit(train, config, feature_set, seed=seed)
            estimate = predictor.predict_cells(test, 0.9)
            figures = _errors(estimate.life, lives)
            figures["coverage_90"] = float(
                np.mean((lives >= estimate.lower) & (lives <= estimate.upper))
            )
            stats = predictor.model.training_stats
            figures["analytic_mspe_log10"] = stats["analytic_mspe_log10"]
            figures["n_active_features"] = stats["n_active_features"]
        else:
            base = sequence_config or SequenceConfig()
            cfg = replace(base, early_cycle=early_cycle, hybrid=name == ModelName.HYBRID, seed=seed)
            static_train, static_test = _static(train, early_cycle), _static(test, early_cycle)
            model = SequenceLifetimeModel(cfg).fit(train, static_train)
            predicted, censored = model.predict(test, static_test)
            figures = _errors(predicted, lives)
            figures["censored_forecasts"] = int(np.sum(censored))
        figures["fit_predict_s"] = time.perf_counter() - started
        out[str(name)] = figures
    return out
