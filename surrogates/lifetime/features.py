"""Early-life features of Severson et al., Nature Energy 4 (2019), from stored cycles.

The key feature is ΔQ_{N−10}(V) = Q_N(V) − Q_10(V): the change of the discharge
capacity curve, as a function of voltage, between a reference cycle (10) and the
last early cycle N (100 by default; 50, … for earlier prediction). Both curves
are interpolated onto one fixed voltage grid (1000 points) and summarised by the
log10 of the absolute variance, minimum, mean, skewness and kurtosis.

Raw discharge series are noisy and not always monotone (sensor noise, records
out of order, relaxation at the start). :func:`capacity_on_voltage_grid` cleans
them in a stated way before inverting V(Q) to Q(V):

1. drop non-finite pairs (need ≥ ``MIN_CURVE_POINTS`` left, else an error);
2. sort by discharged capacity (which only grows during a discharge);
3. replace V by its isotonic (non-increasing in Q) least-squares fit — the
   closest monotone curve, so noise cannot fold the curve back on itself;
4. merge the plateaus this leaves (equal V) into one point at their mean Q;
5. interpolate Q linearly at the grid voltages; outside the measured voltage
   range Q is held at the end values (Q = first value above the start voltage,
   Q = total capacity below the cut-off), which is what a discharge means there.

The other features (all configurable through :class:`FeatureConfig`): capacity
fade slope and intercept over cycles first..N and N−9..N, Q at the first cycle,
max Q − Q(first), mean charge time over the charge-time window (2–6), the
temperature integral, maximum and minimum over first..N, and internal resistance
(minimum, at the first cycle, change first→N). The temperature integral is the
window's cycle count × the median per-cycle integral, not the plain sum: a cycle
with a checkpoint spends however long its channel waits for the potentiostat (or an
operator) resting in the chamber, which says nothing about the cell but would
dominate a sum.

Missing data never becomes zero: a feature whose cycles, raw series or values are
missing raises :class:`MissingDataError`. One documented fallback: NaN values
inside a window statistic (fade slope, temperature, resistance, charge time) are
skipped as long as at least half of the window's cycles are finite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats
from sklearn.isotonic import IsotonicRegression

from voltloop.surrogates.lifetime.dataset import CellHistory, LifetimeDataError, MissingDataError

MIN_CURVE_POINTS = 10


class FeatureError(LifetimeDataError):
    """A feature could not be computed from the cell's data."""


class FeatureConfig(BaseModel):
    """Which cycles the features look at (early prediction at ``early_cycle``)."""

    model_config = ConfigDict(frozen=True)

    early_cycle: int = Field(100, ge=3, description="last cycle seen (N)")
    reference_cycle: int = Field(10, ge=1, description="ΔQ reference cycle")
    first_cycle: int = Field(2, ge=0, description="first cycle of the fade window")
    fade_tail_cycles: int = Field(10, ge=2, description="cycles in the late fade window")
    charge_time_cycles: tuple[int, int] = (2, 6)
    voltage_grid_points: int = Field(1000, ge=10)
    voltage_window_V: tuple[float, float] | None = Field(  # noqa: N815
        None, description="fixed ΔQ voltage window; None = overlap of the two curves"
    )

    @model_validator(mode="after")
    def _ordered(self) -> FeatureConfig:
        if not self.first_cycle < self.early_cycle:
            raise ValueError(f"first_cycle {self.first_cycle} must be < early_cycle")
        if not self.reference_cycle < self.early_cycle:
            raise ValueError(f"reference_cycle {self.reference_cycle} must be < early_cycle")
        lo, hi = self.charge_time_cycles
        if not lo <= hi <= self.early_cycle:
            raise ValueError(f"charge_time_cycles {self.charge_time_cycles} out of order")
        if self.voltage_window_V and not self.voltage_window_V[0] < self.voltage_window_V[1]:
            raise ValueError(f"voltage_window_V {self.voltage_window_V} must be (low, high)")
        return self


DELTA_Q_FEATURES = (
    "log_var_dq",
    "log_abs_min_dq",
    "log_abs_mean_dq",
    "log_abs_skew_dq",
    "log_abs_kurtosis_dq",
)
FADE_FEATURES = (
    "fade_slope_full",
    "fade_intercept_full",
    "fade_slope_tail",
    "fade_intercept_tail",
    "q_first",
    "q_max_minus_first",
)
OTHER_FEATURES = (
    "charge_time_mean",
    "temperature_integral",
    "temperature_max",
    "temperature_min",
    "ir_min",
    "ir_first",
    "ir_change",
)
#: Severson's three feature sets: "variance" (one feature), "discharge", "full".
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "variance": ("log_var_dq",),
    "discharge": (
        *DELTA_Q_FEATURES,
        "fade_slope_tail",
        "fade_intercept_tail",
        "q_first",
        "q_max_minus_first",
    ),
    "full": (*DELTA_Q_FEATURES, *FADE_FEATURES, *OTHER_FEATURES),
}


def capacity_on_voltage_grid(
    voltage_V: np.ndarray, capacity_Ah: np.ndarray, grid_V: np.ndarray
) -> np.ndarray:
    """Discharged capacity Q(V) (g,) at grid voltages ``grid_V`` (g,) from a raw
    discharge series voltage (m,) / cumulative capacity (m,), cleaned as described
    in the module docstring."""
    v = np.asarray(voltage_V, float)
    q = np.asarray(capacity_Ah, float)
    ok = np.isfinite(v) & np.isfinite(q)
    if ok.sum() < MIN_CURVE_POINTS:
        raise FeatureError(
            f"discharge series has {int(ok.sum())} finite points; "
            f"at least {MIN_CURVE_POINTS} are needed"
        )
    v, q = v[ok], q[ok]
    order = np.argsort(q, kind="stable")
    v, q = v[order], q[order]
    v_mono = IsotonicRegression(increasing=False).fit_transform(q, v)
    levels, inverse = np.unique(v_mono, return_inverse=True)  # ascending voltage
    if levels.size < 2:
        raise FeatureError("discharge series has a constant voltage; Q(V) is undefined")
    q_at_level = np.bincount(inverse, weights=q) / np.bincount(inverse)
    return np.interp(grid_V, levels, q_at_level)


def voltage_grid(cell: CellHistory, config: FeatureConfig) -> np.ndarray:
    """The fixed ΔQ voltage grid (g,) for one cell."""
    if config.voltage_window_V is not None:
        lo, hi = config.voltage_window_V
    else:
        ranges = []
        for cycle in (config.reference_cycle, config.early_cycle):
            v = cell.curve(cycle).voltage_V
            v = v[np.isfinite(v)]
            if v.size < MIN_CURVE_POINTS:
                raise FeatureError(
                    f"cell {cell.cell_id}: discharge series of cycle {cycle} has "
                    f"{v.size} finite voltages; at least {MIN_CURVE_POINTS} are needed"
                )
            ranges.append((np.min(v), np.max(v)))
        lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
        if not lo < hi:
            raise FeatureError(f"cell {cell.cell_id}: discharge curves share no voltage range")
    return np.linspace(lo, hi, config.voltage_grid_points)


def delta_q_curve(cell: CellHistory, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Grid voltages (g,) and ΔQ(V) = Q_N(V) − Q_ref(V) (g,) in Ah."""
    grid = voltage_grid(cell, config)
    curves = {}
    for cycle in (config.reference_cycle, config.early_cycle):
        c = cell.curve(cycle)
        try:
            curves[cycle] = capacity_on_voltage_grid(c.voltage_V, c.capacity_Ah, grid)
        except FeatureError as exc:
            raise FeatureError(f"cell {cell.cell_id}, cycle {cycle}: {exc}") from None
    return grid, curves[config.early_cycle] - curves[config.reference_cycle]


def _log_abs(value: float, name: str, cell: CellHistory) -> float:
    if not np.isfinite(value) or value == 0.0:
        raise FeatureError(
            f"cell {cell.cell_id}: {name} of ΔQ(V) is {value}; its log10 is undefined "
            "(identical discharge curves?)"
        )
    return float(np.log10(abs(value)))


def delta_q_features(cell: CellHistory, config: FeatureConfig) -> dict[str, float]:
    """log10 |variance, min, mean, skewness, kurtosis| of ΔQ(V) (kurtosis: Pearson)."""
    _, dq = delta_q_curve(cell, config)
    return {
        "log_var_dq": _log_abs(float(np.var(dq)), "variance", cell),
        "log_abs_min_dq": _log_abs(float(np.min(dq)), "minimum", cell),
        "log_abs_mean_dq": _log_abs(float(np.mean(dq)), "mean", cell),
        "log_abs_skew_dq": _log_abs(float(stats.skew(dq)), "skewness", cell),
        "log_abs_kurtosis_dq": _log_abs(float(stats.kurtosis(dq, fisher=False)), "kurtosis", cell),
    }


def _window(cell: CellHistory, name: str, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite (cycle, value) pairs in [first, last]; needs the window stored and ≥ half finite."""
    if cell.last_cycle < last:
        raise MissingDataError(
            f"cell {cell.cell_id}: {name} over cycles {first}..{last} needs cycle {last}, "
            f"but only cycles up to {cell.last_cycle} are stored"
        )
    cycles, values = cell.column(name, first, last)
    ok = np.isfinite(values)
    needed = max(1, (last - first + 2) // 2)
    if ok.sum() < needed:
        raise MissingDataError(
            f"cell {cell.cell_id}: {name} has {int(ok.sum())} finite values in cycles "
            f"{first}..{last}; at least {needed} are needed"
        )
    return cycles[ok].astype(float), values[ok]


def fade_features(cell: CellHistory, config: FeatureConfig) -> dict[str, float]:
    """Slope (Ah/cycle) and intercept (Ah) of Q_discharge vs cycle over first..N and
    the last ``fade_tail_cycles`` cycles; Q at the first cycle; max Q − Q(first)."""
    n, first = config.early_cycle, config.first_cycle
    col = "discharge_capacity_Ah"
    out: dict[str, float] = {}
    for label, lo in (("full", first), ("tail", n - config.fade_tail_cycles + 1)):
        x, y = _window(cell, col, lo, n)
        if x.size < 2:
            raise MissingDataError(f"cell {cell.cell_id}: fade {label} needs two cycles")
        slope, intercept = np.polyfit(x, y, 1)
        out[f"fade_slope_{label}"] = float(slope)
        out[f"fade_intercept_{label}"] = float(intercept)
    q_first = cell.value_at(col, first)
    _, q = _window(cell, col, first, n)
    out["q_first"] = q_first
    out["q_max_minus_first"] = float(np.max(q) - q_first)
    return out


def _charge_time_mean(cell: CellHistory, config: FeatureConfig) -> float:
    lo, hi = config.charge_time_cycles
    return float(np.mean(_window(cell, "charge_time_s", lo, hi)[1]))


def _robust_sum(values: np.ndarray) -> float:
    """The window's total as (number of cycles) × median per cycle: a checkpoint cycle
    that waited hours for its EIS (or a pause) must not dominate the integral."""
    return float(values.size * np.median(values))


def _stat(column: str, reduce: Callable[[np.ndarray], float]) -> Callable:
    def compute(cell: CellHistory, config: FeatureConfig) -> float:
        return float(reduce(_window(cell, column, config.first_cycle, config.early_cycle)[1]))

    return compute


def _ir_first(cell: CellHistory, config: FeatureConfig) -> float:
    return cell.value_at("internal_resistance_ohm", config.first_cycle)


def _ir_change(cell: CellHistory, config: FeatureConfig) -> float:
    ir = "internal_resistance_ohm"
    return cell.value_at(ir, config.early_cycle) - cell.value_at(ir, config.first_cycle)


#: Charge time, temperature and internal-resistance features, one function each.
_OTHER: dict[str, Callable[[CellHistory, FeatureConfig], float]] = {
    "charge_time_mean": _charge_time_mean,
    "temperature_integral": _stat("temperature_integral_Cs", _robust_sum),
    "temperature_max": _stat("temperature_max_C", np.max),
    "temperature_min": _stat("temperature_min_C", np.min),
    "ir_min": _stat("internal_resistance_ohm", np.min),
    "ir_first": _ir_first,
    "ir_change": _ir_change,
}


def _compute(cell: CellHistory, config: FeatureConfig, wanted: Sequence[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    if set(DELTA_Q_FEATURES) & set(wanted):
        values.update(delta_q_features(cell, config))
    if set(FADE_FEATURES) & set(wanted):
        values.update(fade_features(cell, config))
    for name in wanted:
        if name in _OTHER:
            values[name] = _OTHER[name](cell, config)
    return values


def severson_features(
    cell: CellHistory, config: FeatureConfig | None = None, names: Sequence[str] | None = None
) -> dict[str, float]:
    """The requested Severson features (default: the full set) for one cell.

    Raises :class:`MissingDataError`/:class:`FeatureError` naming the cell, the
    feature and what was missing. Only the groups that ``names`` needs are computed.
    """
    config = config or FeatureConfig()
    wanted = tuple(names) if names is not None else FEATURE_SETS["full"]
    unknown = set(wanted) - set(FEATURE_SETS["full"])
    if unknown:
        raise FeatureError(f"unknown feature(s): {', '.join(sorted(unknown))}")
    if cell.last_cycle < config.early_cycle:
        raise MissingDataError(
            f"cell {cell.cell_id}: features at cycle {config.early_cycle} need that many "
            f"cycles, but only cycles up to {cell.last_cycle} are stored"
        )
    values = _compute(cell, config, wanted)
    return {name: values[name] for name in wanted}


def feature_matrix(
    cells: Sequence[CellHistory],
    names: Sequence[str],
    config: FeatureConfig | None = None,
) -> np.ndarray:
    """Features of every cell as an array (n_cells, n_features); raises on the first
    cell that lacks one (the message names cell and feature)."""
    config = config or FeatureConfig()
    rows = [list(severson_features(cell, config, names).values()) for cell in cells]
    return np.asarray(rows, dtype=float).reshape(len(cells), len(names))


def available_features(
    cells: Sequence[CellHistory], names: Sequence[str], config: FeatureConfig | None = None
) -> tuple[list[str], dict[str, str]]:
    """The subset of ``names`` every cell can provide, and why each other one was dropped.

    The documented fallback for training on data that lacks a column (say, no
    resistance measurement): the feature is left out of the model, and the reason
    is recorded in the model version — never filled with zeros.
    """
    config = config or FeatureConfig()
    dropped: dict[str, str] = {}
    groups = [[n for n in names if n in DELTA_Q_FEATURES], [n for n in names if n in FADE_FEATURES]]
    groups += [[n] for n in names if n in _OTHER]
    for members in groups:
        if not members:
            continue
        for cell in cells:
            try:
                _compute(cell, config, members)
            except LifetimeDataError as exc:
                for member in members:
                    dropped.setdefault(member, str(exc))
                break
    return [n for n in names if n not in dropped], dropped
