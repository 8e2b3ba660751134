"""The pure rules behind the report's numbers: end of life, metrics, best-so-far,
Pareto front, loading sheet order, downsampling."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.orchestrator.report_model import (
    CandidateRow,
    best_so_far,
    candidate_metric_values,
    downsample,
    end_of_life_threshold,
    measured_end_of_life,
    objectives_of,
    parameter_names_of,
    pareto_mask,
)


def _candidate(cid: int, round_index: int, life: float | None) -> CandidateRow:
    return CandidateRow(
        id=cid, round_index=round_index, parameters={"CC1": 1.0}, material=None,
        acquisition_value=None, predicted_mean=None, predicted_std=None, status="observed",
        experiment_ids=(), observed_life=life, observed_source="predicted" if life else None,
    )  # fmt: skip


def test_threshold_is_fraction_of_nominal_capacity():
    spec = {"lifetime": {"end_of_life_capacity": 0.75}, "cell": {"nominal_capacity_Ah": 2.0}}
    assert end_of_life_threshold(spec) == pytest.approx(1.5)
    assert end_of_life_threshold({"lifetime": {}}) is None


def test_end_of_life_is_first_cycle_after_zero_below_threshold():
    index = np.arange(6)
    q = np.array([0.5, 1.0, 0.95, 0.79, 0.81, 0.7])  # cycle 0 is low but does not count
    assert measured_end_of_life(index, q, 0.8) == 3
    assert measured_end_of_life(index, q, 0.6) is None
    assert measured_end_of_life(index[:0], q[:0], 0.8) is None
    assert measured_end_of_life(index, q, None) is None


def test_metric_values_from_summaries():
    series = {
        "cycle_index": np.arange(4),
        "discharge_capacity_ah": np.array([2.0, 1.0, 0.9, 0.8]),
        "temperature_max_c": np.array([30.0, np.nan, 41.0, 33.0]),
        "charge_time_s": np.array([9e9, 600.0, 660.0, 720.0]),
        "discharge_energy_wh": np.ones(4),
        "duration_s": np.ones(4),
    }
    metrics = ["cycle_life", "capacity_retention", "peak_temperature", "charge_time",
               "discharge_capacity", "specific_energy"]  # fmt: skip
    values = candidate_metric_values(metrics, 123.0, [series])
    assert values["cycle_life"] == 123.0
    assert values["capacity_retention"] == pytest.approx(0.8)  # cycle 0 left out
    assert values["peak_temperature"] == 41.0
    assert values["charge_time"] == pytest.approx(11.0)
    assert values["discharge_capacity"] == pytest.approx(1.0)
    assert "specific_energy" not in values  # needs the cathode mass: not in the database
    assert "cycle_life" not in candidate_metric_values(["cycle_life"], None, [series])


def test_best_so_far_carries_the_best_forward():
    candidates = [_candidate(1, 0, 300.0), _candidate(2, 0, 500.0), _candidate(3, 1, 450.0),
                  _candidate(4, 2, None), _candidate(5, 3, 700.0)]  # fmt: skip
    rows = best_so_far(candidates, [0, 1, 2, 3])
    assert [r.best for r in rows] == [500.0, 500.0, 500.0, 700.0]
    assert [r.candidate_id for r in rows] == [2, 2, 2, 5]
    assert rows[0].round_values == (300.0, 500.0) and rows[2].round_values == ()
    assert [r.best for r in best_so_far(candidates, [0, 1], maximize=False)] == [300.0, 300.0]
    assert best_so_far([], [0])[0].best is None


def test_pareto_mask_both_directions():
    points = np.array([[1.0, 1.0], [2.0, 0.5], [0.5, 2.0], [0.9, 0.9], [2.0, 0.5]])
    assert pareto_mask(points, (True, True)).tolist() == [True, True, True, False, True]
    # minimise the second objective: [2, 0.5] dominates everything with x <= 2, y >= 0.5
    assert pareto_mask(points, (True, False)).tolist() == [False, True, False, False, True]
    with pytest.raises(ValueError, match="shape"):
        pareto_mask(points, (True,))


def test_downsample_keeps_ends_and_bounds_size():
    index = np.arange(1000)
    x, y = downsample(index, index * 2.0, 100)
    assert len(x) <= 100 and x[0] == 0 and x[-1] == 999
    assert np.all(y == 2.0 * x)
    x, _ = downsample(index[:50], index[:50], 100)
    assert len(x) == 50


def test_objectives_and_parameter_names_from_spec():
    spec = {
        "objectives": [{"metric": "specific_energy", "direction": "maximize"},
                       {"metric": "capacity_retention", "direction": "maximize", "threshold": 0.9}],
        "space": {"parameters": [{"name": "CC1"}, {"name": "CC2"}]},
    }  # fmt: skip
    objectives = objectives_of(spec)
    assert [o.metric for o in objectives] == ["specific_energy", "capacity_retention"]
    assert objectives[1].threshold == 0.9
    assert parameter_names_of(spec, []) == ("CC1", "CC2")
    assert parameter_names_of({}, [{"x": 1, "y": 2}, {"z": 3, "x": 0}]) == ("x", "y", "z")
