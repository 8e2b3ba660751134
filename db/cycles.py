"""What one cycle is in the database: a summary row plus its raw sample series.

:class:`CycleData` is the unit the ingest API takes. :func:`summarise_series`
computes the summary columns from the raw samples the way the orchestrator does
when the cycler does not report them itself. Raw series columns and their stored
dtypes follow the cycler's sample record (drivers/records.py): time in float64
(a long test needs sub-second resolution at 10^7 s), measurements in float32 as
the instrument reports them (docs/decisions/0011-array-blob-format.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InvalidRecordError

#: Raw series columns the cycle blob may hold, with the dtype each is stored in.
SERIES_DTYPES: dict[str, np.dtype] = {
    "t_s": np.dtype("<f8"),  # test time since the experiment started, s
    "voltage_V": np.dtype("<f4"),
    "current_A": np.dtype("<f4"),  # + charge, - discharge
    "temperature_C": np.dtype("<f4"),
    "charge_Ah": np.dtype("<f4"),  # charge passed in this cycle so far
    "discharge_Ah": np.dtype("<f4"),
    "step": np.dtype("<i4"),  # protocol step index
    "record": np.dtype("<i8"),  # the cycler's record index
}
REQUIRED_SERIES = ("t_s", "voltage_V", "current_A", "temperature_C")
#: Summary columns of the ``cycle`` table, in table order (all floats except sample_count).
SUMMARY_FIELDS = (
    "charge_capacity_ah",
    "discharge_capacity_ah",
    "charge_energy_wh",
    "discharge_energy_wh",
    "coulombic_efficiency",
    "temperature_max_c",
    "temperature_mean_c",
    "temperature_min_c",
    "internal_resistance_ohm",
    "charge_time_s",
    "cv_time_s",
    "t_start_s",
    "t_end_s",
    "sample_count",
)
_OPTIONAL_SUMMARY = frozenset(
    {
        "coulombic_efficiency",
        "temperature_max_c",
        "temperature_mean_c",
        "temperature_min_c",
        "internal_resistance_ohm",
        "charge_time_s",
        "cv_time_s",
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class CycleSummary:
    """The per-cycle summary columns (units in the names; Ah, Wh, degC, ohm, s).

    Optional fields may be None; NaN there also means "not measured" and is
    stored as NULL. Required fields must be finite.
    """

    charge_capacity_ah: float
    discharge_capacity_ah: float
    charge_energy_wh: float
    discharge_energy_wh: float
    t_start_s: float
    t_end_s: float
    sample_count: int
    coulombic_efficiency: float | None = None
    temperature_max_c: float | None = None
    temperature_mean_c: float | None = None
    temperature_min_c: float | None = None
    internal_resistance_ohm: float | None = None
    charge_time_s: float | None = None
    cv_time_s: float | None = None

    def __post_init__(self) -> None:
        for name in SUMMARY_FIELDS:
            value = getattr(self, name)
            if value is None:
                if name not in _OPTIONAL_SUMMARY:
                    raise InvalidRecordError(f"cycle summary field {name} is required")
                continue
            if name == "sample_count":
                if int(value) != value or value < 0:
                    raise InvalidRecordError(f"sample_count must be an integer >= 0, got {value!r}")
                continue
            if math.isnan(float(value)) and name in _OPTIONAL_SUMMARY:
                object.__setattr__(self, name, None)  # NaN in an optional field = not measured
                continue
            if not math.isfinite(float(value)):
                raise InvalidRecordError(f"cycle summary field {name} is not finite: {value!r}")

    def as_row(self) -> dict[str, Any]:
        """Plain Python values for the database row."""
        row: dict[str, Any] = {}
        for name in SUMMARY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                value = int(value) if name == "sample_count" else float(value)
            row[name] = value
        return row


@dataclasses.dataclass(frozen=True, slots=True)
class CycleData:
    """One cycle to ingest: its index, summary and raw series (or None to keep none).

    ``series`` maps column names of :data:`SERIES_DTYPES` to arrays of shape
    ``(n_samples,)``, cast to the stored dtypes.
    """

    cycle_index: int
    summary: CycleSummary
    series: Mapping[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        if int(self.cycle_index) != self.cycle_index or self.cycle_index < 0:
            raise InvalidRecordError(
                f"cycle_index must be an integer >= 0, got {self.cycle_index!r}"
            )
        if self.series is not None:
            object.__setattr__(self, "series", normalise_series(self.series))

    @classmethod
    def from_series(
        cls,
        cycle_index: int,
        series: Mapping[str, Any] | np.ndarray,
        *,
        internal_resistance_ohm: float | None = None,
        cv_voltage_V: float | None = None,
    ) -> CycleData:
        """A cycle whose summary is computed from its raw series."""
        normalised = normalise_series(series)
        summary = summarise_series(
            normalised, internal_resistance_ohm=internal_resistance_ohm, cv_voltage_V=cv_voltage_V
        )
        return cls(cycle_index, summary, normalised)


def normalise_series(series: Mapping[str, Any] | np.ndarray) -> dict[str, np.ndarray]:
    """Columns of a raw series as 1-D arrays of the stored dtypes.

    Accepts a mapping of column name to array, or a NumPy structured array such
    as the cycler's sample records (fields not in :data:`SERIES_DTYPES`, e.g.
    ``cycle``, are left out).
    """
    if isinstance(series, np.ndarray):
        if series.dtype.names is None:
            raise InvalidRecordError("a raw series array must be a structured array with fields")
        columns = {name: series[name] for name in series.dtype.names if name in SERIES_DTYPES}
    else:
        unknown = sorted(set(series) - set(SERIES_DTYPES))
        if unknown:
            raise InvalidRecordError(
                f"unknown raw series column(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(SERIES_DTYPES)}"
            )
        columns = dict(series)
    missing = [name for name in REQUIRED_SERIES if name not in columns]
    if missing:
        raise InvalidRecordError(f"raw series lacks required column(s) {', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    length: int | None = None
    for name in SERIES_DTYPES:
        if name not in columns:
            continue
        array = np.asarray(columns[name])
        if array.ndim != 1:
            raise InvalidRecordError(f"raw series column {name} must be 1-D, got {array.shape}")
        if length is None:
            length = array.shape[0]
        elif array.shape[0] != length:
            raise InvalidRecordError(
                f"raw series column {name} has {array.shape[0]} samples, t_s has {length}"
            )
        out[name] = np.ascontiguousarray(array, dtype=SERIES_DTYPES[name])
    return out


def summarise_series(
    series: Mapping[str, np.ndarray],
    *,
    internal_resistance_ohm: float | None = None,
    cv_voltage_V: float | None = None,
    cv_tolerance_V: float = 0.005,
    current_threshold: float = 0.01,
) -> CycleSummary:
    """Summary columns of one cycle from its raw series (arrays of shape ``(n,)``).

    Capacities come from the cycler's cumulative ``charge_Ah``/``discharge_Ah``
    when present, else from integrating the current (trapezoid rule). Energies
    integrate V*I. Charging means current above ``current_threshold`` times the
    cycle's largest |current|; the CV time is the charging time spent within
    ``cv_tolerance_V`` of ``cv_voltage_V`` (default: the highest charging voltage).
    """
    t = np.asarray(series["t_s"], dtype=np.float64)
    n = t.shape[0]
    if n == 0:
        return CycleSummary(
            charge_capacity_ah=0.0,
            discharge_capacity_ah=0.0,
            charge_energy_wh=0.0,
            discharge_energy_wh=0.0,
            t_start_s=0.0,
            t_end_s=0.0,
            sample_count=0,
            internal_resistance_ohm=internal_resistance_ohm,
        )
    voltage = np.asarray(series["voltage_V"], dtype=np.float64)
    current = np.asarray(series["current_A"], dtype=np.float64)
    temperature = np.asarray(series["temperature_C"], dtype=np.float64)
    charging_current = np.clip(current, 0.0, None)
    discharging_current = np.clip(-current, 0.0, None)
    if "charge_Ah" in series and "discharge_Ah" in series:
        q_charge = float(np.max(series["charge_Ah"]))
        q_discharge = float(np.max(series["discharge_Ah"]))
    else:
        q_charge = float(np.trapezoid(charging_current, t)) / 3600.0
        q_discharge = float(np.trapezoid(discharging_current, t)) / 3600.0
    power = voltage * current
    e_charge = float(np.trapezoid(np.clip(power, 0.0, None), t)) / 3600.0
    e_discharge = float(np.trapezoid(np.clip(-power, 0.0, None), t)) / 3600.0
    dt = np.diff(t)
    scale = float(np.max(np.abs(current))) if n else 0.0
    charging = current[:-1] > current_threshold * scale if scale > 0 else np.zeros(n - 1, bool)
    charge_time = float(np.sum(dt[charging]))
    if np.any(charging):
        v_cv = cv_voltage_V if cv_voltage_V is not None else float(np.max(voltage[:-1][charging]))
        in_cv = charging & (voltage[:-1] >= v_cv - cv_tolerance_V)
        cv_time = float(np.sum(dt[in_cv]))
    else:
        cv_time = 0.0
    finite_t = temperature[np.isfinite(temperature)]
    return CycleSummary(
        charge_capacity_ah=q_charge,
        discharge_capacity_ah=q_discharge,
        charge_energy_wh=e_charge,
        discharge_energy_wh=e_discharge,
        coulombic_efficiency=q_discharge / q_charge if q_charge > 0 else None,
        temperature_max_c=float(finite_t.max()) if finite_t.size else None,
        temperature_mean_c=float(finite_t.mean()) if finite_t.size else None,
        temperature_min_c=float(finite_t.min()) if finite_t.size else None,
        internal_resistance_ohm=internal_resistance_ohm,
        charge_time_s=charge_time,
        cv_time_s=cv_time,
        t_start_s=float(t[0]),
        t_end_s=float(t[-1]),
        sample_count=n,
    )
