# ruff: noqa: N802, N815 - unit-suffixed physics names (passed_Ah)
"""Large-step integration of CC, CV and rest phases for many cells in one call.

Every live channel advances through (part of) its current step in a single
vectorised solve, whatever the step kind (docs/decisions/0031-large-step-phase-
integration.md). Within a phase the current is

    I(t) = I0 * exp(-a t)        a = 0 for CC and rest (I0 = 0), a > 0 for CV

— for CV the OCV is linearised (secant slope over the expected charge), which
gives the exponential decay of a CC-CV tail. With that, every state has a closed
form in t: charge q(t), RC voltages (the fast one quasi-steady, the slow one
relaxing with tau_2 towards a moving target), hysteresis, and temperature (lumped
with the phase's mean heat). The trajectory is evaluated on a grid dense towards
its far end, where cut-offs happen; the voltage cut-off crossing is interpolated
on the grid and refined by regula falsi on the closed form; safety limits are
checked on the grid; ageing rates are integrated along the grid up to the end.

Records are not produced here: ``coefficients`` packs everything the closed form
needs into one (n, NC) matrix, so the executor can evaluate any number of record
times later in one batch (``trajectory``).

End codes per slot: ``BUDGET`` (time budget used up, the step continues), ``TIME``
(step time limit), ``CUTOFF`` (voltage or current cut-off), ``SAFETY``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voltloop.drivers.sim.cell_model import CellBank
from voltloop.drivers.sim.degradation import Rates

BUDGET, TIME, CUTOFF, SAFETY = 0, 1, 2, 3
GRID = 10
_G = 1.0 - (1.0 - np.linspace(0.0, 1.0, GRID + 1)) ** 2  # grid fractions, dense at the end
_REGULA_FALSI_STEPS = 1

#: Columns of the coefficient matrix (closed-form trajectory of one phase).
COLUMNS = (
    "q0", "i0", "a", "cv", "v_set", "v10", "v20", "r1s", "r2s", "tau1", "tau2",
    "ht", "h0", "hr", "t_inf", "temp0", "tau_th",
    "n_li", "c_pos", "c_neg", "chem_off", "r0", "r1", "r2", "r0_ea", "r1_ea", "r2_ea",
    "t_ref", "r_film",
)  # fmt: skip
_IDX = {name: i for i, name in enumerate(COLUMNS)}


class Coefficients:
    """Named column access to a coefficient matrix ``m`` (n, NC).

    ``column=True`` returns (n, 1) views for broadcasting against grids (n, K).
    """

    def __init__(self, m: np.ndarray, column: bool = False) -> None:
        self.m = m
        self.column = column

    def __getattr__(self, name: str) -> np.ndarray:
        j = _IDX[name]
        value = self.m[:, j : j + 1] if self.column else self.m[:, j]
        self.__dict__[name] = value
        return value


def trajectory(bank: CellBank, c: Coefficients, tau: np.ndarray) -> tuple[np.ndarray, ...]:
    """Closed-form state at phase times ``tau`` (broadcasting with ``c``).

    Returns (V, I, T, q, v1, v2, h, R0) with the shape of ``tau``; V is the terminal
    voltage of the circuit (CV records report the set voltage instead).
    """
    ea = np.exp(-c.a * tau)
    current = c.i0 * ea
    a_safe = np.where(c.a > 0.0, c.a, 1.0)
    g = np.where(c.a > 0.0, (1.0 - ea) / a_safe, tau)
    q = c.q0 + c.i0 * g / 3600.0
    temp = c.t_inf + (c.temp0 - c.t_inf) * np.exp(-tau / c.tau_th)
    r0, r1, r2 = bank.resistances(c, q, temp)
    transient = 1.0 - c.cv
    v1 = current * r1 + transient * (c.v10 - c.i0 * c.r1s) * np.exp(-tau / c.tau1)
    v2 = current * r2 + transient * (c.v20 - c.i0 * c.r2s) * np.exp(-tau / c.tau2)
    h = c.ht + (c.h0 - c.ht) * np.exp(-c.hr * tau)
    v = bank.ocv(c, q) + h + current * r0 + v1 + v2
    return v, current, temp, q, v1, v2, h, r0


def _first_crossing(excess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First grid index where ``excess`` (n, K+1) is >= 0: (found, k) with k >= 0."""
    pos = excess >= 0.0
    k = np.argmax(pos, axis=1)
    found = pos[np.arange(pos.shape[0]), k]
    return found, k


def _cross_time(tau: np.ndarray, excess: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Linear interpolation of the crossing time inside grid interval (k-1, k]."""
    rows = np.arange(tau.shape[0])
    kl = np.maximum(k - 1, 0)
    e0, e1 = excess[rows, kl], excess[rows, k]
    t0, t1 = tau[rows, kl], tau[rows, k]
    w = np.where(e1 - e0 > 1e-15, -e0 / np.where(e1 - e0 > 1e-15, e1 - e0, 1.0), 1.0)
    return np.where(k == 0, 0.0, t0 + np.clip(w, 0.0, 1.0) * (t1 - t0))


class Phase:
    """One step (or the part of it that fits the time budget) for slots ``sel``.

    Per-slot inputs (shape (n,)): ``cv`` (bool: constant voltage), ``i_set`` (A, CC
    current, 0 for rest), ``v_set`` (V, CV voltage), ``v_cut`` (V, NaN = none),
    ``i_cut`` (A, NaN = none), ``t_avail`` (budget, s), ``t_left`` (step time left,
    s), and limits ``v_lo``, ``v_hi``, ``t_hi``.
    """

    def __init__(
        self,
        bank: CellBank,
        sel: Any,
        cv: np.ndarray,
        i_set: np.ndarray,
        v_set: np.ndarray,
        v_cut: np.ndarray,
        i_cut: np.ndarray,
        t_avail: np.ndarray,
        t_left: np.ndarray,
        limits: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        self.bank, self.sel = bank, sel
        p = bank.view(sel)
        n = cv.shape[0]
        q0, temp0, h0 = p.q, p.temp, p.h
        r0s, r1s, r2s = bank.resistances(p, q0, temp0)
        t_lim = np.minimum(t_avail, t_left)
        i0 = i_set
        a = np.zeros(n)
        t_cv = np.full(n, np.inf)
        if cv.any():
            i0, a, t_cv = self._linearise_cv(p, cv, i_set, v_set, i_cut, t_lim, r0s + r1s + r2s)
        nominal = p.nominal_Ah
        span = np.where(i0 > 0, np.minimum(p.n_li, p.c_neg) - q0, q0) + 0.02 * nominal
        moving = ~cv & (i0 != 0.0)
        t_range = np.where(moving, 3600.0 * span / np.where(moving, np.abs(i0), 1.0), np.inf)
        t_max = np.maximum(np.minimum(np.minimum(t_lim, t_range), t_cv), 1e-6)
        # heat: Joule at the mean current + entropic + hysteresis dissipation
        i_mean = np.where(cv, i0 * (1.0 - np.exp(-a * t_max)) / np.maximum(a * t_max, 1e-12), i0)
        i_mean = np.where(cv & (a * t_max < 1e-9), i0, i_mean)
        heat = (
            i_mean * i_mean * (r0s + r1s + r2s)
            + i_mean * (temp0 + 273.15) * bank.entropic(p, q0)
            + np.abs(i_mean) * (p.hyst_m + p.side_heat)
        )
        sgn = np.sign(i0)
        coef = np.empty((n, len(COLUMNS)))
        for name, value in (
            ("q0", q0), ("i0", i0), ("a", a), ("cv", cv), ("v_set", v_set),
            ("v10", p.v1), ("v20", p.v2), ("r1s", r1s), ("r2s", r2s),
            ("tau1", p.tau1), ("tau2", p.tau2), ("ht", p.hyst_m * sgn), ("h0", h0),
            ("hr", p.hyst_gamma * np.abs(i0) / (3600.0 * nominal)),
            ("t_inf", p.t_chamber + heat / p.h_area), ("temp0", temp0),
            ("tau_th", p.heat_cap / p.h_area),
            ("n_li", p.n_li), ("c_pos", p.c_pos), ("c_neg", p.c_neg),
            ("chem_off", p.chem_off), ("r0", p.r0), ("r1", p.r1), ("r2", p.r2),
            ("r0_ea", p.r0_ea), ("r1_ea", p.r1_ea), ("r2_ea", p.r2_ea),
            ("t_ref", p.t_ref), ("r_film", p.r_film),
        ):  # fmt: skip
            coef[:, _IDX[name]] = value
        self.coef = coef
        cc = Coefficients(coef, column=True)
        tau = t_max[:, None] * _G[None, :]
        v, current, temp, q, v1, v2, _, r0 = trajectory(bank, cc, tau)
        # --- where the phase ends ------------------------------------------------------
        end_t = t_max
        code = np.where(cv & (t_cv <= t_lim), CUTOFF, np.where(t_max >= t_left, TIME, BUDGET))
        has_cut = ~np.isnan(v_cut) & ~cv
        cut_k = np.full(n, GRID + 1)
        if has_cut.any():
            direction = np.where(i0 > 0, 1.0, -1.0)
            excess = direction[:, None] * (v - np.where(has_cut, v_cut, 0.0)[:, None])
            found, k = _first_crossing(excess)
            found &= has_cut
            if found.any():
                t_cut = self._refine(tau, excess, k, v_cut, direction)
                end_t = np.where(found, np.minimum(t_cut, end_t), end_t)
                code = np.where(found & (t_cut <= t_max), CUTOFF, code)
                cut_k = np.where(found, k, cut_k)
        v_lo, v_hi, t_hi = limits
        t_safe = np.full(n, np.inf)
        for excess, voltage in (
            (v - v_hi[:, None], True),
            (v_lo[:, None] - v, True),
            (temp - t_hi[:, None], False),
        ):
            found, k = _first_crossing(excess)
            if voltage:  # a cut-off inside the limits ends the phase first
                found &= (k < cut_k) & ~cv
            if found.any():
                t_safe = np.where(found, np.minimum(t_safe, _cross_time(tau, excess, k)), t_safe)
        tripped = t_safe <= end_t
        self.end_t = np.where(tripped, t_safe, end_t)
        self.code = np.where(tripped, SAFETY, code)
        # --- ageing along the grid up to end_t -----------------------------------------
        pc = bank.view(sel, column=True)
        phi = bank.anode_potential(pc, q, current, r0, v1 + v2)
        rates = Rates(pc, q / pc.c_neg, temp, current, phi, pc.q_sei)
        self.phi_min = phi.min(axis=1)  # lowest graphite potential on the grid (diagnostic)
        frac = np.clip(self.end_t / t_max, 0.0, 1.0)
        kf = GRID * (1.0 - np.sqrt(1.0 - frac))  # inverse of the grid spacing
        dt = np.diff(tau, axis=1)
        stacked = np.concatenate(
            np.broadcast_arrays(rates.sei, rates.plating, rates.lam_neg, rates.lam_pos)
        )
        self.ageing = list(_integral_to(stacked, np.tile(dt, (4, 1)), np.tile(kf, 4)).reshape(4, n))

    def _linearise_cv(
        self,
        p: Any,
        cv: np.ndarray,
        i_set: np.ndarray,
        v_set: np.ndarray,
        i_cut: np.ndarray,
        t_lim: np.ndarray,
        r_eff: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CV current I0 exp(-a t) with ``a`` from the secant OCV slope between the
        start and the end of the hold; the end time is where |I| reaches ``i_cut``.

        With a current cut-off the end charge solves OCV(q_end) = V - h - I_cut R
        (regula falsi, Illinois variant, inside the electrode range); without one the
        secant runs over the charge the time limit allows (two passes).
        Returns (I0, a, t_cv) for all slots (CC slots keep ``i_set``, a = 0, inf).
        """
        bank = self.bank
        q0 = p.q
        ocv0 = bank.ocv(p, q0)
        i_cv = np.where(cv, (v_set - ocv0 - p.h) / r_eff, 0.0)
        sgn = np.where(i_cv >= 0.0, 1.0, -1.0)
        has_cut = cv & ~np.isnan(i_cut)
        cut = np.where(has_cut, i_cut, 1.0)
        ratio = np.maximum(np.abs(i_cv) / cut, 1.0)
        step = sgn * 2e-3 * p.nominal_Ah
        slope = np.maximum(np.abs(bank.ocv(p, q0 + step) - ocv0) / np.abs(step), 1e-3)
        if has_cut.any():
            target = v_set - p.h - sgn * cut * r_eff
            lo, f_lo = q0.copy(), sgn * (ocv0 - target)
            hi = np.where(sgn > 0, np.minimum(p.n_li, p.c_neg), 0.0) + sgn * 0.02 * p.nominal_Ah
            f_hi = sgn * (bank.ocv(p, hi) - target)
            side = np.zeros(q0.shape)
            for _ in range(5):
                denom = np.where(np.abs(f_hi - f_lo) > 1e-12, f_hi - f_lo, 1.0)
                mid = lo - f_lo * (hi - lo) / denom
                f_mid = sgn * (bank.ocv(p, mid) - target)
                up = f_mid >= 0.0
                hi, f_hi = np.where(up, mid, hi), np.where(up, f_mid, f_hi)
                lo, f_lo = np.where(up, lo, mid), np.where(up, f_lo, f_mid)
                # Illinois: halve the stale end's value so the bracket keeps shrinking
                f_lo = np.where(up & (side > 0), 0.5 * f_lo, f_lo)
                f_hi = np.where(~up & (side < 0), 0.5 * f_hi, f_hi)
                side = np.where(up, 1.0, -1.0)
            q_end = np.where(np.abs(f_lo) < np.abs(f_hi), lo, hi)
            dq = q_end - q0
            big = has_cut & (np.abs(dq) > 1e-6)
            secant = np.abs(bank.ocv(p, q_end) - ocv0) / np.where(big, np.abs(dq), 1.0)
            slope = np.where(big, np.maximum(secant, 1e-3), slope)
        a = slope / (r_eff * 3600.0)
        no_cut = cv & ~has_cut
        if no_cut.any():
            for _ in range(2):
                dq = i_cv * (1.0 - np.exp(-a * t_lim)) / (a * 3600.0)
                big = no_cut & (np.abs(dq) > 1e-5)
                secant = np.abs(bank.ocv(p, q0 + dq) - ocv0) / np.where(big, np.abs(dq), 1.0)
                a = np.where(big, np.maximum(secant, 1e-3) / (r_eff * 3600.0), a)
        t_cv = np.where(has_cut, np.log(ratio) / a, np.inf)
        return (
            np.where(cv, i_cv, i_set),
            np.where(cv, a, 0.0),
            np.where(cv, t_cv, np.inf),
        )

    def _refine(
        self,
        tau: np.ndarray,
        excess: np.ndarray,
        k: np.ndarray,
        v_cut: np.ndarray,
        direction: np.ndarray,
    ) -> np.ndarray:
        """Regula falsi on the closed form inside the bracketing grid interval."""
        rows = np.arange(tau.shape[0])
        kl = np.maximum(k - 1, 0)
        a, b = tau[rows, kl], tau[rows, k]
        fa, fb = excess[rows, kl], excess[rows, k]
        cut = np.where(np.isnan(v_cut), 0.0, v_cut)
        c = Coefficients(self.coef, column=True)
        t = b
        for _ in range(_REGULA_FALSI_STEPS):
            denom = np.where(np.abs(fb - fa) > 1e-15, fb - fa, 1.0)
            t = np.clip(a - fa * (b - a) / denom, a, b)
            ft = direction * (trajectory(self.bank, c, t[:, None])[0][:, 0] - cut)
            right = ft >= 0.0
            b, fb = np.where(right, t, b), np.where(right, ft, fb)
            a, fa = np.where(right, a, t), np.where(right, fa, ft)
        return np.where(k == 0, 0.0, t)

    @property
    def passed_Ah(self) -> np.ndarray:
        """Charge passed during the phase (Ah, + charging)."""
        c = Coefficients(self.coef)
        a_safe = np.where(c.a > 0.0, c.a, 1.0)
        g = np.where(c.a > 0.0, (1.0 - np.exp(-c.a * self.end_t)) / a_safe, self.end_t)
        return c.i0 * g / 3600.0

    def commit(self) -> None:
        """Move the cells to the phase's end state and apply the integrated ageing."""
        bank, sel = self.bank, self.sel
        c = Coefficients(self.coef)
        v_end, _, temp, q, v1, v2, h, _ = trajectory(bank, c, self.end_t)
        self.v_end = np.where(c.cv > 0, c.v_set, v_end)
        p = bank.view(sel)
        bank.v1[sel] = v1
        bank.v2[sel] = v2
        bank.h[sel] = h
        bank.temp[sel] = temp
        bank.throughput[sel] = p.throughput + np.abs(q - c.q0)
        apply_ageing(bank, sel, p, q, *self.ageing)


def _integral_to(rate: np.ndarray, dt: np.ndarray, kf: np.ndarray) -> np.ndarray:
    """Trapezoid integral of ``rate`` (n, K+1) on spacings ``dt`` (n, K) up to the
    fractional grid index ``kf`` (n,)."""
    inc = 0.5 * (rate[:, 1:] + rate[:, :-1]) * dt
    cum = np.concatenate([np.zeros((rate.shape[0], 1)), np.cumsum(inc, axis=1)], axis=1)
    k = np.minimum(kf.astype(np.intp), rate.shape[1] - 2)
    rows = np.arange(rate.shape[0])
    w = kf - k
    return cum[rows, k] + w * (cum[rows, k + 1] - cum[rows, k])


def apply_ageing(
    bank: CellBank,
    sel: Any,
    p: Any,
    q: np.ndarray,
    d_sei: np.ndarray,
    d_pl: np.ndarray,
    d_lam_n: np.ndarray,
    d_lam_p: np.ndarray,
) -> None:
    """Write the aged state: LLI from SEI and plating, lithiated graphite LAM, films.

    Plated lithium came from the charge current but never entered the graphite, and
    graphite that loses contact takes its lithium with it (docs/simulator.md).
    """
    x = np.clip(q / p.c_neg, 0.0, 1.0)
    li_in_lost_graphite = x * d_lam_n
    bank.q[sel] = q - d_sei - d_pl - li_in_lost_graphite
    bank.n_li[sel] = p.n_li - d_sei - p.pl_dead * d_pl - li_in_lost_graphite
    bank.c_neg[sel] = p.c_neg - d_lam_n
    bank.c_pos[sel] = p.c_pos - d_lam_p
    bank.q_sei[sel] = p.q_sei + d_sei
    bank.q_pl[sel] = p.q_pl + d_pl
    bank.lam_neg[sel] = p.lam_neg + d_lam_n
    bank.lam_pos[sel] = p.lam_pos + d_lam_p
    bank.r_film[sel] = p.r_film + p.film_sei * d_sei + p.film_pl * d_pl
