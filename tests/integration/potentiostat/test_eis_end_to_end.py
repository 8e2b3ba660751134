"""Driver ↔ simulated potentiostat over a real pty and TCP: identify, EIS round trip,
Lin-KK, circuit fit, OCV, device errors, abort mid-sweep."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from potentiostat_fake_lab import TRUE_PARAMETERS, FakeLab, model_impedance

from voltloop.drivers.eis import DEFAULT_CIRCUIT, EisSpec
from voltloop.drivers.errors import InstrumentError
from voltloop.drivers.interfaces import InstrumentKind, Potentiostat

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("link", ["tcp", "pty"])
def test_eis_round_trip_passes_lin_kk_and_fit_recovers_the_model(
    serve, lab: FakeLab, link: str
) -> None:
    server, driver = serve(lab, link)
    assert isinstance(driver, Potentiostat)
    identity = driver.identify()
    assert identity.kind is InstrumentKind.POTENTIOSTAT and identity.model == "EmStat4 HR"
    spectrum = driver.eis(EisSpec(fit_circuit=DEFAULT_CIRCUIT))
    assert spectrum.complete and spectrum.n_points == 61
    # the lab was asked for exactly the device's sweep, high -> low
    (asked,) = lab.impedance_calls
    np.testing.assert_allclose(spectrum.frequencies, asked, rtol=7.5e-6)  # quantisation
    assert np.all(np.diff(asked) < 0)
    # driver result = lab impedance within noise (0.1 %) and quantisation (< 7.5e-6)
    truth = model_impedance(spectrum.frequencies)
    relative = np.abs(spectrum.impedance - truth) / np.abs(truth)
    assert relative.max() < 0.006 and np.median(relative) < 0.002
    assert spectrum.linkk is not None and spectrum.linkk.passed
    assert spectrum.linkk.max_residual < 0.005
    assert spectrum.fit is not None
    for name in ("R0", "R1", "R2"):
        assert spectrum.fit.value(name) == pytest.approx(TRUE_PARAMETERS[name], rel=0.03)
    assert spectrum.dc_potential_V == pytest.approx(lab.ocv_V)  # the OCV of the rest
    assert spectrum.instrument.startswith("es4_hr")


def test_ocv_and_chronopotentiometry(serve, lab: FakeLab) -> None:
    _, driver = serve(lab, "tcp")
    assert driver.ocv(interval_s=0.1, duration_s=0.5) == pytest.approx(3.3, abs=1e-5)
    trace = driver.chronopotentiometry(0.01, interval_s=0.1, duration_s=0.3)
    assert trace.complete and len(trace.potential_V) == 3
    assert all(v > 3.3 for v in trace.potential_V)


@pytest.mark.parametrize(("setup", "code"), [("detach", 0x7001), ("busy", 0x7002)])
def test_device_errors_raise_instrument_error_and_the_link_stays_usable(
    serve, lab: FakeLab, setup: str, code: int
) -> None:
    _, driver = serve(lab, "tcp")
    if setup == "detach":
        lab.attached = None
    else:
        lab.busy = True
    with pytest.raises(InstrumentError) as info:
        driver.eis(EisSpec(f_start_Hz=1e3, f_end_Hz=1, dc_potential_V=3.3))
    assert info.value.code == code
    assert driver.identify().model == "EmStat4 HR"


@pytest.mark.parametrize("link", ["tcp", "pty"])
def test_abort_mid_sweep_returns_the_points_measured_so_far(serve, lab: FakeLab, link: str) -> None:
    # 10 kHz -> 10 mHz takes ~980 s of device time; at speed 500 that is ~2 s of wall time
    server, driver = serve(lab, link, speed=500.0)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(spectrum=driver.eis(EisSpec())))
    thread.start()
    time.sleep(0.8)
    assert server.busy
    start = time.monotonic()
    driver.abort()
    thread.join(5.0)
    assert not thread.is_alive() and time.monotonic() - start < 2.0
    spectrum = result["spectrum"]
    assert not spectrum.complete
    assert 5 < spectrum.n_points < 61
    expected = EisSpec().frequencies_Hz[: spectrum.n_points]
    np.testing.assert_allclose(spectrum.frequencies, expected, rtol=7.5e-6)
    assert spectrum.linkk is None  # an aborted sweep is returned as measured
    assert not server.busy
    assert driver.identify().firmware.startswith("es4_hr")
