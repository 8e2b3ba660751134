"""The driver against the physics lab (drivers/sim/lab.py) served by drivers/sim/serve.py:
the spectrum of a loaded virtual cell passes Lin-KK and the fit recovers its elements."""

from __future__ import annotations

import pytest

from voltloop.drivers.eis import EisSpec
from voltloop.drivers.potentiostat import PalmSensPotentiostat
from voltloop.drivers.sim.serve import default_lab, load_default_cells, serve_lab

pytestmark = pytest.mark.integration

#: the lab's circuit: L + R_ohm + ZARC(sei) + ZARC(ct) + bounded (tanh) Warburg
LAB_CIRCUIT = "L0-R0-p(R1,CPE1)-p(R2,CPE2)-Ws1"


def test_virtual_cell_spectrum_through_sim_serve_over_a_pty() -> None:
    lab = default_lab(2)
    load_default_cells(lab)  # attaches the potentiostat to channel 0
    truth = lab.impedance_parameters(0)
    with serve_lab(lab, link="pty", speed=None, clock=False) as instruments:
        driver = PalmSensPotentiostat(instruments.urls["potentiostat"])
        try:
            spectrum = driver.eis(EisSpec(fit_circuit=LAB_CIRCUIT))
            ocv = driver.ocv(interval_s=0.1, duration_s=0.3)
        finally:
            driver.close()
    assert spectrum.complete and spectrum.linkk is not None and spectrum.linkk.passed
    fit = spectrum.fit
    assert fit is not None and fit.relative_rmse < 0.01
    assert fit.value("R0") == pytest.approx(truth.r_ohm, rel=0.03)
    assert fit.value("R2") == pytest.approx(truth.r_ct, rel=0.05)
    assert fit.value("Ws1_0") == pytest.approx(truth.r_diff, rel=0.05)
    assert ocv == pytest.approx(lab.open_circuit_voltage(0), abs=1e-5)
