# ruff: noqa: N802, N815 - unit-suffixed physics names (capacity_Ah, temperature_K, passed_Ah)
"""Large-step integration of constant-current, constant-voltage and rest phases.

Each integrator works on a selection of bank slots at once and proceeds in three
moves (docs/decisions/0031-large-step-phase-integration.md):

1. evaluate the closed-form trajectory on a coarse grid over the longest time the
   phase can last within the time budget (shape (n, K+1));
2. find when it ends: the time limit, the voltage (or current) cut-off, a safety
   limit — crossings are interpolated on the grid and refined by secant steps on
   the exact closed form;
3. ``sample(rows, tau)`` evaluates the trajectory at record times (before the state
   moves on) and ``commit()`` writes the end state and the integrated ageing.

End codes per slot: ``BUDGET`` (time budget used up, phase continues), ``TIME``
(step time limit), ``CUTOFF`` (voltage or current cut-off), ``SAFETY``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voltloop.drivers.sim.cell_model import CellBank
from voltloop.drivers.sim.degradation import Rates

BUDGET, TIME, CUTOFF, SAFETY = 0, 1, 2, 3
#: Grid intervals per CC phase, substeps per CV phase, rest grid intervals.
CC_GRID = 12
CV_SUBSTEPS = 5
REST_GRID = 3
SCAN_SUBSTEPS = 8
_SECANT_STEPS = 2


class PhaseLimits:
    """Per-slot bounds checked while a phase runs (arrays of shape (n,))."""

    def __init__(self, v_lo: np.ndarray, v_hi: np.ndarray, t_hi: np.ndarray) -> None:
        self.v_lo = v_lo
        self.v_hi = v_hi
        self.t_hi = t_hi


def _cum_integral(rate: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Trapezoid cumulative integral along axis 1; ``dt`` (n, 1) uniform spacing."""
    inc = 0.5 * (rate[:, 1:] + rate[:, :-1]) * dt
    out = np.zeros_like(rate)
    np.cumsum(inc, axis=1, out=out[:, 1:])
    return out


def _at_fraction(values: np.ndarray, kf: np.ndarray) -> np.ndarray:
    """Linear interpolation of rows of ``values`` (n, K+1) at fractional index kf (n,)."""
    k = np.clip(np.floor(kf).astype(np.intp), 0, values.shape[1] - 2)
    frac = (kf - k)[:, None]
    lo = np.take_along_axis(values, k[:, None], axis=1)
    hi = np.take_along_axis(values, k[:, None] + 1, axis=1)
    return (lo + frac * (hi - lo))[:, 0]


def _first_crossing(excess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First grid interval where ``excess`` (n, K+1) turns >= 0.

    Returns (found (n,) bool, fractional index (n,)) with linear interpolation.
    """
    pos = excess >= 0.0
    found = pos[:, 1:].any(axis=1) | pos[:, 0]
    k = np.argmax(pos, axis=1)
    k_hi = np.maximum(k, 1)
    e_hi = np.take_along_axis(excess, k_hi[:, None], axis=1)[:, 0]
    e_lo = np.take_along_axis(excess, (k_hi - 1)[:, None], axis=1)[:, 0]
    denom = np.where(e_hi - e_lo > 1e-15, e_hi - e_lo, 1.0)
    frac = np.clip(-e_lo / denom, 0.0, 1.0)
    kf = np.where(k == 0, 0.0, k_hi - 1 + frac)
    return found, kf


class ConstantCurrentPhase:
    """CC at ``current_A`` (n,) until ``t_avail`` (n,) or the voltage cut-off ``v_cut``.

    ``v_cut`` is NaN where the step has no voltage condition; it is crossed upwards
    when charging and downwards when discharging.
    """

    def __init__(
        self,
        bank: CellBank,
        sel: Any,
        current_A: np.ndarray,
        t_avail: np.ndarray,
        t_step_left: np.ndarray,
        v_cut: np.ndarray,
        limits: PhaseLimits,
    ) -> None:
        self.bank, self.sel, self.current = bank, sel, current_A
        p = bank.view(sel)
        pc = bank.view(sel, column=True)
        self.p, self.pc = p, pc
        i = current_A
        ic = i[:, None]
        r0s, r1s, r2s = bank.resistances(p, p.q, p.temp)
        self.r1, self.r2 = r1s, r2s
        sgn = np.sign(i)
        self.h_target = p.hyst_m * sgn
        self.h_rate = p.hyst_gamma * np.abs(i) / (3600.0 * p.nominal_Ah)
        # heat: Joule at steady overpotential + reversible (entropic) + hysteresis
        t_k = bank.temperature_K(p.temp)
        heat = i * i * (r0s + r1s + r2s) + i * t_k * bank.entropic(p, p.q) + np.abs(i) * p.hyst_m
        self.t_inf = p.t_chamber + heat / p.h_area
        self.tau_th = p.heat_cap / p.h_area
        # longest duration: budget, step time, or running out of electrode range
        span = np.where(i > 0, p.n_li - p.q, p.q) + 0.02 * p.nominal_Ah
        t_range = 3600.0 * span / np.maximum(np.abs(i), 1e-9)
        t_max = np.minimum(np.minimum(t_avail, t_step_left), t_range)
        t_max = np.maximum(t_max, 1e-6)
        self.t_max = t_max
        tau = t_max[:, None] * np.linspace(0.0, 1.0, CC_GRID + 1)[None, :]
        q, v1, v2, h, temp, r0 = self._trajectory(pc, ic, tau)
        v = bank.ocv(pc, q) + h + ic * r0 + v1 + v2
        dt = (t_max / CC_GRID)[:, None]
        # --- end of phase ------------------------------------------------------------
        end_t = t_max.copy()
        code = np.where(t_max >= t_step_left - 1e-9, TIME, BUDGET)
        has_cut = ~np.isnan(v_cut)
        cut_k = np.full(i.shape, CC_GRID + 1.0)
        if has_cut.any():
            direction = np.where(i > 0, 1.0, -1.0)[:, None]
            excess = direction * (v - np.where(has_cut, v_cut, 0.0)[:, None])
            found, kf = _first_crossing(excess)
            found &= has_cut
            t_cut = self._refine(found, kf * dt[:, 0], dt[:, 0], v_cut, direction[:, 0])
            t_cut = np.where(kf == 0.0, 0.0, t_cut)
            take = found & (t_cut <= end_t)
            end_t = np.where(take, t_cut, end_t)
            code = np.where(take, CUTOFF, code)
            cut_k = np.where(take, np.floor(kf), cut_k)
        # safety: voltage and temperature bounds on the grid (a cut-off inside the
        # limits ends the phase first, so voltage crossings at or after its grid
        # interval are not violations)
        t_safe = np.full(i.shape, np.inf)
        for excess, is_voltage in (
            (v - limits.v_hi[:, None], True),
            (limits.v_lo[:, None] - v, True),
            (temp - limits.t_hi[:, None], False),
        ):
            sfound, skf = _first_crossing(excess)
            if is_voltage:
                sfound &= np.floor(skf) < cut_k
            t_safe = np.where(sfound, np.minimum(t_safe, skf * dt[:, 0]), t_safe)
        take = t_safe < end_t
        end_t = np.where(take, t_safe, end_t)
        code = np.where(take, SAFETY, code)
        self.end_t, self.code = end_t, code
        self.v_grid, self.t_grid = v, temp
        self.safety_voltage = v
        # --- ageing along the grid, integrated up to end_t ---------------------------
        phi = bank.anode_potential(pc, q, ic, r0, v1 + v2)
        rates = Rates(pc, q / pc.c_neg, temp, ic + 0.0 * q, phi, pc.q_sei)
        kf_end = end_t / dt[:, 0]
        self.d_sei = _at_fraction(_cum_integral(rates.sei, dt), kf_end)
        self.d_pl = _at_fraction(_cum_integral(rates.plating, dt), kf_end)
        self.d_lam_n = _at_fraction(_cum_integral(rates.lam_neg, dt), kf_end)
        self.d_lam_p = _at_fraction(_cum_integral(rates.lam_pos, dt), kf_end)

    def _trajectory(self, pc: Any, ic: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, ...]:
        """Closed-form state at times ``tau`` (n, K) after the phase start."""
        bank = self.bank
        r1c, r2c = self.r1[:, None], self.r2[:, None]
        q = pc.q + ic * tau / 3600.0
        v1 = ic * r1c + (pc.v1 - ic * r1c) * np.exp(-tau / pc.tau1)
        v2 = ic * r2c + (pc.v2 - ic * r2c) * np.exp(-tau / pc.tau2)
        ht = self.h_target[:, None]
        h = ht + (pc.h - ht) * np.exp(-self.h_rate[:, None] * tau)
        ti = self.t_inf[:, None]
        temp = ti + (pc.temp - ti) * np.exp(-tau / self.tau_th[:, None])
        r0, _, _ = bank.resistances(pc, q, temp)
        return q, v1, v2, h, temp, r0

    def _voltage_at(self, tau: np.ndarray) -> np.ndarray:
        pc = self.pc
        ic = self.current[:, None]
        q, v1, v2, h, temp, r0 = self._trajectory(pc, ic, tau[:, None])
        return (self.bank.ocv(pc, q) + h + ic * r0 + v1 + v2)[:, 0]

    def _refine(
        self,
        found: np.ndarray,
        t_guess: np.ndarray,
        dt: np.ndarray,
        v_cut: np.ndarray,
        direction: np.ndarray,
    ) -> np.ndarray:
        """Secant refinement of the cut-off time inside its grid interval."""
        if not found.any():
            return t_guess
        cut = np.where(np.isnan(v_cut), 0.0, v_cut)
        lo = np.clip(t_guess - dt, 0.0, None)
        hi = np.minimum(t_guess + dt, self.t_max)
        # bracket [a, b] around the crossing, secant on the exact closed form
        a = np.maximum(np.floor(t_guess / np.maximum(dt, 1e-12)) * dt, lo)
        b = np.minimum(a + dt, hi)
        fa = direction * (self._voltage_at(a) - cut)
        fb = direction * (self._voltage_at(b) - cut)
        t = t_guess
        for _ in range(_SECANT_STEPS):
            denom = np.where(np.abs(fb - fa) > 1e-15, fb - fa, 1.0)
            t = np.clip(a - fa * (b - a) / denom, a, b)
            ft = direction * (self._voltage_at(t) - cut)
            right = ft >= 0.0
            b = np.where(right, t, b)
            fb = np.where(right, ft, fb)
            a = np.where(right, a, t)
            fa = np.where(right, fa, ft)
        return np.where(found, t, t_guess)

    def sample(self, rows: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, ...]:
        """(V, I, T) at phase times ``tau`` for selection rows ``rows`` (both (m,))."""
        pc = self.bank.view(_sub(self.sel, rows, self.bank.n_slots))
        ic = self.current[rows]
        r1, r2 = self.r1[rows], self.r2[rows]
        q = pc.q + ic * tau / 3600.0
        v1 = ic * r1 + (pc.v1 - ic * r1) * np.exp(-tau / pc.tau1)
        v2 = ic * r2 + (pc.v2 - ic * r2) * np.exp(-tau / pc.tau2)
        ht = self.h_target[rows]
        h = ht + (pc.h - ht) * np.exp(-self.h_rate[rows] * tau)
        ti = self.t_inf[rows]
        temp = ti + (pc.temp - ti) * np.exp(-tau / self.tau_th[rows])
        r0, _, _ = self.bank.resistances(pc, q, temp)
        v = self.bank.ocv(pc, q) + h + ic * r0 + v1 + v2
        return v, ic, temp, ic * tau / 3600.0

    @property
    def passed_Ah(self) -> np.ndarray:
        """Charge passed during the phase (Ah, + charging)."""
        return self.current * self.end_t / 3600.0

    def commit(self) -> None:
        """Move the selected cells to the end state and apply the ageing."""
        bank, sel, p = self.bank, self.sel, self.p
        t = self.end_t
        i = self.current
        q = p.q + i * t / 3600.0
        bank.v1[sel] = i * self.r1 + (p.v1 - i * self.r1) * np.exp(-t / p.tau1)
        bank.v2[sel] = i * self.r2 + (p.v2 - i * self.r2) * np.exp(-t / p.tau2)
        bank.h[sel] = self.h_target + (p.h - self.h_target) * np.exp(-self.h_rate * t)
        bank.temp[sel] = self.t_inf + (p.temp - self.t_inf) * np.exp(-t / self.tau_th)
        bank.throughput[sel] = p.throughput + np.abs(i) * t / 3600.0
        _apply_ageing(bank, sel, p, q, self.d_sei, self.d_pl, self.d_lam_n, self.d_lam_p)


class ConstantVoltagePhase:
    """CV at ``voltage_V`` until ``|I| <= i_cut`` (NaN = none) or ``t_avail``.

    The RC branches are taken as quasi-steady (CV phases last minutes, tau_1,2 are
    seconds to two minutes), so I = (V_cv - OCV(q) - h) / (R0 + R1 + R2); the OCV is
    linearised per substep, giving exponential current decay inside each substep.
    Substeps are spaced evenly in log-current down to the cut-off.
    """

    def __init__(
        self,
        bank: CellBank,
        sel: Any,
        voltage_V: np.ndarray,
        t_avail: np.ndarray,
        t_step_left: np.ndarray,
        i_cut: np.ndarray,
        limits: PhaseLimits,
    ) -> None:
        self.bank, self.sel = bank, sel
        p = bank.view(sel)
        self.p = p
        n = voltage_V.shape[0]
        q = p.q.copy()
        temp = p.temp.copy()
        t = np.zeros(n)
        t_lim = np.minimum(t_avail, t_step_left)
        has_cut = ~np.isnan(i_cut)
        cut = np.where(has_cut, i_cut, 0.0)
        ts, qs, cs, temps = [t.copy()], [q.copy()], [], [temp.copy()]
        d_sei = np.zeros(n)
        d_pl = np.zeros(n)
        d_lam_n = np.zeros(n)
        d_lam_p = np.zeros(n)
        done = np.zeros(n, dtype=bool)
        current = np.zeros(n)
        dq = 2e-3 * p.nominal_Ah
        for j in range(CV_SUBSTEPS):
            r0, r1, r2 = bank.resistances(p, q, temp)
            r_eff = r0 + r1 + r2
            ocv = bank.ocv(p, q)
            current = (voltage_V - ocv - p.h) / r_eff
            if j == 0:
                cs.append(current.copy())
            slope = np.abs(bank.ocv(p, q + dq) - ocv) / dq
            slope = np.maximum(slope, 1e-3)
            tau = r_eff * 3600.0 / slope
            ratio = np.abs(current) / np.maximum(cut, 1e-12)
            left = CV_SUBSTEPS - j
            dt_cut = np.where(
                has_cut & (ratio > 1.0), tau * np.log(np.maximum(ratio, 1.0)) / left, 0.0
            )
            dt_time = (t_lim - t) / left
            dt = np.where(has_cut, np.minimum(dt_cut, t_lim - t), dt_time)
            dt = np.where(done, 0.0, np.maximum(dt, 0.0))
            decay = np.exp(-dt / tau)
            charge = current * tau * (1.0 - decay) / 3600.0  # Ah passed in the substep
            i_end = current * decay
            i_mean = np.where(dt > 0, charge * 3600.0 / np.maximum(dt, 1e-12), current)
            heat = i_mean * i_mean * r_eff + i_mean * bank.temperature_K(temp) * bank.entropic(p, q)
            t_inf = p.t_chamber + heat / p.h_area
            temp_new = t_inf + (temp - t_inf) * np.exp(-dt * p.h_area / p.heat_cap)
            phi = bank.anode_potential(p, q, current, r0, current * (r1 + r2))
            rates = Rates(p, q / p.c_neg, temp, current, phi, p.q_sei)
            d_sei += rates.sei * dt
            d_pl += rates.plating * dt
            d_lam_n += rates.lam_neg * dt
            d_lam_p += rates.lam_pos * dt
            q = q + charge
            temp = temp_new
            t = t + dt
            ts.append(t.copy())
            qs.append(q.copy())
            cs.append(i_end.copy())
            temps.append(temp.copy())
            done |= dt <= 0.0
        self.t_traj = np.stack(ts, axis=1)
        self.q_traj = np.stack(qs, axis=1)
        self.i_traj = np.stack(cs, axis=1)
        self.temp_traj = np.stack(temps, axis=1)
        self.voltage = voltage_V
        self.end_t = t
        reached = has_cut & (np.abs(current) <= cut * 1.05 + 1e-12)
        reached |= has_cut & (t < t_lim - 1e-9)
        code = np.where(t >= t_step_left - 1e-9, TIME, BUDGET)
        code = np.where(reached, CUTOFF, code)
        over_t = temps[-1] > limits.t_hi
        over_v = (voltage_V > limits.v_hi) | (voltage_V < limits.v_lo)
        code = np.where(over_t | over_v, SAFETY, code)
        self.code = code
        self.q_end, self.temp_end, self.i_end = q, temp, self.i_traj[:, -1]
        self.d_sei, self.d_pl, self.d_lam_n, self.d_lam_p = d_sei, d_pl, d_lam_n, d_lam_p

    def sample(self, rows: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, ...]:
        """(V, I, T) at phase times ``tau`` for selection rows (interpolated on substeps)."""
        tt = self.t_traj[rows]
        k = np.clip((tt <= tau[:, None]).sum(axis=1) - 1, 0, tt.shape[1] - 2)
        t_lo = np.take_along_axis(tt, k[:, None], 1)[:, 0]
        t_hi = np.take_along_axis(tt, k[:, None] + 1, 1)[:, 0]
        w = np.clip((tau - t_lo) / np.maximum(t_hi - t_lo, 1e-12), 0.0, 1.0)

        def lerp(a: np.ndarray) -> np.ndarray:
            lo = np.take_along_axis(a[rows], k[:, None], 1)[:, 0]
            hi = np.take_along_axis(a[rows], k[:, None] + 1, 1)[:, 0]
            return lo + w * (hi - lo)

        i = lerp(self.i_traj)
        passed = lerp(self.q_traj) - self.q_traj[rows, 0]
        return self.voltage[rows] + 0.0 * i, i, lerp(self.temp_traj), passed

    @property
    def passed_Ah(self) -> np.ndarray:
        return self.q_end - self.q_traj[:, 0]

    def commit(self) -> None:
        bank, sel, p = self.bank, self.sel, self.p
        r0, r1, r2 = bank.resistances(p, self.q_end, self.temp_end)
        bank.v1[sel] = self.i_end * r1
        bank.v2[sel] = self.i_end * r2
        bank.temp[sel] = self.temp_end
        bank.throughput[sel] = p.throughput + np.abs(self.q_end - p.q)
        _apply_ageing(bank, sel, p, self.q_end, self.d_sei, self.d_pl, self.d_lam_n, self.d_lam_p)


class RestPhase:
    """Open circuit for ``t_avail`` (n,) (or until the step time ends): RC relaxation,
    cooling towards the chamber, calendar SEI growth."""

    def __init__(
        self, bank: CellBank, sel: Any, t_avail: np.ndarray, t_step_left: np.ndarray
    ) -> None:
        self.bank, self.sel = bank, sel
        p = bank.view(sel)
        self.p = p
        t_end = np.maximum(np.minimum(t_avail, t_step_left), 0.0)
        self.end_t = t_end
        self.code = np.where(t_end >= t_step_left - 1e-9, TIME, BUDGET)
        self.tau_th = p.heat_cap / p.h_area
        self.ocv0 = bank.ocv(p, p.q)
        # SEI at the mean temperature over the rest
        grid = np.linspace(0.0, 1.0, REST_GRID + 1)[None, :] * t_end[:, None]
        temp = p.t_chamber[:, None] + (p.temp - p.t_chamber)[:, None] * np.exp(
            -grid / self.tau_th[:, None]
        )
        pc = bank.view(sel, column=True)
        zero = np.zeros_like(grid)
        rates = Rates(pc, (p.q / p.c_neg)[:, None] + zero, temp, zero, zero + 1.0, pc.q_sei)
        dt = (t_end / REST_GRID)[:, None]
        self.d_sei = _cum_integral(rates.sei, dt)[:, -1]

    def sample(self, rows: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, ...]:
        pv = self.bank.view(_sub(self.sel, rows, self.bank.n_slots))
        v = self.ocv0[rows] + pv.h + pv.v1 * np.exp(-tau / pv.tau1) + pv.v2 * np.exp(-tau / pv.tau2)
        temp = pv.t_chamber + (pv.temp - pv.t_chamber) * np.exp(-tau / self.tau_th[rows])
        return v, np.zeros_like(v), temp, np.zeros_like(v)

    @property
    def passed_Ah(self) -> np.ndarray:
        return np.zeros_like(self.end_t)

    def commit(self) -> None:
        bank, sel, p = self.bank, self.sel, self.p
        t = self.end_t
        bank.v1[sel] = p.v1 * np.exp(-t / p.tau1)
        bank.v2[sel] = p.v2 * np.exp(-t / p.tau2)
        bank.temp[sel] = p.t_chamber + (p.temp - p.t_chamber) * np.exp(-t / self.tau_th)
        zero = np.zeros_like(t)
        _apply_ageing(bank, sel, p, p.q, self.d_sei, zero, zero, zero)


class VoltageScanPhase(ConstantVoltagePhase):
    """Linear voltage sweep from ``v_start`` to ``v_end`` at ``rate_V_s``.

    Quasi-static: at each of ``SCAN_SUBSTEPS`` substeps the current is
    (V(t) - OCV(q) - h) / (R0 + R1 + R2) and the charge moves explicitly.
    ``elapsed`` is the time already spent in the step.
    """

    def __init__(
        self,
        bank: CellBank,
        sel: Any,
        v_start: np.ndarray,
        v_end: np.ndarray,
        rate_V_s: np.ndarray,
        elapsed: np.ndarray,
        t_avail: np.ndarray,
        limits: PhaseLimits,
    ) -> None:
        self.bank, self.sel = bank, sel
        p = bank.view(sel)
        self.p = p
        duration = np.abs(v_end - v_start) / rate_V_s
        t_end = np.clip(np.minimum(duration - elapsed, t_avail), 0.0, None)
        direction = np.sign(v_end - v_start)
        q, temp = p.q.copy(), p.temp.copy()
        n = q.size
        ts, qs, cs, temps, vs = [np.zeros(n)], [q.copy()], [], [temp.copy()], []
        d_sei, d_pl, d_lam_n, d_lam_p = (np.zeros(n) for _ in range(4))
        dt = t_end / SCAN_SUBSTEPS
        current = np.zeros(n)
        for j in range(SCAN_SUBSTEPS + 1):
            t = j * dt
            v_now = v_start + direction * rate_V_s * (elapsed + t)
            r0, r1, r2 = bank.resistances(p, q, temp)
            current = (v_now - bank.ocv(p, q) - p.h) / (r0 + r1 + r2)
            cs.append(current.copy())
            vs.append(v_now)
            if j == SCAN_SUBSTEPS:
                break
            phi = bank.anode_potential(p, q, current, r0, current * (r1 + r2))
            rates = Rates(p, q / p.c_neg, temp, current, phi, p.q_sei)
            d_sei += rates.sei * dt
            d_pl += rates.plating * dt
            d_lam_n += rates.lam_neg * dt
            d_lam_p += rates.lam_pos * dt
            heat = current * current * (r0 + r1 + r2)
            t_inf = p.t_chamber + heat / p.h_area
            temp = t_inf + (temp - t_inf) * np.exp(-dt * p.h_area / p.heat_cap)
            q = q + current * dt / 3600.0
            ts.append(t + dt)
            qs.append(q.copy())
            temps.append(temp.copy())
        self.t_traj = np.stack(ts, axis=1)
        self.q_traj = np.stack(qs, axis=1)
        self.i_traj = np.stack(cs, axis=1)
        self.temp_traj = np.stack(temps, axis=1)
        self.v_traj = np.stack(vs, axis=1)
        self.voltage = v_start
        self.end_t = t_end
        code = np.where(elapsed + t_end >= duration - 1e-9, TIME, BUDGET)
        code = np.where(temp > limits.t_hi, SAFETY, code)
        self.code = code
        self.q_end, self.temp_end, self.i_end = q, temp, current
        self.d_sei, self.d_pl, self.d_lam_n, self.d_lam_p = d_sei, d_pl, d_lam_n, d_lam_p

    def sample(self, rows: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, ...]:
        _, i, temp, passed = super().sample(rows, tau)
        tt = self.t_traj[rows]
        w = np.clip(tau / np.maximum(tt[:, -1], 1e-12), 0.0, 1.0)
        vv = self.v_traj[rows]
        return vv[:, 0] + w * (vv[:, -1] - vv[:, 0]), i, temp, passed


def _sub(sel: Any, rows: np.ndarray, n: int) -> np.ndarray:
    """Bank slots of selection rows ``rows``."""
    return np.arange(n)[sel][rows]


def _apply_ageing(
    bank: CellBank,
    sel: Any,
    p: Any,
    q: np.ndarray,
    d_sei: np.ndarray,
    d_pl: np.ndarray,
    d_lam_n: np.ndarray,
    d_lam_p: np.ndarray,
) -> None:
    """Write the aged state: LLI from SEI and plating, lithiated graphite LAM, films."""
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
