"""The simulated potentiostat's MethodSCRIPT interpreter, without any link."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.drivers import methodscript as ms
from voltloop.drivers import potentiostat_scripts as ps
from voltloop.drivers.sim import methodscript_device as dev

HR = ms.DEVICE_LIMITS[ms.DeviceModel.EMSTAT4_HR]


def context(channel: int | None = 0, busy: bool = False) -> dev.DeviceContext:
    def impedance(_channel: int, f: np.ndarray) -> np.ndarray:
        if busy:
            raise ValueError("channel 0 is running")
        return 0.02 + 0.01 / (1 + 1j * 2 * np.pi * f * 1e-3)

    return dev.DeviceContext(
        limits=HR,
        channel=lambda: channel,
        impedance=impedance,
        open_circuit_voltage=lambda _c: 3.3,
    )


def lines_of(script: str) -> list[str]:
    body = script.split("\n")
    assert body[0] == "e"
    return body[1:]


def run(script: str, ctx: dev.DeviceContext | None = None) -> tuple[list[ms.OutputEvent], float]:
    program = dev.parse_script(lines_of(script), HR)
    output = b""
    device_time = 0.0
    for wait, line in dev.run_script(program, ctx or context()):
        device_time += wait
        output += line
    return ms.parse_output(b"e\n" + output), device_time


def test_generated_eis_script_runs_and_sweeps_high_to_low() -> None:
    script = ps.eis_script(HR, f_start_Hz=1e4, f_end_Hz=1e-1, n_points=11, amplitude_Vrms=5e-3)
    events, device_time = run(script)
    packages = [e for e in events if isinstance(e, ms.DataPackage)]
    ocv = [p.get("ab").value for p in packages if p.get("dc") is None]
    assert ocv == pytest.approx([3.3] * 20)  # the 2 s rest, every 100 ms
    packages = [p for p in packages if p.get("dc") is not None]
    f = np.array([p.get("dc").value for p in packages])
    np.testing.assert_allclose(f, ps.eis_frequencies(1e4, 1e-1, 11), rtol=1e-6)
    z = np.array([p.get("cc").value + 1j * p.get("cd").value for p in packages])
    expected = 0.02 + 0.01 / (1 + 1j * 2 * np.pi * f * 1e-3)
    np.testing.assert_allclose(z, expected, rtol=1e-5)
    assert [e.ident for e in events if isinstance(e, ms.LoopBegin)] == ["000B", "0007"]
    # 2 s OCV rest + sum(2/f + 0.1 s)
    assert device_time == pytest.approx(2 + np.sum(2 / f + 0.1))


def test_generated_ocv_and_cp_scripts_run() -> None:
    events, _ = run(ps.ocv_script(interval_s=0.1, duration_s=0.5))
    values = [e.get("ab").value for e in events if isinstance(e, ms.DataPackage)]
    assert values == pytest.approx([3.3] * 5)
    events, _ = run(ps.chronopotentiometry_script(HR, current_A=0.01, interval_s=0.5, duration_s=1))
    packages = [e for e in events if isinstance(e, ms.DataPackage)]
    assert [p.get("eb").value for p in packages] == pytest.approx([0.5, 1.0])
    assert all(p.get("db").value == pytest.approx(0.01) for p in packages)
    assert all(p.get("ab").value > 3.3 for p in packages)  # charging current raises E


@pytest.mark.parametrize(
    ("lines", "code", "where"),
    [
        (["var f", "bogus 1"], 0x4003, "Line 3"),
        (["var f", "set_e"], 0x4004, "Line 3"),
        (["set_e 12x"], 0x4004, "Line 2"),
        (["set_e p"], 0x4006, "Line 2"),
        (["var f", "var r", "var j", "meas_loop_eis f r j 5m 1M 10 3i 0"], 0x4005, "f_start"),
        (["var f", "var r", "var j", "meas_loop_eis f r j 5m 1k 10 3i 0"], 0x4003, "endloop"),
        (["endloop"], 0x4003, "Line 2"),
        (["pck_start"], 0x4003, "Line 2"),
    ],
)
def test_parse_errors_carry_code_and_position(lines: list[str], code: int, where: str) -> None:
    with pytest.raises(dev.ScriptError) as info:
        dev.parse_script(lines, HR)
    assert info.value.code == code and where in info.value.detail
    assert info.value.line().startswith(f"!{code:04X}: ".encode())


@pytest.mark.parametrize(
    ("ctx", "code"),
    [(context(channel=None), 0x7001), (context(busy=True), 0x7002)],
)
def test_runtime_errors(ctx: dev.DeviceContext, code: int) -> None:
    script = ps.eis_script(HR, f_start_Hz=1e3, f_end_Hz=10, n_points=3, amplitude_Vrms=5e-3)
    program = dev.parse_script(lines_of(script), HR)
    with pytest.raises(dev.ScriptError) as info:
        list(dev.run_script(program, ctx))
    assert info.value.code == code


def test_eis_needs_the_cell_on() -> None:
    lines = ["var f", "var r", "var j", "meas_loop_eis f r j 5m 1k 10 3i 0", "endloop"]
    with pytest.raises(dev.ScriptError) as info:
        list(dev.run_script(dev.parse_script(lines, HR), context()))
    assert info.value.code == 0x7004


def test_overload_flag_when_the_current_exceeds_the_limit() -> None:
    ctx = context()
    ctx.current_limit_A = 0.1  # 5 mV on ~25 mOhm is ~0.2 A
    script = ps.eis_script(
        HR, f_start_Hz=1e3, f_end_Hz=10, n_points=3, amplitude_Vrms=5e-3, dc_potential_V=0
    )
    events, _ = run(script, ctx)
    packages = [e for e in events if isinstance(e, ms.DataPackage)]
    assert all(p.get("cc").status == ms.StatusFlag.OVERLOAD for p in packages)
    assert all(p.get("cc").range_code == 0x1B for p in packages)


def test_expected_line_count_estimate() -> None:
    script = ps.eis_script(HR, f_start_Hz=1e3, f_end_Hz=10, n_points=21, amplitude_Vrms=5e-3)
    program = dev.parse_script(lines_of(script), HR)
    assert program.expected_lines() == 1 + 2 + 20 + 2 + 21
