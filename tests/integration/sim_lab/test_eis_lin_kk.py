"""Simulated EIS spectra are Kramers-Kronig consistent (Lin-KK, impedance.py)."""

from __future__ import annotations

import numpy as np

from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.reference_protocols import attia_protocol
from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState


def _lin_kk_residual(f: np.ndarray, z: np.ndarray) -> float:
    import impedance.validation as validation

    validation.circuit_elements["np"] = np  # impedance 1.7.1 under NumPy 2 (field notes)
    _, _, _, res_real, res_imag = validation.linKK(f, z, c=0.85, max_M=60, add_cap=True)
    return float(max(np.abs(res_real).max(), np.abs(res_imag).max()))


def test_spectra_pass_lin_kk_fresh_and_aged() -> None:
    lab = SimulatedLab(1, seed=5, eis_timeout_s=1e9)
    lab.load_cell(0, CellSpec(cell_id="c", seed=5))
    f = np.logspace(4, -2, 61)
    assert _lin_kk_residual(f, lab.impedance(0, f)) < 0.01
    lab.start(0, attia_protocol(3.6, 6.0, 5.6, cycles=200, eis_every=100), "e")
    lab.advance(1.0)
    assert lab.status(0).state == ChannelState.WAITING_EIS
    fresh = lab.impedance_parameters(0)
    lab.resume(0)
    for _ in range(200):
        lab.advance(6 * 3600.0)
        if lab.status(0).state != ChannelState.RUNNING:
            break
    assert lab.status(0).state == ChannelState.WAITING_EIS
    aged = lab.impedance_parameters(0)
    assert lab.status(0).cycle == 100
    assert aged.r_sei > fresh.r_sei
    assert _lin_kk_residual(f, lab.impedance(0, f)) < 0.01
