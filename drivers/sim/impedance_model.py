# ruff: noqa: N802, N815 - unit-suffixed physics names (capacity_Ah, temperature_K, passed_Ah)
"""Electrochemical impedance of a cell at its present state.

Circuit (docs/simulator.md, "Impedance")::

    Z(w) = jwL + R_ohm + ZARC(R_sei, tau_sei, a_sei) + ZARC(R_ct, tau_ct, a_ct)
           + R_d tanh(sqrt(jw tau_d)) / sqrt(jw tau_d)

    ZARC(R, tau, a) = R / (1 + (jw tau)^a)          (R parallel to a CPE)

R_ohm is the cell's ohmic resistance, R_sei grows with the SEI/plating film,
R_ct is the charge-transfer resistance (Arrhenius, SOC-dependent) and the finite
length Warburg term carries the solid-diffusion resistance. Every element is
causal and linear, so a noise-free spectrum satisfies the Kramers-Kronig
relations exactly; the measurement noise is small and proportional to |Z|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImpedanceParameters:
    """Element values of one cell at one moment (ohm, s, H)."""

    inductance_H: float
    r_ohm: float
    r_sei: float
    tau_sei_s: float
    alpha_sei: float
    r_ct: float
    tau_ct_s: float
    alpha_ct: float
    r_diff: float
    tau_diff_s: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def spectrum(params: ImpedanceParameters, frequencies_Hz: np.ndarray) -> np.ndarray:
    """Noise-free complex impedance (ohm), shape of ``frequencies_Hz``."""
    w = 2.0 * np.pi * np.asarray(frequencies_Hz, dtype=float)
    jw = 1j * w
    z = jw * params.inductance_H + params.r_ohm
    z = z + params.r_sei / (1.0 + (jw * params.tau_sei_s) ** params.alpha_sei)
    z = z + params.r_ct / (1.0 + (jw * params.tau_ct_s) ** params.alpha_ct)
    s = np.sqrt(jw * params.tau_diff_s)
    return z + params.r_diff * np.tanh(s) / s


def noisy_spectrum(
    params: ImpedanceParameters,
    frequencies_Hz: np.ndarray,
    rng: np.random.Generator,
    relative_noise: float = 2e-3,
) -> np.ndarray:
    """Spectrum with complex Gaussian noise of ``relative_noise`` x |Z| per component."""
    z = spectrum(params, frequencies_Hz)
    scale = relative_noise * np.abs(z)
    return z + scale * (rng.normal(size=z.shape) + 1j * rng.normal(size=z.shape))
