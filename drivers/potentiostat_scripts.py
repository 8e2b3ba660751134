"""MethodSCRIPT scripts for voltloop's potentiostat measurements: EIS, OCV read and
chronopotentiometry; the device limits they are validated against; and the read-time
budgets the driver derives from a sweep (docs/protocols/methodscript.md §Scripts,
§Timeouts; decision record 0053). Pure functions, no I/O.
"""

# ruff: noqa: N815 - unit-suffixed physics names (f_start_Hz, max_current_A)

from __future__ import annotations

import math

import numpy as np

from voltloop.drivers.methodscript import DeviceLimits, format_literal


class ScriptValidationError(ValueError):
    """A measurement request outside the device's limits; names field, value and limit."""

    exit_code = 2

    def __init__(self, field_name: str, value: float, limit: str) -> None:
        self.field = field_name
        self.value = value
        self.limit = limit
        super().__init__(f"{field_name} = {value:g} is outside the device limit: {limit}")


def eis_point_count(f_start_Hz: float, f_end_Hz: float, points_per_decade: float) -> int:
    """``round(decades × points_per_decade) + 1`` (both ends included)."""
    decades = abs(math.log10(f_start_Hz / f_end_Hz))
    return max(2, round(decades * points_per_decade) + 1)


def eis_frequencies(f_start_Hz: float, f_end_Hz: float, n_points: int) -> np.ndarray:
    """The device's sweep: ``n_points`` log-spaced from f_start to f_end inclusive, shape (n,)."""
    if n_points == 1:
        return np.array([float(f_start_Hz)])
    k = np.arange(n_points, dtype=float)
    return f_start_Hz * (f_end_Hz / f_start_Hz) ** (k / (n_points - 1))


#: Timeout model for one EIS point (docs §Timeouts): safety × (periods / f + overhead).
EIS_PERIODS_PER_POINT = 4.0
EIS_POINT_OVERHEAD_S = 0.5
EIS_TIMEOUT_SAFETY = 3.0
OCV_REST_S = 2.0  # the open-circuit rest before an OCV-referenced sweep
OCV_INTERVAL_S = 0.1  # its sampling interval


def eis_point_budget_s(frequency_Hz: float) -> float:
    """Longest time the driver waits for the package of the point at ``frequency_Hz``."""
    return EIS_TIMEOUT_SAFETY * (EIS_PERIODS_PER_POINT / frequency_Hz + EIS_POINT_OVERHEAD_S)


def eis_sweep_budget_s(frequencies_Hz: np.ndarray, *, at_ocv: bool) -> float:
    """Deadline for a whole sweep: Σ point budgets + OCV rest + 10 s."""
    rest = EIS_TIMEOUT_SAFETY * OCV_REST_S if at_ocv else 0.0
    return float(sum(eis_point_budget_s(f) for f in frequencies_Hz)) + rest + 10.0


def _check_range(name: str, value: float, low: float, high: float, unit: str) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ScriptValidationError(name, value, f"{low:g} {unit} .. {high:g} {unit}")


def validate_eis(
    limits: DeviceLimits,
    *,
    f_start_Hz: float,
    f_end_Hz: float,
    n_points: int,
    amplitude_Vrms: float,
    dc_potential_V: float | None,
) -> None:
    """Raise ScriptValidationError naming the first field outside ``limits``."""
    f_lo, f_hi = limits.min_frequency_Hz, limits.max_frequency_Hz
    _check_range("f_start_Hz", f_start_Hz, f_lo, f_hi, "Hz")
    _check_range("f_end_Hz", f_end_Hz, f_lo, f_hi, "Hz")
    if f_start_Hz <= f_end_Hz:
        raise ScriptValidationError("f_end_Hz", f_end_Hz, f"below f_start_Hz = {f_start_Hz:g} Hz")
    if not 2 <= n_points <= 10_000:
        raise ScriptValidationError("n_points", n_points, "2 .. 10000")
    if not (math.isfinite(amplitude_Vrms) and amplitude_Vrms > 0):
        raise ScriptValidationError("amplitude_Vrms", amplitude_Vrms, "must be positive")
    _check_range(
        "amplitude_Vrms",
        amplitude_Vrms,
        limits.min_amplitude_Vrms,
        limits.max_amplitude_Vrms,
        "V rms",
    )
    if dc_potential_V is not None:
        v = limits.max_abs_potential_V
        _check_range("dc_potential_V", dc_potential_V, -v, v, "V")


def _max_range_literal(limits: DeviceLimits) -> str:
    return format_literal(limits.max_current_A)


def eis_script(
    limits: DeviceLimits,
    *,
    f_start_Hz: float,
    f_end_Hz: float,
    n_points: int,
    amplitude_Vrms: float,
    dc_potential_V: float | None = None,
) -> str:
    """The EIS script of docs §EIS, ending in the empty line. ``dc_potential_V=None`` = at OCV.

    Raises ScriptValidationError for values outside ``limits``.
    """
    validate_eis(
        limits,
        f_start_Hz=f_start_Hz,
        f_end_Hz=f_end_Hz,
        n_points=n_points,
        amplitude_Vrms=amplitude_Vrms,
        dc_potential_V=dc_potential_V,
    )
    at_ocv = dc_potential_V is None
    dc = "p" if at_ocv else format_literal(dc_potential_V)
    bandwidth = format_literal(min(10 * f_start_Hz, 2e6))
    top = _max_range_literal(limits)
    low = format_literal(limits.max_current_A / 100)
    lines = [
        "e",
        f"# voltloop EIS {f_start_Hz:g} Hz -> {f_end_Hz:g} Hz, {n_points} points, "
        f"{amplitude_Vrms * 1e3:g} mV rms, DC {'at OCV' if at_ocv else f'{dc_potential_V:g} V'}",
    ]
    lines += ["var p"] if at_ocv else []
    lines += ["var f", "var r", "var j"]
    lines += [
        "set_pgstat_chan 0",  # required on multi-channel firmware
        "set_pgstat_mode 3",  # required: EIS runs in high-speed mode
        f"set_max_bandwidth {bandwidth}",
        "set_range ab 4",
        "set_autoranging ab 4 4",
    ]
    if at_ocv:
        # the open-circuit rest; its packages report the OCV the sweep is centred on
        lines += [
            f"meas_loop_ocp p {format_literal(OCV_INTERVAL_S)} {format_literal(OCV_REST_S)}",
            "  pck_start",
            "  pck_add p",
            "  pck_end",
            "endloop",
        ]
    lines += [
        f"set_range_minmax da {dc} {dc}",
        f"set_range ba {top}",
        f"set_autoranging ba {low} {top}",
        f"set_e {dc}",
        "cell_on",  # required: the cell must be on at the DC level
        f"meas_loop_eis f r j {format_literal(amplitude_Vrms)} {format_literal(f_start_Hz)} "
        f"{format_literal(f_end_Hz)} {format_literal(n_points, integer=True)} {dc}",
        "  pck_start",
        "  pck_add f",
        "  pck_add r",
        "  pck_add j",
        "  pck_end",
        "endloop",
        "on_finished:",
        "  cell_off",  # required for safety: off however the script ends
    ]
    return "\n".join(lines) + "\n\n"


def ocv_script(*, interval_s: float = 0.1, duration_s: float = 1.0) -> str:
    """Open-circuit potential read (docs §OCV read); packages carry ``ab``."""
    if not (math.isfinite(interval_s) and 1e-3 <= interval_s <= duration_s):
        raise ScriptValidationError(
            "interval_s", interval_s, f"1 ms .. duration_s = {duration_s:g} s"
        )
    if not (math.isfinite(duration_s) and duration_s <= 3600):
        raise ScriptValidationError("duration_s", duration_s, "<= 3600 s")
    lines = [
        "e",
        "var p",
        "set_pgstat_chan 0",
        "set_pgstat_mode 2",
        "set_range ab 4",
        "set_autoranging ab 4 4",
        f"meas_loop_ocp p {format_literal(interval_s)} {format_literal(duration_s)}",
        "  pck_start",
        "  pck_add p",
        "  pck_end",
        "endloop",
    ]
    return "\n".join(lines) + "\n\n"


def chronopotentiometry_script(
    limits: DeviceLimits,
    *,
    current_A: float,
    interval_s: float = 0.1,
    duration_s: float = 2.0,
) -> str:
    """Chronopotentiometry (docs §Chronopotentiometry); packages carry eb, db, ab."""
    imax = limits.max_current_A
    _check_range("current_A", current_A, -imax, imax, "A")
    if not (math.isfinite(interval_s) and 1e-3 <= interval_s <= duration_s):
        raise ScriptValidationError(
            "interval_s", interval_s, f"1 ms .. duration_s = {duration_s:g} s"
        )
    if not (math.isfinite(duration_s) and duration_s <= 3600):
        raise ScriptValidationError("duration_s", duration_s, "<= 3600 s")
    top = _max_range_literal(limits)
    lines = [
        "e",
        "var c",
        "var p",
        "var t",
        "set_pgstat_chan 0",
        "set_pgstat_mode 6",  # galvanostatic mode
        "set_max_bandwidth 10",
        "set_range ab 4",
        "set_autoranging ab 4 4",
        f"set_range db {top}",
        f"set_autoranging db {top} {top}",
        "set_i 0",
        "cell_on",
        "timer_start",
        f"meas_loop_cp p c {format_literal(current_A)} {format_literal(interval_s)} "
        f"{format_literal(duration_s)}",
        "  timer_get t",
        "  pck_start",
        "  pck_add t",
        "  pck_add c",
        "  pck_add p",
        "  pck_end",
        "endloop",
        "on_finished:",
        "  cell_off",
    ]
    return "\n".join(lines) + "\n\n"
