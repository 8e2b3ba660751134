# ruff: noqa: N802, N815 - unit-suffixed physics names (capacity_Ah, temperature_K, passed_Ah)
"""A bank of equivalent-circuit cells (one slot per cycler channel), vectorised in numpy.

Every parameter and state is an array of shape (n_slots,). The circuit
(docs/simulator.md, "Cell model")::

    V = OCV(q) + h + I*R0(T) + v1 + v2          (I > 0 charging)
    dv_k/dt = (I*R_k - v_k) / tau_k             (k = 1, 2; R_k Arrhenius in T)
    dh/dt = -gamma |I| / (3600 C_nom) * (h - M sign(I))      (one-state hysteresis)
    C_th dT/dt = I*(V - OCV - h) + I*T*dU/dT + I*h - hA (T - T_chamber)

Phases (CC, CV, rest) are integrated in large steps by the closed forms in
``phases.py``; this module holds the state, the parameters and pointwise physics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voltloop.drivers.sim.chemistry import (
    GAS_CONSTANT,
    GRID_POINTS,
    KELVIN,
    Chemistry,
    OcpTable,
)

#: Parameters stored per slot (name -> how it is drawn from a Chemistry).
PARAMETER_FIELDS = (
    "chem_off",
    "nominal_Ah",
    "c_pos",
    "r0",
    "r1",
    "r2",
    "tau1",
    "tau2",
    "r0_ea",
    "r1_ea",
    "r2_ea",
    "anode_share",
    "hyst_m",
    "hyst_gamma",
    "heat_cap",
    "h_area",
    "ds0",
    "ds1",
    "t_ref",
    "t_chamber",
    "side_heat",
    "sei_k",
    "sei_q0",
    "sei_ea",
    "sei_soc_gain",
    "crack_sei",
    "pl_k",
    "pl_phi0",
    "pl_threshold",
    "pl_dead",
    "lam_k",
    "lam_exp",
    "lam_ea",
    "lam_pl",
    "film_sei",
    "film_pl",
    "lam_p_k",
)

#: Dynamic state per slot. ``c_neg``, ``c_pos`` and ``n_li`` age.
STATE_FIELDS = (
    "q",  # Ah of lithium in the graphite
    "n_li",  # cyclable lithium, Ah
    "c_neg",  # graphite capacity, Ah
    "v1",
    "v2",
    "h",
    "temp",  # cell temperature, degC
    "q_sei",  # Ah of lithium bound in SEI
    "q_pl",  # Ah of lithium lost to plating
    "r_film",  # film resistance, ohm
    "throughput",  # Ah charged + discharged
    "lam_neg",  # Ah of graphite capacity lost
    "lam_pos",  # Ah of cathode capacity lost
)

#: Per-cell constants derived from the parameters at load time (hot-path caches):
#: -1/time constant of the thermal mass and the two RC branches (1/s), the graphite
#: table offset, 1/(t_ref + 273.15) (1/K), hysteresis rate per ampere
#: gamma/(3600 C_nom) (1/(A s)), heat per ampere of |I| (hysteresis + side, W/A) and
#: the negated SEI and cracking activation energies (J/mol).
DERIVED_FIELDS = (
    "neg_inv_tau_th",
    "neg_inv_tau1",
    "neg_inv_tau2",
    "off_n",
    "inv_tref",
    "hyst_rate",
    "heat_per_A",
    "neg_sei_ea",
    "neg_lam_ea",
)

#: Every field is one row of ``CellBank.data`` (shape (len(FIELDS), n_slots)).
FIELDS = PARAMETER_FIELDS + STATE_FIELDS + DERIVED_FIELDS
ROW = {name: i for i, name in enumerate(FIELDS)}


class View:
    """Lazily indexed attributes of a bank: ``view.r0`` is ``bank.r0[sel]`` (cached).

    With ``column=True`` every attribute is returned as shape (n, 1) for broadcasting
    against (n, K) trajectories.
    """

    def __init__(self, bank: CellBank, sel: Any, column: bool = False) -> None:
        self._bank = bank
        self._sel = sel
        self._column = column

    def __getattr__(self, name: str) -> np.ndarray:
        value = getattr(self._bank, name)[self._sel]
        if self._column:
            value = value[:, None]
        self.__dict__[name] = value
        return value


class CellBank:
    """Parameters and state of ``n_slots`` cells (all arrays shape (n_slots,)).

    Every field (``bank.q``, ``bank.r0``, ...) is a row view of one matrix
    ``bank.data`` (len(FIELDS), n_slots), so the phase solver gathers all of a
    selection's fields in one indexing call (``bank.data[:, sel]``).
    """

    def __init__(self, n_slots: int, tables: OcpTable | None = None) -> None:
        self.n_slots = n_slots
        self.tables = tables or OcpTable()
        self.loaded = np.zeros(n_slots, dtype=bool)
        self.chemistry: list[Chemistry | None] = [None] * n_slots
        self.data = np.zeros((len(FIELDS), n_slots))
        for name, row in ROW.items():
            setattr(self, name, self.data[row])
        self.nominal_Ah[:] = 1.0
        self.c_pos[:] = 1.0
        self.c_neg[:] = 1.0
        self.tau1[:] = 1.0
        self.tau2[:] = 1.0
        self.heat_cap[:] = 1.0
        self.h_area[:] = 1.0
        self.sei_q0[:] = 1.0
        self.pl_phi0[:] = 1.0

    # --- loading ---------------------------------------------------------------------
    def load(
        self,
        slot: int,
        chem: Chemistry,
        rng: np.random.Generator,
        chamber_C: float = 30.0,
        soc: float = 0.0,
    ) -> None:
        """Put a fresh cell of ``chem`` in ``slot`` with seeded cell-to-cell variation."""
        var = chem.variation

        def draw(name: str, value: float) -> float:
            sd = var.get(name, 0.0)
            return float(value * np.exp(rng.normal(0.0, sd))) if sd > 0 else float(value)

        d = chem.degradation
        values = {
            "chem_off": float(self.tables.index_of(chem)),
            "nominal_Ah": chem.nominal_capacity_Ah,
            "c_pos": draw("c_pos_Ah", chem.c_pos_Ah),
            "r0": draw("r0_ohm", chem.r0_ohm),
            "r1": draw("r1_ohm", chem.r1_ohm),
            "r2": draw("r2_ohm", chem.r2_ohm),
            "tau1": chem.tau1_s,
            "tau2": chem.tau2_s,
            "r0_ea": chem.r0_ea_J_mol,
            "r1_ea": chem.r1_ea_J_mol,
            "r2_ea": chem.r2_ea_J_mol,
            "anode_share": chem.anode_share,
            "hyst_m": chem.hysteresis_V,
            "hyst_gamma": chem.hysteresis_gamma,
            "heat_cap": chem.mass_kg * chem.heat_capacity_J_kgK,
            "h_area": draw("h_area_W_K", chem.h_area_W_K),
            "ds0": chem.entropic_mV_K[0] * 1e-3,
            "ds1": chem.entropic_mV_K[1] * 1e-3,
            "t_ref": chem.t_ref_C,
            "t_chamber": chamber_C,
            "side_heat": chem.side_heat_V,
            "sei_k": draw("sei_k", d.sei_k_Ah2_per_s),
            "sei_q0": d.sei_q0_Ah,
            "sei_ea": d.sei_ea_J_mol,
            "sei_soc_gain": d.sei_soc_gain,
            "crack_sei": d.crack_sei_per_Ah,
            "pl_k": draw("plating_k", d.plating_k_A),
            "pl_phi0": d.plating_phi0_V,
            "pl_threshold": d.plating_threshold_V,
            "pl_dead": d.plating_dead_fraction,
            "lam_k": draw("lam_k", d.lam_k_per_Ah),
            "lam_exp": d.lam_rate_exponent,
            "lam_ea": d.lam_ea_J_mol,
            "lam_pl": d.lam_plating_per_Ah,
            "film_sei": d.film_ohm_per_Ah,
            "film_pl": d.film_plating_ohm_per_Ah,
            "lam_p_k": d.lam_p_per_Ah,
        }
        for name, value in values.items():
            getattr(self, name)[slot] = value
        for name in STATE_FIELDS:
            getattr(self, name)[slot] = 0.0
        self.c_neg[slot] = draw("c_neg_Ah", chem.c_neg_Ah)
        self.n_li[slot] = draw("n_li_Ah", chem.n_li_Ah)
        self._derive(slot)
        self.temp[slot] = chamber_C
        self.loaded[slot] = True
        self.chemistry[slot] = chem
        lo, hi = self.window(np.array([slot]))
        self.q[slot] = lo[0] + soc * (hi[0] - lo[0])
        self.h[slot] = -self.hyst_m[slot]

    def unload(self, slot: int) -> None:
        self.loaded[slot] = False
        self.chemistry[slot] = None

    def copy_slot(self, src: CellBank, src_slot: int, slot: int) -> None:
        """Copy one cell (parameters and state) from another bank."""
        chem = src.chemistry[src_slot]
        self.data[:, slot] = src.data[:, src_slot]
        if chem is not None:
            self.chem_off[slot] = float(self.tables.index_of(chem))
            self._derive(slot)
        self.loaded[slot] = src.loaded[src_slot]
        self.chemistry[slot] = chem

    def _derive(self, slot: int) -> None:
        """Fill the DERIVED_FIELDS of ``slot`` from its parameters."""
        self.neg_inv_tau_th[slot] = -self.h_area[slot] / self.heat_cap[slot]
        self.neg_inv_tau1[slot] = -1.0 / self.tau1[slot]
        self.neg_inv_tau2[slot] = -1.0 / self.tau2[slot]
        self.off_n[slot] = self.chem_off[slot] + GRID_POINTS
        self.inv_tref[slot] = 1.0 / (self.t_ref[slot] + KELVIN)
        self.hyst_rate[slot] = self.hyst_gamma[slot] / (3600.0 * self.nominal_Ah[slot])
        self.heat_per_A[slot] = self.hyst_m[slot] + self.side_heat[slot]
        self.neg_sei_ea[slot] = -self.sei_ea[slot]
        self.neg_lam_ea[slot] = -self.lam_ea[slot]

    # --- pointwise physics -------------------------------------------------------------
    def view(self, sel: Any, column: bool = False) -> View:
        return View(self, sel, column)

    def ocv(self, p: View, q: np.ndarray) -> np.ndarray:
        """Open-circuit voltage (V) at anode charge ``q`` (broadcasts with ``p``)."""
        y = (p.n_li - q) / p.c_pos
        x = q / p.c_neg
        return self.tables.u_pos(y, p.chem_off) - self.tables.u_neg(x, p.chem_off)

    def anode_ocp(self, p: View, q: np.ndarray) -> np.ndarray:
        return self.tables.u_neg(q / p.c_neg, p.chem_off)

    def resistances(
        self, p: View, q: np.ndarray, t_C: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(R0, R1, R2) in ohm at charge ``q`` and temperature ``t_C``.

        R0 = r0 A(E0, T) + R_film; R1 (charge transfer) rises at the ends of the graphite
        range: factor 1 + 0.8 exp(-x/0.08) + 0.3 exp(-(1-x)/0.06).
        """
        x = np.minimum(np.maximum(q / p.c_neg, 0.0), 1.0)
        soc_factor = 1.0 + 0.8 * np.exp(x * (-1.0 / 0.08)) + 0.3 * np.exp((x - 1.0) * (1.0 / 0.06))
        inv_t = (1.0 / GAS_CONSTANT) * (1.0 / (t_C + KELVIN) - 1.0 / (p.t_ref + KELVIN))
        r0 = p.r0 * np.exp(p.r0_ea * inv_t) + p.r_film
        r1 = p.r1 * np.exp(p.r1_ea * inv_t) * soc_factor
        r2 = p.r2 * np.exp(p.r2_ea * inv_t) * soc_factor
        return r0, r1, r2

    def entropic(self, p: View, q: np.ndarray) -> np.ndarray:
        """dOCV/dT (V/K), linear in state of charge between the two end values."""
        s = np.clip(q / p.nominal_Ah, 0.0, 1.0)
        return p.ds0 + (p.ds1 - p.ds0) * s

    def anode_potential(
        self,
        p: View,
        q: np.ndarray,
        current_A: np.ndarray,
        r0: np.ndarray,
        v_rc: np.ndarray,
    ) -> np.ndarray:
        """Graphite potential vs Li/Li+ under load (V).

        phi = U_n(x) - share*(v1 + v2) - I*(R0 + R_film)/2: the graphite carries
        ``anode_share`` of the kinetic/diffusion overpotential, half of the ohmic drop
        (R0 includes the film) and all of the SEI/plating film drop, which sits on
        the graphite surface.
        """
        return self.anode_ocp(p, q) - p.anode_share * v_rc - 0.5 * current_A * (r0 + p.r_film)

    def window(self, sel: Any) -> tuple[np.ndarray, np.ndarray]:
        """Anode charge (Ah) at the chemistry's lower and upper voltage limits at rest.

        Found by bisection on the OCV (monotone in q); shapes (n,).
        """
        p = self.view(sel)
        lo_v = np.array([self._chem_limit(i, low=True) for i in _indices(sel, self.n_slots)])
        hi_v = np.array([self._chem_limit(i, low=False) for i in _indices(sel, self.n_slots)])
        span = p.n_li + 0.0 * lo_v
        return self._solve_q(p, lo_v, span), self._solve_q(p, hi_v, span)

    def _chem_limit(self, i: int, low: bool) -> float:
        chem = self.chemistry[i]
        if chem is None:
            return 0.0
        return chem.min_voltage_V if low else chem.max_voltage_V

    def _solve_q(self, p: View, v: np.ndarray, span: np.ndarray) -> np.ndarray:
        lo = np.zeros_like(v) - 0.05 * span
        hi = span * 1.05
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            above = self.ocv(p, mid) > v
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        return 0.5 * (lo + hi)

    def capacity(self, sel: Any) -> np.ndarray:
        """True low-rate capacity (Ah) between the voltage limits at rest (shape (n,))."""
        lo, hi = self.window(sel)
        return hi - lo

    def temperature_K(self, t_C: np.ndarray) -> np.ndarray:
        return t_C + KELVIN


def _indices(sel: Any, n: int) -> np.ndarray:
    return np.arange(n)[sel]
