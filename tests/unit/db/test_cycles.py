"""Cycle summaries computed from raw series, and raw series validation."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.db.cycles import CycleData, normalise_series, summarise_series
from voltloop.db.errors import InvalidRecordError


def _square_cycle() -> dict[str, np.ndarray]:
    """1 A charge for 3600 s at 3.5 V, then 0.5 A discharge for 3600 s at 3.0 V (1 s steps)."""
    t = np.arange(7201, dtype=np.float64)
    current = np.where(t < 3600, 1.0, -0.5)
    voltage = np.where(t < 3600, 3.5, 3.0)
    temperature = 25.0 + (t / 7200.0) * 5.0
    return {"t_s": t, "voltage_V": voltage, "current_A": current, "temperature_C": temperature}


def test_summary_of_a_square_cycle() -> None:
    summary = summarise_series(normalise_series(_square_cycle()), internal_resistance_ohm=0.03)
    assert summary.charge_capacity_ah == pytest.approx(1.0, rel=1e-3)
    assert summary.discharge_capacity_ah == pytest.approx(0.5, rel=1e-3)
    assert summary.coulombic_efficiency == pytest.approx(0.5, rel=2e-3)
    assert summary.charge_energy_wh == pytest.approx(3.5, rel=1e-3)
    assert summary.discharge_energy_wh == pytest.approx(1.5, rel=1e-3)
    assert summary.charge_time_s == pytest.approx(3600.0)
    assert summary.cv_time_s == pytest.approx(3600.0)  # the whole charge sits at its max voltage
    assert (summary.temperature_min_c, summary.temperature_max_c) == (25.0, 30.0)
    assert summary.temperature_mean_c == pytest.approx(27.5, abs=1e-3)
    assert (summary.t_start_s, summary.t_end_s, summary.sample_count) == (0.0, 7200.0, 7201)
    assert summary.internal_resistance_ohm == 0.03


def test_cycler_reported_capacities_take_precedence() -> None:
    series = _square_cycle()
    series["charge_Ah"] = np.full(7201, 1.25)
    series["discharge_Ah"] = np.full(7201, 1.2)
    summary = summarise_series(normalise_series(series))
    assert summary.charge_capacity_ah == pytest.approx(1.25)
    assert summary.discharge_capacity_ah == pytest.approx(1.2)


def test_cv_time_counts_only_the_hold_near_the_cv_voltage() -> None:
    t = np.arange(100, dtype=float)
    voltage = np.where(t < 60, 3.3 + t * 0.005, 3.6)
    current = np.where(t < 60, 2.0, np.linspace(2.0, 0.1, 100))
    series = {"t_s": t, "voltage_V": voltage, "current_A": current, "temperature_C": t * 0}
    summary = summarise_series(normalise_series(series), cv_voltage_V=3.6)
    assert summary.charge_time_s == pytest.approx(99.0)
    assert summary.cv_time_s == pytest.approx(40.0, abs=1.0)


def test_structured_records_are_accepted_and_cast() -> None:
    dtype = np.dtype([("record", "<i8"), ("t_s", "<f8"), ("cycle", "<i4"), ("step", "<i4"),
                      ("voltage_V", "<f4"), ("current_A", "<f4"), ("temperature_C", "<f4"),
                      ("charge_Ah", "<f4"), ("discharge_Ah", "<f4")])  # fmt: skip
    records = np.zeros(4, dtype=dtype)
    records["t_s"] = np.arange(4)
    columns = normalise_series(records)
    assert "cycle" not in columns and columns["record"].dtype == np.dtype("<i8")
    assert CycleData.from_series(2, records).summary.sample_count == 4


def test_float64_measurements_are_stored_as_float32() -> None:
    columns = normalise_series(_square_cycle())
    assert columns["voltage_V"].dtype == np.float32 and columns["t_s"].dtype == np.float64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"voltage_V": np.zeros(3)}, "has 3 samples"),
        ({"current_A": np.zeros((7201, 1))}, "must be 1-D"),
    ],
)
def test_inconsistent_series_are_refused(change: dict, message: str) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        normalise_series({**_square_cycle(), **change})


def test_negative_cycle_index_is_refused() -> None:
    with pytest.raises(InvalidRecordError, match="cycle_index"):
        CycleData.from_series(-1, _square_cycle())


def test_empty_series_gives_a_zero_summary() -> None:
    empty = {name: np.empty(0) for name in ("t_s", "voltage_V", "current_A", "temperature_C")}
    assert summarise_series(normalise_series(empty)).sample_count == 0


def test_nan_in_optional_fields_means_not_measured() -> None:
    from voltloop.db.cycles import CycleSummary

    summary = CycleSummary(1.0, 0.9, 3.3, 3.0, 0.0, 10.0, 5, internal_resistance_ohm=float("nan"))
    assert summary.internal_resistance_ohm is None
    assert summary.as_row()["internal_resistance_ohm"] is None
    with pytest.raises(InvalidRecordError, match="cv_time_s is not finite"):
        CycleSummary(1.0, 0.9, 3.3, 3.0, 0.0, 10.0, 5, cv_time_s=float("inf"))
