"""Severson features on synthetic cells whose ΔQ(V) is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.surrogates.lifetime import features as feat
from voltloop.surrogates.lifetime import synthetic
from voltloop.surrogates.lifetime.dataset import CellHistory, MissingDataError

WINDOW = feat.FeatureConfig(voltage_window_V=(3.0, 3.5))


def _q0(seed: int) -> float:
    rng = np.random.default_rng(seed)
    return synthetic.NOMINAL_AH * (1.0 + rng.normal(0.0, 0.003))


@pytest.mark.parametrize("life", [300.0, 800.0, 1500.0])
def test_delta_q_variance_matches_closed_form(life: float) -> None:
    cell = synthetic.make_cell(life, 3, noise_V=0.0, noise_Ah=0.0, curve_points=2000)
    grid, dq = feat.delta_q_curve(cell, WINDOW)
    delta = (_q0(3) - 0.88) * (10**2 - 100**2) / life**2
    expected = delta**2 * np.var(synthetic.logistic_shape(grid))
    assert np.var(dq) == pytest.approx(expected, rel=1e-3)
    feats = feat.severson_features(cell, WINDOW, ["log_var_dq", "log_abs_mean_dq"])
    assert feats["log_var_dq"] == pytest.approx(np.log10(expected), abs=1e-3)
    expected_mean = abs(delta) * np.mean(synthetic.logistic_shape(grid))
    assert feats["log_abs_mean_dq"] == pytest.approx(np.log10(expected_mean), abs=1e-3)


def test_noisy_shuffled_series_are_cleaned_to_a_monotone_q_of_v() -> None:
    rng = np.random.default_rng(0)
    s = np.linspace(0.002, 0.998, 3000)
    q = 1.1 * s
    v = synthetic.V_MID - synthetic.V_WIDTH * np.log(s / (1 - s))
    noisy_v = v + rng.normal(0.0, 2e-3, v.size)  # folds the flat plateau back on itself
    order = rng.permutation(v.size)  # records out of order
    grid = np.linspace(3.0, 3.5, 1000)
    q_grid = feat.capacity_on_voltage_grid(noisy_v[order], q[order], grid)
    assert np.all(np.diff(q_grid) <= 1e-12), "Q(V) must fall as V rises"
    truth = 1.1 * synthetic.logistic_shape(grid)
    assert np.max(np.abs(q_grid - truth)) < 0.03


def test_fade_features_recover_a_planted_line() -> None:
    cell = synthetic.make_cell(1000.0, 5, noise_Ah=0.0)
    cell.summary["discharge_capacity_Ah"] = 1.1 - 1e-4 * cell.cycle_index.astype(float)
    feats = feat.severson_features(
        cell, feat.FeatureConfig(), ["fade_slope_full", "fade_intercept_tail", "q_first"]
    )
    assert feats["fade_slope_full"] == pytest.approx(-1e-4, rel=1e-9)
    assert feats["fade_intercept_tail"] == pytest.approx(1.1, rel=1e-9)
    assert feats["q_first"] == pytest.approx(1.1 - 2e-4)


def test_early_cycle_is_configurable() -> None:
    cell = synthetic.make_cell(600.0, 2)
    at_50 = feat.severson_features(cell, feat.FeatureConfig(early_cycle=50))
    at_100 = feat.severson_features(cell, feat.FeatureConfig(early_cycle=100))
    assert at_50["log_var_dq"] < at_100["log_var_dq"]  # less fade seen by cycle 50


def test_too_few_cycles_is_a_clear_error() -> None:
    cell = synthetic.make_cell(600.0, 2).truncated(80)
    with pytest.raises(MissingDataError, match="cycle 100"):
        feat.severson_features(cell)


def test_missing_raw_series_is_a_clear_error() -> None:
    cell = synthetic.make_cell(600.0, 2, curve_cycles=(10,))
    with pytest.raises(MissingDataError, match="no raw discharge series for cycle 100"):
        feat.severson_features(cell, names=["log_var_dq"])


def test_nan_raw_series_is_an_error_not_a_zero() -> None:
    cell = synthetic.make_cell(600.0, 2)
    curve = cell.discharge_curves[100]
    curve.voltage_V[5:] = np.nan
    with pytest.raises(feat.FeatureError, match="finite"):
        feat.severson_features(cell, names=["log_var_dq"])


def test_identical_curves_have_no_log_variance() -> None:
    cell = synthetic.make_cell(600.0, 2, noise_V=0.0)
    cell.discharge_curves[100] = cell.discharge_curves[10]
    with pytest.raises(feat.FeatureError, match="log10"):
        feat.severson_features(cell, WINDOW, names=["log_var_dq"])


def test_nan_cycles_in_a_window_fall_back_only_while_half_remain() -> None:
    cell = synthetic.make_cell(600.0, 2)
    q = cell.summary["discharge_capacity_Ah"]
    q[(cell.cycle_index >= 91) & (cell.cycle_index <= 94)] = np.nan  # 4 of 10 missing
    feat.severson_features(cell, names=["fade_slope_tail"])
    q[(cell.cycle_index >= 91) & (cell.cycle_index <= 97)] = np.nan  # 7 of 10 missing
    with pytest.raises(MissingDataError, match="finite values"):
        feat.severson_features(cell, names=["fade_slope_tail"])


def test_missing_column_drops_only_that_feature_with_a_reason() -> None:
    cells = synthetic.make_cells(3, seed=4)
    cells[1].summary["internal_resistance_ohm"][:] = np.nan
    kept, dropped = feat.available_features(cells, feat.FEATURE_SETS["full"])
    assert set(dropped) == {"ir_min", "ir_first", "ir_change"}
    assert "temperature_max" in kept and "log_var_dq" in kept
    assert all("NaN" in r or "finite" in r for r in dropped.values())
    with pytest.raises(MissingDataError):
        feat.feature_matrix(cells, feat.FEATURE_SETS["full"])


def test_matrix_shape_and_unknown_feature() -> None:
    cells = synthetic.make_cells(4, seed=1)
    X = feat.feature_matrix(cells, feat.FEATURE_SETS["full"])
    assert X.shape == (4, len(feat.FEATURE_SETS["full"]))
    assert np.isfinite(X).all()
    with pytest.raises(feat.FeatureError, match="unknown"):
        feat.severson_features(cells[0], names=["nope"])


def test_config_rejects_impossible_windows() -> None:
    with pytest.raises(ValueError):
        feat.FeatureConfig(early_cycle=5, reference_cycle=10)


def test_round_trip_through_the_plain_layout() -> None:
    cell = synthetic.make_cell(500.0, 9)
    again = CellHistory.from_dict(cell.to_dict())
    assert np.array_equal(
        again.summary["discharge_capacity_Ah"], cell.summary["discharge_capacity_Ah"]
    )
    assert feat.severson_features(again) == feat.severson_features(cell)


def test_a_checkpoint_wait_does_not_dominate_the_temperature_integral() -> None:
    cell = synthetic.make_cell(1000.0, 6, noise_Ah=0.0)
    n = cell.cycle_index.size
    per_cycle = np.full(n, 35.0 * 2300.0)  # °C·s: 35 °C over a 2,300 s cycle
    cell.summary["temperature_integral_Cs"] = per_cycle.copy()
    plain = feat.severson_features(cell, names=["temperature_integral"])["temperature_integral"]
    assert plain == pytest.approx(35.0 * 2300.0 * 99)  # cycles 2..100 of the window
    waited = per_cycle.copy()
    waited[[49, 99]] = 30.0 * 2e5  # two checkpoint cycles that waited ~2 days each
    cell.summary["temperature_integral_Cs"] = waited
    robust = feat.severson_features(cell, names=["temperature_integral"])["temperature_integral"]
    assert robust == pytest.approx(plain)
    assert waited[2:101].sum() > 2 * plain  # what a plain sum would have made of it
