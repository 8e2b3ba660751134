"""Ageing rates of a bank of cells, evaluated pointwise along a phase trajectory.

Four coupled mechanisms (docs/simulator.md, "Degradation"), every rate in Ah/s:

* SEI growth, parabolic in the SEI amount (so Q_sei ~ sqrt(t)) and Arrhenius in T,
  faster at high graphite lithiation::

      r_sei = k_sei * A(E_sei, T) * (1 + g_soc * x) / (Q_sei + Q0)

* SEI on graphite surface freshly exposed by cracking, driven by the same stress
  as the cracking itself (below)::

      r_crack = k_crack * C_n * c^p * A(E_lam, T) / 3600      (c = charging C-rate)

* Lithium plating, a soft Butler-Volmer-like onset when the graphite potential
  under load, phi = U_n(x) - eta_n, falls below a threshold::

      r_pl = k_pl * softplus((phi_th - phi) / phi0) / 3600      (charging only)

  eta_n grows with current and with resistance (Arrhenius: cold => more plating),
  U_n falls at high lithiation: high C-rate, high SOC and low temperature all plate.

* Loss of graphite active material from particle cracking under fast lithiation
  (charging only), superlinear in C-rate, plus pore clogging by plated lithium::

      r_lam = k_lam * C_n * c^p * A(E_lam, T) / 3600 + k_lam_pl * r_pl

All arguments broadcast; shapes are (n,) or (n, K) for K points along a phase.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voltloop.drivers.sim.chemistry import GAS_CONSTANT, KELVIN


def arrhenius(ea_J_mol: np.ndarray, t_C: np.ndarray, t_ref_C: np.ndarray) -> np.ndarray:
    """exp(Ea/R (1/T_ref - 1/T)): > 1 above the reference temperature for Ea > 0."""
    return np.exp(ea_J_mol / GAS_CONSTANT * (1.0 / (t_ref_C + KELVIN) - 1.0 / (t_C + KELVIN)))


def softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) without overflow."""
    return np.logaddexp(0.0, z)


class Rates:
    """Pointwise ageing rates (Ah/s) for a view of the cell bank.

    ``p`` is a parameter view (attributes are arrays of shape (n,) or (n, 1));
    ``x`` graphite lithiation, ``t_C`` temperature, ``current_A`` (+ charge),
    ``phi_V`` graphite potential under load.
    """

    __slots__ = ("sei", "plating", "lam_neg", "lam_pos")

    def __init__(
        self,
        p: Any,
        x: np.ndarray,
        t_C: np.ndarray,
        current_A: np.ndarray,
        phi_V: np.ndarray,
        q_sei: np.ndarray,
    ) -> None:
        crate = np.abs(current_A) / p.nominal_Ah
        # diffusion-induced stress of fast lithiation (charging only), |c|^p
        stress = np.where(current_A > 0.0, crate, 0.0) ** p.lam_exp * (
            p.c_neg * arrhenius(p.lam_ea, t_C, p.t_ref) / 3600.0
        )
        self.sei = (
            p.sei_k
            * arrhenius(p.sei_ea, t_C, p.t_ref)
            * (1.0 + p.sei_soc_gain * x)
            / (q_sei + p.sei_q0)
            + p.crack_sei * stress
        )
        onset = softplus((p.pl_threshold - phi_V) / p.pl_phi0)
        self.plating = np.where(current_A > 0.0, p.pl_k * onset / 3600.0, 0.0)
        self.lam_neg = p.lam_k * stress + p.lam_pl * self.plating
        self.lam_pos = p.lam_p_k * p.c_pos * crate / 3600.0
