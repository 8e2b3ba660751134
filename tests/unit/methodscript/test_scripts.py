"""Script generation: exact lines, point counts, validation errors that name field and limit."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.drivers import methodscript as ms
from voltloop.drivers import potentiostat_scripts as ps

HR = ms.DEVICE_LIMITS[ms.DeviceModel.EMSTAT4_HR]
PICO = ms.DEVICE_LIMITS[ms.DeviceModel.EMSTAT_PICO]


def test_point_count_and_frequencies() -> None:
    n = ps.eis_point_count(1e4, 1e-2, 10)
    assert n == 61
    f = ps.eis_frequencies(1e4, 1e-2, n)
    assert f.shape == (61,)
    assert f[0] == pytest.approx(1e4) and f[-1] == pytest.approx(1e-2)
    assert np.all(np.diff(f) < 0)  # high -> low
    assert np.allclose(np.diff(np.log10(f)), -0.1)


def test_eis_script_fixed_potential_exact_text() -> None:
    script = ps.eis_script(
        HR, f_start_Hz=1e3, f_end_Hz=10, n_points=3, amplitude_Vrms=5e-3, dc_potential_V=3.3
    )
    lines = script.split("\n")
    assert lines[0] == "e"
    assert script.endswith("cell_off\n\n")
    assert "meas_loop_eis f r j 5m 1k 10 3i 3300m" in lines
    assert "set_pgstat_mode 3" in lines and "cell_on" in lines
    assert "meas_loop_ocp" not in script
    assert script.count("\n\n") == 1  # only the terminating empty line
    assert all(line.isascii() for line in lines)


def test_eis_script_at_ocv_uses_measured_potential() -> None:
    script = ps.eis_script(HR, f_start_Hz=1e4, f_end_Hz=1e-2, n_points=61, amplitude_Vrms=5e-3)
    lines = script.split("\n")
    assert "meas_loop_ocp p 100m 2" in lines
    assert lines.index("meas_loop_ocp p 100m 2") < lines.index("cell_on")
    rest = lines[lines.index("meas_loop_ocp p 100m 2") : lines.index("endloop") + 1]
    assert rest[1:] == ["  pck_start", "  pck_add p", "  pck_end", "endloop"]
    assert "meas_loop_eis f r j 5m 10k 10m 61i p" in lines
    assert "set_e p" in lines


@pytest.mark.parametrize(
    ("kwargs", "field", "limit"),
    [
        ({"f_start_Hz": 1e6}, "f_start_Hz", "200000 Hz"),
        ({"f_end_Hz": 1e-3}, "f_end_Hz", "0.016 Hz"),
        ({"amplitude_Vrms": 0.0}, "amplitude_Vrms", "positive"),
        ({"amplitude_Vrms": -1e-3}, "amplitude_Vrms", "positive"),
        ({"amplitude_Vrms": 0.5}, "amplitude_Vrms", "0.25 V rms"),
        ({"dc_potential_V": 3.3}, "dc_potential_V", "1.7 V"),
        ({"f_end_Hz": 2e4}, "f_end_Hz", "below f_start_Hz"),
        ({"n_points": 1}, "n_points", "2 .. 10000"),
    ],
)
def test_eis_validation_names_field_and_limit(kwargs: dict, field: str, limit: str) -> None:
    args = {
        "f_start_Hz": 1e4,
        "f_end_Hz": 0.1,
        "n_points": 51,
        "amplitude_Vrms": 5e-3,
        "dc_potential_V": 0.5,
    }
    args.update(kwargs)
    with pytest.raises(ps.ScriptValidationError) as info:
        ps.eis_script(PICO, **args)
    assert info.value.field == field
    assert field in str(info.value) and limit in str(info.value)
    assert info.value.exit_code == 2


def test_ocv_and_cp_scripts() -> None:
    ocv = ps.ocv_script(interval_s=0.1, duration_s=1.0)
    assert "meas_loop_ocp p 100m 1" in ocv.split("\n") and ocv.endswith("endloop\n\n")
    cp = ps.chronopotentiometry_script(HR, current_A=0.01, interval_s=0.1, duration_s=2)
    assert "meas_loop_cp p c 10m 100m 2" in cp.split("\n")
    with pytest.raises(ps.ScriptValidationError, match="current_A"):
        ps.chronopotentiometry_script(PICO, current_A=0.1)
    with pytest.raises(ps.ScriptValidationError, match="interval_s"):
        ps.ocv_script(interval_s=5, duration_s=1)


def test_timeout_scales_with_the_sweep() -> None:
    fast = ps.eis_sweep_budget_s(ps.eis_frequencies(1e4, 1, 41), at_ocv=False)
    slow = ps.eis_sweep_budget_s(ps.eis_frequencies(1e4, 1e-2, 61), at_ocv=True)
    assert fast < 200 < 3600 < slow
    assert ps.eis_point_budget_s(1e-2) > 1000 > 2 > ps.eis_point_budget_s(1e4)
