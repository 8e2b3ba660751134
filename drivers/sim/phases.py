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
its far end, where cut-offs happen; the voltage cut-off crossing is bracketed on
the grid and refined on the closed form (phase_end.py, decision 0038); safety limits
are checked on the grid; ageing rates are integrated along the grid up to the end
(the parabolic SEI law exactly: (Q + Q0)^2 grows by 2 * integral of its drive).

A phase may chain several steps (decisions 0033, 0037): a step whose end is known
before the solve (a time-limited CC or rest, a CV hold) continues into the following
CC and rest steps, charging or not; each step is one *segment* with its own
coefficients, grid and ageing integral, started from the closed-form end state of
the previous one with that one's whole ageing applied to the cell's fields (SEI,
plating, LAM, film), so a chain is the same as solving its steps one by one (to
float rounding) at the cost of one solve's bookkeeping.

``Phase`` runs the solve compiled (``phase_kernel.solve_phase``, decision 0086);
``NumpyPhase`` below is the same solve in numpy, the readable statement of it and the
oracle the compiled one is tested against. The numpy solver is written for few numpy
calls per phase (decisions 0033, 0039): all
fields of the selected cells come in one gather (``CellBank.data``), the closed
form's constants are packed in one coefficient matrix ``coef`` (NC, n) whose rows
are the ``COLUMNS`` below (rows that do not depend on the start state are filled
for all segments at once), same-shaped quantities share one call (three Arrhenius
factors in one ``exp``, both electrodes in one table lookup, both RC branches), the
CV linearisation runs only on the CV channels, constant-current segments skip the
exponential-current terms and non-charging ones the plating and cracking terms.
Records are not produced here: the executor evaluates any number of record times
later in one batch with :func:`trajectory` on ``coef``.

End codes per slot: ``BUDGET`` (time budget used up, the step continues), ``TIME``
(step time limit), ``CUTOFF`` (voltage or current cut-off), ``SAFETY``, ``RANGE``
(a CC step ran out of electrode before its voltage cut-off; the executor stops the
channel with that reason).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voltloop.drivers.sim import phase_end
from voltloop.drivers.sim.cell_model import ROW, CellBank
from voltloop.drivers.sim.chemistry import GAS_CONSTANT, KELVIN, OcpTable
from voltloop.drivers.sim.cv_hold import linearise_cv
from voltloop.drivers.sim.degradation import ageing_rates, apply_ageing, sei_growth
from voltloop.drivers.sim.phase_end import (
    first_crossing,
    flat,
    refine_cutoff,
    regula_falsi,
    safety_time,
)

BUDGET, TIME, CUTOFF, SAFETY, RANGE = 0, 1, 2, 3, 4
GRID = 10
_G = 1.0 - (1.0 - np.linspace(0.0, 1.0, GRID + 1)) ** 2  # grid fractions, dense at the end
_HALF_DG = 0.5 * np.diff(_G)
_J = np.arange(GRID)  # grid intervals
_INV_R = 1.0 / GAS_CONSTANT

#: Rows of the coefficient matrix (closed-form trajectory of one phase). The first
#: five are the (negative) exponents of the decaying terms, evaluated in one exp.
COLUMNS = (
    "neg_a", "neg_inv_tau_th", "neg_inv_tau1", "neg_inv_tau2", "neg_hr",
    "i0", "inv_a", "is_lin", "q0", "kq", "t_inf", "dtemp", "a1", "a2", "ht", "dh",
    "y0", "inv_cpos", "inv_cneg", "off_p", "off_n", "inv_tref",
    "r0", "r1", "r2", "tau1", "tau2", "r0_ea", "r1_ea", "r2_ea", "r_film", "cv", "v_set",
)  # fmt: skip
C = {name: i for i, name in enumerate(COLUMNS)}
NC = len(COLUMNS)
_EXPO = slice(0, 5)
_OFFS = slice(C["off_p"], C["off_n"] + 1)
_INV2 = slice(C["inv_cpos"], C["inv_cneg"] + 1)
_RB_EA = slice(C["r0"], C["r2_ea"] + 1)  # mirrors CellBank rows r0 .. r2_ea
_EA = slice(C["r0_ea"], C["r2_ea"] + 1)
_RB = slice(C["r0"], C["r2"] + 1)
_A12 = slice(C["a1"], C["a2"] + 1)
assert C["a2"] == C["a1"] + 1

# rows of CellBank.data used here
_Q, _TEMP, _H, _V1, _V2 = ROW["q"], ROW["temp"], ROW["h"], ROW["v1"], ROW["v2"]
_NLI, _CPOS, _CNEG, _NOM, _OFF = (
    ROW["n_li"],
    ROW["c_pos"],
    ROW["c_neg"],
    ROW["nominal_Ah"],
    ROW["chem_off"],
)
_D_EA = slice(ROW["r0_ea"], ROW["r2_ea"] + 1)
_D_RB_EA = slice(ROW["r0"], ROW["r2_ea"] + 1)
_D_CAPS = [ROW["c_pos"], ROW["c_neg"]]
_D_TAUS = slice(ROW["neg_inv_tau_th"], ROW["neg_inv_tau2"] + 1)
assert ROW["r2_ea"] - ROW["r0"] == C["r2_ea"] - C["r0"] == 7
assert ROW["neg_inv_tau2"] - ROW["neg_inv_tau_th"] == 2
_D_RB = slice(ROW["r0"], ROW["r2"] + 1)
_THROUGHPUT, _SHARE, _FILM = ROW["throughput"], ROW["anode_share"], ROW["r_film"]
#: Coefficient rows that are per-cell constants (filled once per phase) and their fields.
_CONST_ROWS = [1, 2, 3, C["off_p"], C["off_n"], C["inv_tref"], *range(C["r0"], C["r2_ea"] + 1)]
_D_CONST_ROWS = [*range(ROW["neg_inv_tau_th"], ROW["neg_inv_tau2"] + 1), ROW["chem_off"],
                 ROW["off_n"], ROW["inv_tref"], *range(ROW["r0"], ROW["r2_ea"] + 1)]  # fmt: skip
#: The rows -a, 1/a and "linear charge" of a constant-current segment (a = 0).
_LIN_ROWS = [0, C["inv_a"], C["is_lin"]]
_LIN_VALUES = np.array([[-0.0], [0.0], [1.0]])
#: Fields that ageing changes (degradation.apply_ageing, plus the charge throughput).
AGED_ROWS = [
    ROW[name]
    for name in (
        "c_pos", "n_li", "c_neg", "q_sei", "q_pl", "r_film", "throughput", "lam_neg", "lam_pos",
    )
]  # fmt: skip
assert ROW["r2_ea"] - ROW["r0_ea"] == 2 and ROW["r2"] - ROW["r0"] == 2


#: The SOC factor's two exponentials with their weights folded into the exponents:
#: 0.8 exp(-x/0.08) = exp(-x/0.08 + ln 0.8), 0.3 exp(-(1-x)/0.06) = exp(x/0.06 - 1/0.06
#: + ln 0.3); shape (2, 1) to broadcast against x of shape (m,).
_SOC_K = np.array([[-1.0 / 0.08], [1.0 / 0.06]])
_SOC_B = np.array([[np.log(0.8)], [np.log(0.3) - 1.0 / 0.06]])


def _soc_factor(x: np.ndarray) -> np.ndarray:
    """Charge-transfer/diffusion SOC factor 1 + 0.8 exp(-x/0.08) + 0.3 exp(-(1-x)/0.06)
    at graphite lithiation ``x`` (any shape; both exponentials in one call)."""
    k, b = _SOC_K, _SOC_B
    if x.ndim != 1:
        k, b = k.reshape((2,) + (1,) * x.ndim), b.reshape((2,) + (1,) * x.ndim)
    e = np.exp(x * k + b)
    soc = e[0] + e[1]
    soc += 1.0
    return soc


def trajectory(
    tables: OcpTable, c: np.ndarray, tau: np.ndarray, constant: bool = False
) -> tuple[np.ndarray, ...]:
    """Closed-form state at phase times ``tau``.

    ``c`` is a coefficient matrix (NC, m) with ``tau`` shape (m,), or (NC, m, 1) with
    ``tau`` (m, K). Returns (V, I, T, q, v1, v2, h, R0, U_n, x, inv_t) with the shape
    of ``tau``: terminal voltage of the circuit (CV records report the set voltage
    instead), current (A, + charge), temperature (degC), graphite charge (Ah), RC
    voltages, hysteresis, ohmic resistance, graphite potential, graphite lithiation
    (unclipped) and the Arrhenius variable (1/T - 1/T_ref)/R. ``constant=True`` says
    that every column has a constant current (a = 0): the current is then returned
    with the shape of ``c``'s rows, unbroadcast.
    """
    e = np.exp(c[_EXPO] * tau)
    if constant:
        current = c[C["i0"]]
        q = c[C["q0"]] + c[C["kq"]] * tau
    else:
        ea = e[0]
        current = c[C["i0"]] * ea
        g = (1.0 - ea) * c[C["inv_a"]]
        g += c[C["is_lin"]] * tau
        q = c[C["q0"]] + c[C["kq"]] * g
    temp = c[C["t_inf"]] + c[C["dtemp"]] * e[1]
    s = q * c[_INV2]  # (2, ...): q/C_p, q/C_n
    np.subtract(c[C["y0"]], s[0], out=s[0])  # cathode lithiation (n_Li - q)/C_p
    u, sc = tables.lookup(s, c[_OFFS])
    soc = _soc_factor(sc[1])
    inv_t = 1.0 / (temp + KELVIN)
    inv_t -= c[C["inv_tref"]]
    inv_t *= _INV_R
    r = c[_RB] * np.exp(c[_EA] * inv_t)
    r0 = r[0] + c[C["r_film"]]
    rc = r[1:] * soc  # both RC branches at once: I R_k soc + a_k e_k
    rc *= current
    rc += c[_A12] * e[2:4]
    v1, v2 = rc
    h = c[C["ht"]] + c[C["dh"]] * e[4]
    v = u[0] - u[1] + h + current * r0 + v1 + v2
    return v, current, temp, q, v1, v2, h, r0, u[1], s[1], inv_t


def point_resistances(d: np.ndarray, q: np.ndarray, temp: np.ndarray) -> np.ndarray:
    """(R0, R1, R2) in ohm, shape (3, m), at charge ``q`` and temperature ``temp``
    for the cells whose fields are ``d`` (NF, m) (cell_model.CellBank.resistances)."""
    x = np.minimum(np.maximum(q / d[_CNEG], 0.0), 1.0)
    inv_t = _INV_R * (1.0 / (temp + KELVIN) - d[ROW["inv_tref"]])
    r = d[_D_RB] * np.exp(d[_D_EA] * inv_t)
    r[0] += d[ROW["r_film"]]
    r[1:] *= _soc_factor(x)
    return r


class NumpyPhase:
    """A chain of consecutive steps for slots ``sel``, solved at once (decisions 0033,
    0037): each step is a segment that starts from the end state of the one before
    with that one's ageing applied, so a chain is the same as step-by-step solves.

    Per-segment inputs have shape (S, n): segment s of a slot is the s-th step of its
    chain (``valid[s]`` False where the chain is shorter): ``cv`` (bool, constant
    voltage; segment 0 only), ``i_set`` (A, CC current, 0 for rest), ``v_set`` (V),
    ``v_cut`` (V, NaN = none), ``i_cut`` (A, NaN = none; segment 0 only), ``t_left``
    (s, step time left). ``t_avail`` (n,) is the time budget of every segment (counted
    from its own start); ``limits`` are ``v_lo``, ``v_hi``, ``t_hi`` (n,). A segment
    continues into the next one only if it ends by its own time limit or CV current
    cut-off inside its budget; a voltage cut-off or a safety limit ends the whole phase.

    After construction: ``end_t`` (n,) time used, ``code`` (n,) how the ending
    segment ended, ``seg_end`` (n,) its index, ``seg_t`` (S, n) time spent in each
    segment, ``seg_done`` (S, n) segments whose step finished, ``coefs`` (S, NC, n),
    ``passed`` (S, n) charge per segment (Ah, + charging), ``v_end``;
    :meth:`commit` writes the end state and the ageing to the bank.
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
        valid: np.ndarray | None = None,
    ) -> None:
        self.bank, self.sel = bank, sel
        self.d = bank.data[:, sel]
        self._solve(cv, i_set, v_set, v_cut, i_cut, t_avail, t_left, limits, valid)
        rows = np.arange(cv.shape[1])
        self._t_end = self.seg_t[self.seg_end, rows]  # time into the ending segment
        self._c_end = self.coefs[self.seg_end, :, rows].T  # its coefficients (NC, n)

    def _solve(
        self,
        cv: np.ndarray,
        i_set: np.ndarray,
        v_set: np.ndarray,
        v_cut: np.ndarray,
        i_cut: np.ndarray,
        t_avail: np.ndarray,
        t_left: np.ndarray,
        limits: tuple[np.ndarray, np.ndarray, np.ndarray],
        valid: np.ndarray | None,
    ) -> None:
        """The solve with numpy: sets every attribute the class docstring lists."""
        tables = self.bank.tables
        d = self.d
        n_seg, n = cv.shape
        coefs = np.empty((n_seg, NC, n))
        t_max = np.zeros((n_seg, n))
        codes = np.zeros((n_seg, n), dtype=np.int64)
        active = np.zeros((n_seg, n), dtype=bool)
        tau = np.empty((n_seg, n, GRID + 1))
        grid = np.empty((2, n_seg, n, GRID + 1))  # voltage and temperature on the grid
        inc = np.empty((5, n_seg, n, GRID))
        aged = np.empty((n_seg, len(AGED_ROWS), n))
        coefs[:, _CONST_ROWS] = d[_D_CONST_ROWS]  # rows that no step changes
        coefs[:, C["cv"]] = cv
        coefs[:, C["v_set"]] = v_set
        # rows set by the current alone, for every segment at once (a CV segment's
        # current comes from its start state: _segment rewrites them there)
        coefs[:, C["i0"]] = i_set
        np.multiply(d[ROW["hyst_rate"]], -np.abs(i_set), out=coefs[:, 4])
        np.divide(i_set, 3600.0, out=coefs[:, C["kq"]])
        np.multiply(d[ROW["hyst_m"]], np.sign(i_set), out=coefs[:, C["ht"]])
        coefs[:, _LIN_ROWS] = _LIN_VALUES
        t_lims = np.minimum(t_avail, t_left)
        cv_any = cv.sum(axis=1).tolist()
        act = np.ones(n, dtype=bool)
        ds = d  # the cells' fields at the start of segment s
        state = d[_Q], d[_TEMP], d[_H], d[_V1], d[_V2]
        used = n_seg
        for s in range(n_seg):
            aged[s] = ds[AGED_ROWS]
            t_seg, code = _segment(tables, ds, state, coefs[s], cv[s], i_set[s], v_set[s],
                                   i_cut[s], t_lims[s], t_left[s], cv_any[s] > 0)  # fmt: skip
            active[s] = act
            codes[s] = code
            if s:
                t_seg = np.where(act, t_seg, 0.0)
            t_max[s] = t_seg
            # the segment's grid: voltage and temperature for the cut-off and safety
            # searches, and the ageing integral of every grid interval
            np.multiply(t_seg[:, None], _G, out=tau[s])
            # coefficients copied across the grid: same-shape operands are ~2x cheaper
            # per numpy call than broadcasting (NC, n, 1) against (n, K+1)
            c = np.repeat(coefs[s][:, :, None], GRID + 1, axis=2)
            constant = not cv_any[s]
            v, current, temp, q, v1, v2, h, r0, u_n, x, inv_t = trajectory(
                tables, c, tau[s], constant
            )
            grid[0, s], grid[1, s] = v, temp
            col = ds[:, :, None]
            phi = u_n - col[_SHARE] * (v1 + v2) - 0.5 * current * (r0 + col[_FILM])
            rates = ageing_rates(ds, col, coefs[s, C["i0"]], -coefs[s, 0], tau[s], e_a=current,
                                 phi=phi, x=x, inv_t=inv_t, decaying=not constant)  # fmt: skip
            inc_s = np.add(rates[..., 1:], rates[..., :-1], out=inc[:, s])
            inc_s *= t_seg[:, None] * _HALF_DG
            if s + 1 == n_seg:
                break
            act = act & valid[s + 1] & ((code == TIME) | (code == CUTOFF))
            if not np.count_nonzero(act):
                used = s + 1
                break
            # the next step starts where a separate solve would: from this segment's
            # end state with its whole ageing applied to the cell (decision 0037)
            q_end = q[:, -1]
            ds = ds.copy()
            ds[_THROUGHPUT] += np.abs(q_end - coefs[s, C["q0"]])
            apply_ageing(ds, q_end, *sei_growth(ds, inc_s.sum(axis=-1)))
            state = ds[_Q], temp[:, -1], h[:, -1], v1[:, -1], v2[:, -1]
        if used < n_seg:
            coefs, t_max, codes, active = coefs[:used], t_max[:used], codes[:used], active[:used]
            tau, grid, inc, aged = tau[:used], grid[:, :used], inc[:, :used], aged[:used]
            cv, v_cut = cv[:used], v_cut[:used]
        self.coefs = coefs
        v, temp = grid
        offset = np.cumsum(t_max, axis=0) - t_max  # segment start within the phase (S, n)
        total = offset[-1] + t_max[-1]
        # --- where the phase ends (global time along the segments) --------------------
        rows = np.arange(n)
        seg_end = active.sum(axis=0) - 1
        code = codes[seg_end, rows]
        end_t = total
        k_cut = np.full(n, used * (GRID + 1))  # flat grid index of the cut-off
        has_cut = ~np.isnan(v_cut) & ~cv & active
        if np.count_nonzero(has_cut):
            i0 = coefs[:, C["i0"]]
            direction = np.where(has_cut, np.where(i0 > 0, 1.0, -1.0), 0.0)
            excess = direction[:, :, None] * (v - np.where(has_cut, v_cut, 0.0)[:, :, None])
            excess[~has_cut] = -1.0
            flat_excess = flat(excess)
            found, k = first_crossing(flat_excess)
            if np.count_nonzero(found):
                tg = flat(offset[:, :, None] + tau)
                t_cut = regula_falsi(tg, flat_excess, k)
                if phase_end.CUTOFF_REFINE:
                    t_cut = refine_cutoff(
                        lambda c, t: trajectory(tables, c, t)[0],
                        coefs, tau, flat_excess, direction, v_cut, found, k, offset, t_cut,
                    )  # fmt: skip
                end_t = np.where(found, np.minimum(t_cut, end_t), end_t)
                code = np.where(found, CUTOFF, code)
                seg_end = np.where(found, k // (GRID + 1), seg_end)
                k_cut = np.where(found, k, k_cut)
        v_lo, v_hi, t_hi = limits
        checked = active[:, :, None]
        bad = ((v >= v_hi[:, None]) | (v <= v_lo[:, None])) & (checked & ~cv[:, :, None])
        bad = flat(bad)
        bad &= k_cut[:, None] > np.arange(used * (GRID + 1))
        bad |= flat((temp >= t_hi[:, None]) & checked)
        if np.count_nonzero(bad):
            tg = flat(offset[:, :, None] + tau)
            t_safe, k_safe = safety_time(tg, v, temp, cv, active, k_cut, limits)
            tripped = t_safe <= end_t
            end_t = np.where(tripped, t_safe, end_t)
            code = np.where(tripped, SAFETY, code)
            seg_end = np.where(tripped, k_safe // (GRID + 1), seg_end)
        self.end_t, self.code, self.seg_end = end_t, code, seg_end
        seg_t = np.minimum(np.maximum(end_t - offset, 0.0), t_max)
        seg_t[np.arange(used)[:, None] > seg_end] = 0.0
        self.seg_t = seg_t
        finished = (code == TIME) | (code == CUTOFF)
        self.seg_done = (np.arange(used)[:, None] < seg_end) | (
            (np.arange(used)[:, None] == seg_end) & finished
        )
        self.t_max, self.age_inc, self.aged = t_max, inc, aged
        # --- ageing: the earlier segments' is in ``aged``, the ending one's up to end_t --
        t_end = seg_t[seg_end, rows]
        if used == 1:
            self.aged_end, d_end, inc_end = aged[0], d, inc[:, 0]
        else:
            self.aged_end = aged[seg_end, :, rows].T
            d_end = d.copy()
            d_end[AGED_ROWS] = self.aged_end
            inc_end = inc[:, seg_end, rows]
        t_max_end = t_max[seg_end, rows]
        self.ageing = sei_growth(d_end, segment_ageing(inc_end, t_max_end, t_end))
        # --- end state -----------------------------------------------------------------
        self.end = _end_state(coefs[seg_end, :, rows].T, t_end)
        g = (1.0 - np.exp(coefs[:, 0] * seg_t)) * coefs[:, C["inv_a"]]
        g += coefs[:, C["is_lin"]] * seg_t
        self.passed = coefs[:, C["kq"]] * g  # (S, n)

    @property
    def passed_Ah(self) -> np.ndarray:
        """Charge passed during the phase (Ah, + charging), shape (n,)."""
        return self.passed.sum(axis=0)

    @property
    def coef(self) -> np.ndarray:
        """Coefficients of the ending segment (NC, n)."""
        return self._c_end

    @property
    def v_end(self) -> np.ndarray:
        """Voltage at the end of the phase (V; the set voltage for CV)."""
        c = self._c_end
        v = trajectory(self.bank.tables, c, self._t_end)[0]
        return np.where(c[C["cv"]] > 0, c[C["v_set"]], v)

    def commit(self) -> None:
        """Move the cells to the phase's end state and apply the integrated ageing."""
        d = self.d
        if self.coefs.shape[0] > 1:
            d[AGED_ROWS] = self.aged_end
        q, temp, v1, v2, h = self.end
        d[_V1], d[_V2], d[_H], d[_TEMP] = v1, v2, h, temp
        d[_THROUGHPUT] += np.abs(self.passed[self.seg_end, np.arange(q.size)])
        apply_ageing(d, q, *self.ageing)
        self.bank.data[:, self.sel] = d


class Phase(NumpyPhase):
    """:class:`NumpyPhase` solved by the compiled kernel (``phase_kernel.solve_phase``,
    decision 0086): the same attributes, equal to float rounding, at a fraction of the
    cost (the numpy solve is ~250 whole-array calls per segment)."""

    def _solve(self, *inputs: Any) -> None:
        from voltloop.drivers.sim.phase_kernel import solve_phase  # numba: imported late

        solved = solve_phase(*kernel_arguments(self.d, *inputs, self.bank.tables))
        (self.coefs, self.t_max, _active, self.seg_t, self.seg_done, self.end_t, self.code,
         self.seg_end, self.age_inc, self.aged, self.aged_end, self.ageing, self.end,
         self.passed) = solved  # fmt: skip


def kernel_arguments(
    d: np.ndarray,
    cv: np.ndarray,
    i_set: np.ndarray,
    v_set: np.ndarray,
    v_cut: np.ndarray,
    i_cut: np.ndarray,
    t_avail: np.ndarray,
    t_left: np.ndarray,
    limits: tuple[np.ndarray, np.ndarray, np.ndarray],
    valid: np.ndarray | None,
    tables: OcpTable,
) -> tuple[np.ndarray, ...]:
    """:class:`Phase`'s inputs as ``phase_kernel.solve_phase`` takes them: C-contiguous
    float64 and bool arrays always, so the kernel has one signature (another would
    compile it again, ~15 s), ``t_avail`` (n,) and ``valid`` (S, n) spelled out."""
    f64, c64 = np.float64, np.ascontiguousarray
    n_seg, n = cv.shape
    return (
        c64(d, dtype=f64), c64(cv, dtype=np.bool_), c64(i_set, dtype=f64),
        c64(v_set, dtype=f64), c64(v_cut, dtype=f64), c64(i_cut, dtype=f64),
        c64(np.broadcast_to(t_avail, (n,)), dtype=f64), c64(t_left, dtype=f64),
        c64(limits[0], dtype=f64), c64(limits[1], dtype=f64), c64(limits[2], dtype=f64),
        np.ones((n_seg, n), dtype=np.bool_) if valid is None else c64(valid, dtype=np.bool_),
        tables.table, tables.diff,
    )  # fmt: skip


def segment_ageing(inc: np.ndarray, t_max: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Ageing integrals (5, n) up to ``t`` (n,) s into a segment lasting ``t_max`` (n,),
    from its per-interval trapezoid integrals ``inc`` (5, n, K): interval j counts with
    weight clip(kf - j, 0, 1), kf the fractional grid index of ``t``."""
    frac = np.minimum(np.maximum(t / np.where(t_max > 0.0, t_max, 1.0), 0.0), 1.0)
    kf = GRID * (1.0 - np.sqrt(1.0 - frac))  # inverse of the grid spacing
    w = kf[:, None] - _J
    np.minimum(w, 1.0, out=w)
    np.maximum(w, 0.0, out=w)
    return np.einsum("pnk,nk->pn", inc, w)  # 2-3x cheaper than (inc * w).sum


def _segment(
    tables: OcpTable,
    d: np.ndarray,
    state: tuple[np.ndarray, ...],
    c: np.ndarray,
    cv: np.ndarray,
    i_set: np.ndarray,
    v_set: np.ndarray,
    i_cut: np.ndarray,
    t_lim: np.ndarray,
    t_left: np.ndarray,
    any_cv: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the coefficient matrix ``c`` (NC, n) of one step starting from ``state``
    (q, T, h, v1, v2) of the cells with fields ``d``; returns (duration, end code)
    where the duration is bounded by ``t_lim`` (the budget or the step's time left
    ``t_left``), the electrode range and (CV) the current cut-off. The rows that do not
    change within a phase (``_CONST_ROWS``, ``cv``, ``v_set``) and those of a constant
    current (``i0``, ``neg_hr``, ``kq``, ``ht``, ``_LIN_ROWS``) are filled by the caller."""
    q0, temp0, h0, v10, v20 = state
    nominal = d[_NOM]
    rs = point_resistances(d, q0, temp0)
    r_eff = rs[0] + rs[1]
    r_eff += rs[2]
    if any_cv:
        n = cv.shape[0]
        i0 = i_set.copy()
        a = np.zeros(n)
        t_cv = np.full(n, np.inf)
        ci = cv.nonzero()[0]
        i0[ci], a[ci], t_cv[ci] = linearise_cv(
            tables, d[:, ci], q0[ci], h0[ci], v_set[ci], i_cut[ci], t_lim[ci], r_eff[ci]
        )
        moving = ~cv & (i0 != 0.0)
    else:  # CC and rest: constant current
        i0 = i_set
        moving = i0 != 0.0
    abs_i = np.abs(i0)
    span = np.where(i0 > 0, np.minimum(d[_NLI], d[_CNEG]) - q0, q0)
    span += 0.02 * nominal
    span *= 3600.0
    t_range = np.divide(span, abs_i, out=np.full(span.shape, np.inf), where=moving)
    t_max = np.minimum(t_lim, t_range)
    if any_cv:
        np.minimum(t_max, t_cv, out=t_max)
    np.maximum(t_max, 1e-6, out=t_max)
    # heat: Joule at the mean current + entropic + hysteresis dissipation
    if any_cv:
        i_mean = i0.copy()
        at = a[ci] * t_max[ci]
        i_mean[ci] = np.where(
            at < 1e-9, i0[ci], i0[ci] * (1.0 - np.exp(-at)) / np.maximum(at, 1e-12)
        )
        abs_mean = np.abs(i_mean)
    else:
        i_mean, abs_mean = i0, abs_i
    soc = np.minimum(np.maximum(q0 / nominal, 0.0), 1.0)
    entropic = d[ROW["ds0"]] + (d[ROW["ds1"]] - d[ROW["ds0"]]) * soc
    heat = i_mean * i_mean * r_eff
    heat += i_mean * (temp0 + 273.15) * entropic
    heat += abs_mean * d[ROW["heat_per_A"]]
    t_inf = d[ROW["t_chamber"]] + heat / d[ROW["h_area"]]
    if any_cv:
        np.multiply(d[ROW["hyst_m"]], np.sign(i0), out=c[C["ht"]])
        np.multiply(d[ROW["hyst_rate"]], -abs_i, out=c[4])
        c[C["i0"]] = i0
        c[0] = -a
        np.divide(1.0, a, out=c[C["inv_a"]], where=a > 0.0)
        lin = a <= 0.0
        c[C["inv_a"]][lin] = 0.0
        c[C["is_lin"]] = lin
        np.divide(i0, 3600.0, out=c[C["kq"]])
        transient = 1.0 - cv
    c[C["q0"]] = q0
    c[C["t_inf"]] = t_inf
    np.subtract(temp0, t_inf, out=c[C["dtemp"]])
    np.subtract(v10, i0 * rs[1], out=c[C["a1"]])
    np.subtract(v20, i0 * rs[2], out=c[C["a2"]])
    if any_cv:
        c[C["a1"]] *= transient
        c[C["a2"]] *= transient
    np.subtract(h0, c[C["ht"]], out=c[C["dh"]])
    np.divide(1.0, d[_D_CAPS], out=c[_INV2])
    np.multiply(d[_NLI], c[C["inv_cpos"]], out=c[C["y0"]])
    c[C["r_film"]] = d[ROW["r_film"]]
    # a CC step that runs out of electrode (2 % of nominal past the end of the graphite
    # or cathode range) before its voltage cut-off ends there (RANGE)
    code = np.where(t_max >= t_left, TIME, np.where(t_range < t_lim, RANGE, BUDGET))
    if any_cv:
        code = np.where(cv & (t_cv <= t_lim), CUTOFF, code)
    return t_max, code


def _end_state(c: np.ndarray, t: np.ndarray, resistances: bool = False) -> tuple:
    """(q, T, v1, v2, h) at phase times ``t`` (n,) from the coefficients ``c`` (NC, n)
    (the part of :func:`trajectory` that the cell state needs, without the OCV); with
    ``resistances`` also (R0, R1, R2) there, shape (3, n)."""
    e = np.exp(c[_EXPO] * t)
    current = c[C["i0"]] * e[0]
    q = c[C["q0"]] + c[C["kq"]] * ((1.0 - e[0]) * c[C["inv_a"]] + c[C["is_lin"]] * t)
    temp = c[C["t_inf"]] + c[C["dtemp"]] * e[1]
    soc = _soc_factor(np.minimum(np.maximum(q * c[C["inv_cneg"]], 0.0), 1.0))
    inv_t = _INV_R * (1.0 / (temp + KELVIN) - c[C["inv_tref"]])
    r = c[_RB] * np.exp(c[_EA] * inv_t)
    r[0] += c[C["r_film"]]
    r[1:] *= soc
    v1 = current * r[1] + c[C["a1"]] * e[2]
    v2 = current * r[2] + c[C["a2"]] * e[3]
    h = c[C["ht"]] + c[C["dh"]] * e[4]
    if resistances:
        return q, temp, v1, v2, h, r
    return q, temp, v1, v2, h


end_state = _end_state
