"""A neutral, in-memory history of cycled cells: what every lifetime model reads.

A :class:`CellHistory` holds one cell's per-cycle summary arrays (all of shape
``(n_cycles,)``, aligned with ``cycle_index``), the raw discharge V/Q series of the
cycles that features need, its impedance spectra and its observed end of life.
It knows nothing about the database or the simulator: ``from_dict``/``to_dict``
convert from/to the plain numpy/dict layout below, which the simulated-lab
history generator (drivers/sim/history.py) emits and the database adapter
(:mod:`voltloop.surrogates.lifetime.training`) builds from cycle rows.

Plain layout (``CellHistory.to_dict``)::

    {
      "cell_id": str, "nominal_capacity_Ah": float,
      "protocol": {name: float},                      # campaign parameters
      "cycle_index": int array (n,),
      "discharge_capacity_Ah" | "charge_capacity_Ah" | "charge_time_s"
      | "temperature_max_C" | "temperature_min_C" | "temperature_mean_C"
      | "temperature_integral_Cs" | "internal_resistance_ohm": float array (n,),
      "discharge_curves": {cycle: {"voltage_V": (m,), "capacity_Ah": (m,)}},
      "spectra": [{"cycle": int, "frequency_Hz": (k,), "impedance_ohm": complex (k,),
                   "linkk_residual": float | None, "circuit": {name: float}}],
      "end_of_life_cycle": int | None,                 # observed, if reached
    }

Missing summary columns are NaN arrays (never zeros); features that need them
raise :class:`MissingDataError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: End of life: the first cycle whose discharge capacity falls below this
#: fraction of the nominal capacity (Severson et al. 2019, Attia et al. 2020).
EOL_FRACTION = 0.8

SUMMARY_COLUMNS = (
    "discharge_capacity_Ah",
    "charge_capacity_Ah",
    "charge_time_s",
    "temperature_max_C",
    "temperature_min_C",
    "temperature_mean_C",
    "temperature_integral_Cs",
    "internal_resistance_ohm",
)


class LifetimeDataError(ValueError):
    """Bad or insufficient cell data for a lifetime model (user-facing, exit code 2)."""

    exit_code = 2


class MissingDataError(LifetimeDataError):
    """A feature or model needs data the cell does not have (cycles, raw series, columns)."""


@dataclass(frozen=True)
class DischargeCurve:
    """Raw discharge series of one cycle: voltage (m,) against discharged capacity (m,)."""

    voltage_V: np.ndarray  # noqa: N815 - unit suffix
    capacity_Ah: np.ndarray  # noqa: N815

    def __post_init__(self) -> None:
        v = np.asarray(self.voltage_V, dtype=float).ravel()
        q = np.asarray(self.capacity_Ah, dtype=float).ravel()
        if v.shape != q.shape:
            raise LifetimeDataError(
                f"discharge curve: voltage has {v.size} points but capacity has {q.size}"
            )
        object.__setattr__(self, "voltage_V", v)
        object.__setattr__(self, "capacity_Ah", q)


@dataclass(frozen=True)
class ImpedanceSpectrum:
    """One EIS checkpoint: frequencies (k,) in Hz and complex impedance (k,) in ohm."""

    cycle: int
    frequency_Hz: np.ndarray  # noqa: N815
    impedance_ohm: np.ndarray
    linkk_residual: float | None = None
    circuit: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        f = np.asarray(self.frequency_Hz, dtype=float).ravel()
        z = np.asarray(self.impedance_ohm, dtype=complex).ravel()
        if f.shape != z.shape:
            raise LifetimeDataError(
                f"spectrum at cycle {self.cycle}: {f.size} frequencies but {z.size} impedances"
            )
        object.__setattr__(self, "frequency_Hz", f)
        object.__setattr__(self, "impedance_ohm", z)


@dataclass
class CellHistory:
    """Everything measured on one cell, cycle by cycle (arrays are ``(n_cycles,)``)."""

    cell_id: str
    nominal_capacity_Ah: float  # noqa: N815
    cycle_index: np.ndarray
    summary: dict[str, np.ndarray]
    discharge_curves: dict[int, DischargeCurve] = field(default_factory=dict)
    spectra: list[ImpedanceSpectrum] = field(default_factory=list)
    protocol: dict[str, float] = field(default_factory=dict)
    end_of_life_cycle: int | None = None

    def __post_init__(self) -> None:
        idx = np.asarray(self.cycle_index).ravel()
        if idx.size and not np.all(np.diff(idx) > 0):
            raise LifetimeDataError(f"cell {self.cell_id}: cycle_index must be strictly increasing")
        self.cycle_index = idx.astype(np.int64)
        n = idx.size
        full: dict[str, np.ndarray] = {}
        for name in SUMMARY_COLUMNS:
            values = self.summary.get(name)
            arr = np.full(n, np.nan) if values is None else np.asarray(values, float).ravel()
            if arr.size != n:
                raise LifetimeDataError(
                    f"cell {self.cell_id}: column {name} has {arr.size} values for {n} cycles"
                )
            full[name] = arr
        self.summary = full
        if not np.isfinite(self.nominal_capacity_Ah) or self.nominal_capacity_Ah <= 0:
            raise LifetimeDataError(
                f"cell {self.cell_id}: nominal capacity {self.nominal_capacity_Ah} Ah "
                "must be positive"
            )

    # --- access ------------------------------------------------------------------
    @property
    def n_cycles(self) -> int:
        return int(self.cycle_index.size)

    @property
    def last_cycle(self) -> int:
        return int(self.cycle_index[-1]) if self.cycle_index.size else -1

    def column(self, name: str, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """Cycles in ``[first, last]`` and the column's values there, NaNs kept."""
        if name not in self.summary:
            raise LifetimeDataError(f"unknown summary column {name!r}")
        mask = (self.cycle_index >= first) & (self.cycle_index <= last)
        return self.cycle_index[mask], self.summary[name][mask]

    def value_at(self, name: str, cycle: int) -> float:
        """The column's value at one cycle; raises if the cycle or value is missing."""
        hit = np.flatnonzero(self.cycle_index == cycle)
        if hit.size == 0:
            raise MissingDataError(
                f"cell {self.cell_id}: cycle {cycle} is missing (cycles {self._span()} stored)"
            )
        value = float(self.summary[name][hit[0]])
        if not np.isfinite(value):
            raise MissingDataError(f"cell {self.cell_id}: {name} at cycle {cycle} is NaN")
        return value

    def curve(self, cycle: int) -> DischargeCurve:
        if cycle not in self.discharge_curves:
            have = sorted(self.discharge_curves)
            raise MissingDataError(
                f"cell {self.cell_id}: no raw discharge series for cycle {cycle} "
                f"(raw series stored for {len(have)} cycles"
                + (f", {have[0]}..{have[-1]})" if have else ")")
            )
        return self.discharge_curves[cycle]

    def truncated(self, last_cycle: int) -> CellHistory:
        """The cell as it looked after ``last_cycle`` (no knowledge of its end of life)."""
        keep = self.cycle_index <= last_cycle
        return CellHistory(
            cell_id=self.cell_id,
            nominal_capacity_Ah=self.nominal_capacity_Ah,
            cycle_index=self.cycle_index[keep],
            summary={k: v[keep] for k, v in self.summary.items()},
            discharge_curves={c: d for c, d in self.discharge_curves.items() if c <= last_cycle},
            spectra=[s for s in self.spectra if s.cycle <= last_cycle],
            protocol=dict(self.protocol),
            end_of_life_cycle=None,
        )

    def observed_end_of_life(self, fraction: float = EOL_FRACTION) -> int | None:
        """First stored cycle with discharge capacity below ``fraction`` × nominal, if any."""
        q = self.summary["discharge_capacity_Ah"]
        below = np.flatnonzero(np.isfinite(q) & (q < fraction * self.nominal_capacity_Ah))
        return int(self.cycle_index[below[0]]) if below.size else None

    def _span(self) -> str:
        return f"{self.cycle_index[0]}..{self.cycle_index[-1]}" if self.n_cycles else "none"

    # --- plain layout --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "cell_id": self.cell_id,
            "nominal_capacity_Ah": float(self.nominal_capacity_Ah),
            "protocol": dict(self.protocol),
            "cycle_index": self.cycle_index.copy(),
            **{k: v.copy() for k, v in self.summary.items()},
            "discharge_curves": {
                int(c): {"voltage_V": d.voltage_V, "capacity_Ah": d.capacity_Ah}
                for c, d in self.discharge_curves.items()
            },
            "spectra": [
                {
                    "cycle": s.cycle,
                    "frequency_Hz": s.frequency_Hz,
                    "impedance_ohm": s.impedance_ohm,
                    "linkk_residual": s.linkk_residual,
                    "circuit": dict(s.circuit),
                }
                for s in self.spectra
            ],
            "end_of_life_cycle": self.end_of_life_cycle,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CellHistory:
        """Build from the plain layout (module docstring); unknown keys are ignored."""
        try:
            cell_id = str(data["cell_id"])
            cycle_index = np.asarray(data["cycle_index"])
        except KeyError as exc:
            raise LifetimeDataError(f"cell history is missing the key {exc.args[0]!r}") from None
        curves = {
            int(c): DischargeCurve(d["voltage_V"], d["capacity_Ah"])
            for c, d in (data.get("discharge_curves") or {}).items()
        }
        spectra = [
            ImpedanceSpectrum(
                cycle=int(s["cycle"]),
                frequency_Hz=s["frequency_Hz"],
                impedance_ohm=s["impedance_ohm"],
                linkk_residual=s.get("linkk_residual"),
                circuit=dict(s.get("circuit") or {}),
            )
            for s in data.get("spectra") or []
        ]
        eol = data.get("end_of_life_cycle")
        return cls(
            cell_id=cell_id,
            nominal_capacity_Ah=float(data.get("nominal_capacity_Ah", np.nan)),
            cycle_index=cycle_index,
            summary={k: data[k] for k in SUMMARY_COLUMNS if k in data},
            discharge_curves=curves,
            spectra=spectra,
            protocol={k: float(v) for k, v in (data.get("protocol") or {}).items()},
            end_of_life_cycle=None if eol is None else int(eol),
        )


def cycle_lives(cells: list[CellHistory]) -> np.ndarray:
    """Observed end-of-life cycles (n_cells,); raises for a cell that has not reached it."""
    lives = []
    for cell in cells:
        eol = cell.end_of_life_cycle or cell.observed_end_of_life()
        if eol is None:
            raise MissingDataError(
                f"cell {cell.cell_id} has not reached end of life "
                f"({EOL_FRACTION:.0%} of {cell.nominal_capacity_Ah} Ah) in "
                f"{cell.n_cycles} cycles; it cannot be a training label"
            )
        lives.append(eol)
    return np.asarray(lives, dtype=float)
