"""The early-life predictor's documented fallbacks and errors."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.surrogates.lifetime import artifacts, synthetic
from voltloop.surrogates.lifetime.dataset import LifetimeDataError, MissingDataError
from voltloop.surrogates.lifetime.features import FeatureConfig
from voltloop.surrogates.lifetime.training import EarlyLifePredictor

KW = {"curve_cycles": (10, 50, 100), "eis_every": 0}


@pytest.fixture(scope="module")
def cells() -> list:
    cells = synthetic.make_cells(14, seed=21, low=300, high=900, **KW)
    for i, cell in enumerate(cells):
        cell.protocol = {"CC1": 4.0 + (i % 3), "CC2": 5.0}
    return cells


def test_single_protocol_is_noted_not_hidden(cells: list) -> None:
    same = synthetic.make_cells(8, seed=22, low=300, high=900, **KW)
    for cell in same:
        cell.protocol = {"CC1": 4.8, "CC2": 4.8}
    predictor = EarlyLifePredictor.fit(same, FeatureConfig())
    assert "one protocol" in predictor.dropped["(note)"]
    assert "(note)" not in EarlyLifePredictor.fit(cells, FeatureConfig()).dropped


def test_missing_resistance_column_drops_those_features_with_reasons(cells: list) -> None:
    for cell in cells[:2]:
        cell.summary["internal_resistance_ohm"] = np.full(cell.n_cycles, np.nan)
    try:
        predictor = EarlyLifePredictor.fit(cells, FeatureConfig())
    finally:
        for cell in cells[:2]:
            cell.summary["internal_resistance_ohm"] = np.full(cell.n_cycles, 0.02)
    assert {"ir_min", "ir_first", "ir_change"} <= set(predictor.dropped)
    assert not {"ir_min", "ir_first", "ir_change"} & set(predictor.feature_names)
    estimate = predictor.predict_cells(cells[:3])
    assert np.all(np.isfinite(estimate.life))


def test_prediction_from_fewer_cycles_than_the_model_needs(cells: list) -> None:
    predictor = EarlyLifePredictor.fit(cells, FeatureConfig())
    with pytest.raises(MissingDataError, match="cycle 100"):
        predictor.predict_cells([cells[0].truncated(70)])
    at_50 = EarlyLifePredictor.fit(cells, FeatureConfig(early_cycle=50))
    assert at_50.predict_cells([cells[0].truncated(70)]).life.shape == (1,)


def test_too_few_cells_and_round_trip(cells: list) -> None:
    with pytest.raises(LifetimeDataError, match="at least 6"):
        EarlyLifePredictor.fit(cells[:3])
    predictor = EarlyLifePredictor.fit(cells, FeatureConfig(early_cycle=50))
    again = EarlyLifePredictor.from_arrays(
        *artifacts.unpack(artifacts.pack(*predictor.to_arrays()))
    )
    assert again.config.early_cycle == 50
    assert np.allclose(again.predict_cells(cells).life, predictor.predict_cells(cells).life)
