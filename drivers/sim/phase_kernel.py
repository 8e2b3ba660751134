"""The phase solve of phases.py, compiled: every channel's chain in one loop (decision 0086).

:func:`solve_phase` does what ``phases.Phase.__init__`` does with numpy — segment
coefficients (``_segment``, ``cv_hold.linearise_cv``), the grid of every segment
(``trajectory``), the ageing integrals along it (``degradation.ageing_rates``), the
chained segments' ageing (``sei_growth``, ``apply_ageing``), the voltage cut-off
search and refinement (``phase_end``), the safety limits, and the end state — as
scalar code, channel by channel, in the same order of operations. The numpy solve
costs ~250 whole-array calls per segment whatever the number of channels; this costs
the arithmetic. Results agree with the numpy solve to float rounding (the C library's
``exp`` against numpy's vectorised one, and the order of two sums).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from voltloop.drivers.sim.cell_model import ROW
from voltloop.drivers.sim.chemistry import GAS_CONSTANT, KELVIN
from voltloop.drivers.sim.closed_form import K64, electrode, state_at
from voltloop.drivers.sim.phase_end import CUTOFF_REFINE
from voltloop.drivers.sim.phases import AGED_ROWS, BUDGET, CUTOFF, GRID, NC, RANGE, SAFETY, TIME, C

_G = 1.0 - (1.0 - np.linspace(0.0, 1.0, GRID + 1)) ** 2  # phases._G
_HALF_DG = 0.5 * np.diff(_G)
_K1 = GRID + 1
_INV_R = 1.0 / GAS_CONSTANT
_AGED = np.array(AGED_ROWS, dtype=np.intp)
_N_AGED = len(AGED_ROWS)
_CV_SCAN = 48  # cv_hold.CV_SCAN
_SCAN_FRACTIONS = np.linspace(0.0, 1.0, _CV_SCAN + 1)[1:]

# cell fields (cell_model.ROW)
_Q, _TEMP, _H, _V1, _V2 = ROW["q"], ROW["temp"], ROW["h"], ROW["v1"], ROW["v2"]
_NLI, _CPOS, _CNEG, _NOM = ROW["n_li"], ROW["c_pos"], ROW["c_neg"], ROW["nominal_Ah"]
_CHEM_OFF, _OFF_N, _INV_TREF = ROW["chem_off"], ROW["off_n"], ROW["inv_tref"]
_D_R0, _D_R1, _D_R2 = ROW["r0"], ROW["r1"], ROW["r2"]
_D_R0_EA, _D_R1_EA, _D_R2_EA = ROW["r0_ea"], ROW["r1_ea"], ROW["r2_ea"]
_D_TTH, _D_T1, _D_T2 = ROW["neg_inv_tau_th"], ROW["neg_inv_tau1"], ROW["neg_inv_tau2"]
_THROUGHPUT, _SHARE, _FILM = ROW["throughput"], ROW["anode_share"], ROW["r_film"]
_HYST_RATE, _HYST_M = ROW["hyst_rate"], ROW["hyst_m"]
_DS0, _DS1, _HEAT_A, _T_CH, _H_AREA = (
    ROW["ds0"], ROW["ds1"], ROW["heat_per_A"], ROW["t_chamber"], ROW["h_area"],
)  # fmt: skip
_NEG_SEI_EA, _NEG_LAM_EA, _LAM_EXP = ROW["neg_sei_ea"], ROW["neg_lam_ea"], ROW["lam_exp"]
_SEI_SOC, _SEI_K, _CRACK_SEI = ROW["sei_soc_gain"], ROW["sei_k"], ROW["crack_sei"]
_PL_TH, _PL_PHI0, _PL_K = ROW["pl_threshold"], ROW["pl_phi0"], ROW["pl_k"]
_LAM_K, _LAM_PL, _LAM_P_K = ROW["lam_k"], ROW["lam_pl"], ROW["lam_p_k"]
_Q_SEI, _SEI_Q0, _PL_DEAD, _Q_PL = ROW["q_sei"], ROW["sei_q0"], ROW["pl_dead"], ROW["q_pl"]
_LAM_NEG, _LAM_POS, _FILM_SEI, _FILM_PL = (
    ROW["lam_neg"], ROW["lam_pos"], ROW["film_sei"], ROW["film_pl"],
)  # fmt: skip

# coefficient rows (phases.COLUMNS)
_NEG_A, _NEG_HR = 0, 4  # the decay exponents of the current and the hysteresis
_I0, _INV_A, _IS_LIN, _Q0, _KQ = C["i0"], C["inv_a"], C["is_lin"], C["q0"], C["kq"]
_T_INF, _DTEMP, _A1, _A2, _HT, _DH = (
    C["t_inf"], C["dtemp"], C["a1"], C["a2"], C["ht"], C["dh"],
)  # fmt: skip
_Y0, _INV_CPOS, _INV_CNEG, _OFF_P, _C_OFF_N = (
    C["y0"], C["inv_cpos"], C["inv_cneg"], C["off_p"], C["off_n"],
)  # fmt: skip
_C_INV_TREF, _C_R_FILM, _CV, _V_SET = C["inv_tref"], C["r_film"], C["cv"], C["v_set"]
_C_R0 = C["r0"]  # r0 .. r2_ea follow (phases._RB_EA, as CellBank's rows)
_D_CONST = np.array(
    [_D_TTH, _D_T1, _D_T2, _CHEM_OFF, _OFF_N, _INV_TREF, *range(_D_R0, ROW["r2_ea"] + 1)],
    dtype=np.intp,
)
_C_CONST = np.array(
    [1, 2, 3, _OFF_P, _C_OFF_N, _C_INV_TREF, *range(_C_R0, C["r2_ea"] + 1)], dtype=np.intp
)
_SOC_K0, _SOC_B0 = -1.0 / 0.08, np.log(0.8)
_SOC_K1, _SOC_B1 = 1.0 / 0.06, np.log(0.3) - 1.0 / 0.06


@njit(cache=True, inline="always", error_model="numpy")
def _soc_factor(x):  # noqa: ANN001, ANN202 - compiled
    soc = np.exp(x * _SOC_K0 + _SOC_B0) + np.exp(x * _SOC_K1 + _SOC_B1)
    soc += 1.0
    return soc


@njit(cache=True, inline="always", error_model="numpy")
def _sum10(a):  # noqa: ANN001, ANN202 - compiled
    """numpy's pairwise sum of 10 contiguous values, in its order."""
    return (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))) + a[8] + a[9]


@njit(cache=True, error_model="numpy")
def _ocv(d, q, table, diff):  # noqa: ANN001, ANN202 - compiled
    """cv_hold.ocv_of: OCV (V) at graphite charge ``q`` of the cell with fields ``d``."""
    inv_p, inv_n = 1.0 / d[_CPOS], 1.0 / d[_CNEG]
    y0 = d[_NLI] * inv_p
    u_p, _ = electrode(y0 - q * inv_p, d[_CHEM_OFF], table, diff, K64)
    u_n, _ = electrode(q * inv_n, d[_OFF_N], table, diff, K64)
    return u_p - u_n


@njit(cache=True, inline="always", error_model="numpy")
def _secant_root(lo, hi, f_lo, f_hi):  # noqa: ANN001, ANN202 - compiled
    denom = f_hi - f_lo if abs(f_hi - f_lo) > 1e-12 else 1.0
    return lo - f_lo * (hi - lo) / denom


@njit(cache=True, error_model="numpy")
def _linearise_cv(d, q0, h, v_set, i_cut, t_lim, r_eff, table, diff):  # noqa: ANN001, ANN202, PLR0913
    """cv_hold.linearise_cv for one cell: (I0, a, t_cv)."""
    nominal = d[_NOM]
    ocv0 = _ocv(d, q0, table, diff)
    i_cv = (v_set - ocv0 - h) / r_eff
    sgn = 1.0 if i_cv >= 0.0 else -1.0
    has_cut = not np.isnan(i_cut)
    cut = i_cut if has_cut else 1.0
    ratio = max(abs(i_cv) / cut, 1.0)
    step = sgn * 2e-3 * nominal
    hi = (min(d[_NLI], d[_CNEG]) if sgn > 0 else 0.0) + sgn * 0.02 * nominal
    slope = max(abs(_ocv(d, q0 + step, table, diff) - ocv0) / abs(step), 1e-3)
    if has_cut:
        target = v_set - h - sgn * cut * r_eff
        # the scan: q0 (column 0), then towards the end of the electrode range; the
        # first point at or past the target brackets it with the one before (k >= 1;
        # none: the first interval, as numpy's argmax of all False gives)
        lo, f_lo = q0, sgn * (ocv0 - target)
        q_m = (hi - q0) * _SCAN_FRACTIONS[0]
        q_m += q0
        hi_q, f_hi = q_m, sgn * (_ocv(d, q_m, table, diff) - target)
        if f_lo < 0.0 and f_hi < 0.0:
            q_prev, f_prev = hi_q, f_hi
            for m in range(2, _CV_SCAN + 1):
                q_m = (hi - q0) * _SCAN_FRACTIONS[m - 1]
                q_m += q0
                f_m = sgn * (_ocv(d, q_m, table, diff) - target)
                if f_m >= 0.0:
                    lo, f_lo, hi_q, f_hi = q_prev, f_prev, q_m, f_m
                    break
                q_prev, f_prev = q_m, f_m
        mid = _secant_root(lo, hi_q, f_lo, f_hi)
        f_mid = sgn * (_ocv(d, mid, table, diff) - target)
        if f_mid >= 0.0:
            hi_q, f_hi = mid, f_mid
        else:
            lo, f_lo = mid, f_mid
        dq = _secant_root(lo, hi_q, f_lo, f_hi) - q0
        if abs(dq) > 1e-6:
            slope = max(abs(target - ocv0) / abs(dq), 1e-3)
    a = slope / (r_eff * 3600.0)
    if not has_cut:
        for _ in range(2):
            dq = i_cv * (1.0 - np.exp(-a * t_lim)) / (a * 3600.0)
            if abs(dq) > 1e-5:
                secant = abs(_ocv(d, q0 + dq, table, diff) - ocv0) / abs(dq)
                a = max(secant, 1e-3) / (r_eff * 3600.0)
    t_cv = np.log(ratio) / a if has_cut else np.inf
    return i_cv, a, t_cv


@njit(cache=True, error_model="numpy")
def _segment(d, q0, temp0, h0, v10, v20, c, cv, i_set, v_set, i_cut, t_lim, t_left, table, diff):  # noqa: ANN001, ANN202, PLR0913
    """phases._segment for one cell: fills ``c``; returns (duration, end code)."""
    nominal = d[_NOM]
    # point_resistances
    x = min(max(q0 / d[_CNEG], 0.0), 1.0)
    inv_t = _INV_R * (1.0 / (temp0 + KELVIN) - d[_INV_TREF])
    soc_x = _soc_factor(x)
    rs0 = d[_D_R0] * np.exp(d[_D_R0_EA] * inv_t) + d[_FILM]
    rs1 = d[_D_R1] * np.exp(d[_D_R1_EA] * inv_t) * soc_x
    rs2 = d[_D_R2] * np.exp(d[_D_R2_EA] * inv_t) * soc_x
    r_eff = rs0 + rs1
    r_eff += rs2
    if cv:
        i0, a, t_cv = _linearise_cv(d, q0, h0, v_set, i_cut, t_lim, r_eff, table, diff)
        moving = False
    else:
        i0, a, t_cv = i_set, 0.0, np.inf
        moving = i0 != 0.0
    abs_i = abs(i0)
    span = (min(d[_NLI], d[_CNEG]) - q0) if i0 > 0 else q0
    span += 0.02 * nominal
    span *= 3600.0
    t_range = span / abs_i if moving else np.inf
    t_max = min(t_lim, t_range)
    t_max = min(t_max, t_cv)
    t_max = max(t_max, 1e-6)
    if cv:
        at = a * t_max
        i_mean = i0 if at < 1e-9 else i0 * (1.0 - np.exp(-at)) / max(at, 1e-12)
    else:
        i_mean = i0
    abs_mean = abs(i_mean)
    soc = min(max(q0 / nominal, 0.0), 1.0)
    entropic = d[_DS0] + (d[_DS1] - d[_DS0]) * soc
    heat = i_mean * i_mean * r_eff
    heat += i_mean * (temp0 + 273.15) * entropic
    heat += abs_mean * d[_HEAT_A]
    t_inf = d[_T_CH] + heat / d[_H_AREA]
    c[_HT] = d[_HYST_M] * np.sign(i0)
    c[_NEG_HR] = d[_HYST_RATE] * -abs_i
    c[_I0] = i0
    c[_NEG_A] = -a
    c[_INV_A] = 1.0 / a if a > 0.0 else 0.0
    c[_IS_LIN] = 1.0 if a <= 0.0 else 0.0
    c[_KQ] = i0 / 3600.0
    c[_Q0] = q0
    c[_T_INF] = t_inf
    c[_DTEMP] = temp0 - t_inf
    c[_A1] = v10 - i0 * rs1
    c[_A2] = v20 - i0 * rs2
    if cv:
        c[_A1] *= 0.0
        c[_A2] *= 0.0
    c[_DH] = h0 - c[_HT]
    c[_INV_CPOS] = 1.0 / d[_CPOS]
    c[_INV_CNEG] = 1.0 / d[_CNEG]
    c[_Y0] = d[_NLI] * c[_INV_CPOS]
    c[_C_R_FILM] = d[_FILM]
    if t_max >= t_left:
        code = TIME
    elif t_range < t_lim:
        code = RANGE
    else:
        code = BUDGET
    if cv and t_cv <= t_lim:
        code = CUTOFF
    return t_max, code


@njit(cache=True, error_model="numpy")
def _ageing_rates(d, i0, a, tau, current, phi, x, inv_t, out):  # noqa: ANN001, ANN202, PLR0913
    """degradation.ageing_rates at one grid point into ``out`` (5,)."""
    charging = i0 > 0.0
    arr0 = np.exp(inv_t * d[_NEG_SEI_EA])
    out[0] = (1.0 + d[_SEI_SOC] * x) * arr0
    out[0] *= d[_SEI_K]
    if charging:
        p = d[_LAM_EXP]
        arr1 = inv_t * d[_NEG_LAM_EA]
        arr1 -= (a * p) * tau
        arr1 = np.exp(arr1)
        crate0 = abs(i0) / d[_NOM]
        stress = ((1.0 * crate0**p) * d[_CNEG] * (1.0 / 3600.0)) * arr1
        out[4] = d[_CRACK_SEI] * stress
        onset = min((d[_PL_TH] - phi) / d[_PL_PHI0], 700.0)
        onset = np.log1p(np.exp(onset))
        out[1] = ((1.0 * d[_PL_K]) * (1.0 / 3600.0)) * onset
        out[2] = d[_LAM_K] * stress + d[_LAM_PL] * out[1]
    else:
        out[1] = out[2] = out[4] = 0.0
    out[3] = (d[_LAM_P_K] * d[_CPOS] / (3600.0 * d[_NOM])) * abs(current)


@njit(cache=True, inline="always", error_model="numpy")
def _sei_growth(d, i0, i1, i2, i3, i4):  # noqa: ANN001, ANN202 - compiled
    """degradation.sei_growth for one cell: (d_sei, d_pl, d_lam_n, d_lam_p)."""
    base = d[_Q_SEI] + d[_SEI_Q0]
    return np.sqrt(base * base + 2.0 * i0) - base + i4, i1, i2, i3


@njit(cache=True, error_model="numpy")
def _apply_ageing(d, q, d_sei, d_pl, d_lam_n, d_lam_p):  # noqa: ANN001, ANN202 - compiled
    """degradation.apply_ageing on one cell's fields ``d``."""
    x = min(max(q / d[_CNEG], 0.0), 1.0)
    li_lost = x * d_lam_n
    d[_Q] = q - d_sei - d_pl - li_lost
    d[_NLI] -= d_sei + d[_PL_DEAD] * d_pl + li_lost
    d[_CNEG] -= d_lam_n
    d[_CPOS] -= d_lam_p
    d[_Q_SEI] += d_sei
    d[_Q_PL] += d_pl
    d[_LAM_NEG] += d_lam_n
    d[_LAM_POS] += d_lam_p
    d[_FILM] += d[_FILM_SEI] * d_sei + d[_FILM_PL] * d_pl


@njit(cache=True, inline="always", error_model="numpy")
def _secant(a, fa, b, fb):  # noqa: ANN001, ANN202 - compiled
    """phase_end.secant."""
    t = a - fa * (b - a) / (fb - fa if fb - fa > 1e-15 else 1.0)
    return min(max(t, a), b)


@njit(cache=True, inline="always", error_model="numpy")
def _inverse_quadratic(a, fa, t, ft, b, fb):  # noqa: ANN001, ANN202 - compiled
    """phase_end.inverse_quadratic (NaN or inf where two values coincide)."""
    d_at, d_ab, d_tb = fa - ft, fa - fb, ft - fb
    p1 = d_at * d_ab
    p2 = d_at * d_tb
    p3 = d_ab * d_tb
    if p1 == 0.0 or p2 == 0.0 or p3 == 0.0:
        return np.nan
    return a * ft * fb / p1 - t * fa * fb / p2 + b * fa * ft / p3


@njit(cache=True, error_model="numpy")
def solve_phase(  # noqa: ANN201, PLR0912, PLR0913, PLR0915 - compiled
    data, cv, i_set, v_set, v_cut, i_cut, t_avail, t_left, v_lo, v_hi, t_hi, valid, table, diff
):
    """``phases.Phase`` for the cells with fields ``data`` (NF, n); see its docstring
    for the inputs (``valid`` (S, n) always given). Returns (coefs, t_max, active,
    seg_t, seg_done, end_t, code, seg_end, age_inc, aged, aged_end, ageing, end,
    passed), segment arrays cut to the segments used."""
    n_seg, n = cv.shape
    coefs = np.zeros((n_seg, NC, n))
    t_max = np.zeros((n_seg, n))
    codes = np.zeros((n_seg, n), dtype=np.int64)
    active = np.zeros((n_seg, n), dtype=np.bool_)
    tau = np.zeros((n_seg, n, _K1))
    vg = np.zeros((n_seg, n, _K1))
    tempg = np.zeros((n_seg, n, _K1))
    inc = np.zeros((5, n_seg, n, GRID))
    aged = np.zeros((n_seg, _N_AGED, n))
    ds = data.copy()  # the cells' fields at the start of segment s
    st = np.empty((5, n))  # q, T, h, v1, v2 at the start of segment s
    st[0], st[1], st[2], st[3], st[4] = data[_Q], data[_TEMP], data[_H], data[_V1], data[_V2]
    act = np.ones(n, dtype=np.bool_)
    rates = np.empty((_K1, 5))
    ends = np.empty(5)
    used = n_seg
    for s in range(n_seg):
        any_act = False
        for j in range(n):
            d = ds[:, j]
            for r in range(_N_AGED):
                aged[s, r, j] = d[_AGED[r]]
            c = coefs[s, :, j]
            for r in range(_C_CONST.size):
                c[_C_CONST[r]] = d[_D_CONST[r]]
            isv = i_set[s, j]
            c[_CV] = 1.0 if cv[s, j] else 0.0
            c[_V_SET] = v_set[s, j]
            c[_I0] = isv
            c[_NEG_HR] = d[_HYST_RATE] * -abs(isv)
            c[_KQ] = isv / 3600.0
            c[_HT] = d[_HYST_M] * np.sign(isv)
            c[_NEG_A], c[_INV_A], c[_IS_LIN] = -0.0, 0.0, 1.0
            t_lim = min(t_avail[j], t_left[s, j])
            t_seg, code = _segment(
                d, st[0, j], st[1, j], st[2, j], st[3, j], st[4, j], c, cv[s, j], isv,
                v_set[s, j], i_cut[s, j], t_lim, t_left[s, j], table, diff,
            )  # fmt: skip
            active[s, j] = act[j]
            codes[s, j] = code
            if s and not act[j]:
                t_seg = 0.0
            t_max[s, j] = t_seg
            i0, a = c[_I0], -c[_NEG_A]
            share, film = d[_SHARE], d[_FILM]
            for k in range(_K1):
                tk = t_seg * _G[k]
                tau[s, j, k] = tk
                state = state_at(c, tk, table, diff, K64)
                v, current, temp, q, v1, v2, h, r0, u_n, x, inv_t = state
                vg[s, j, k], tempg[s, j, k] = v, temp
                phi = u_n - share * (v1 + v2) - 0.5 * current * (r0 + film)
                _ageing_rates(d, i0, a, tk, current, phi, x, inv_t, rates[k])
                if k == GRID:
                    ends[0], ends[1], ends[2], ends[3], ends[4] = q, temp, h, v1, v2
            for p in range(5):
                for k in range(GRID):
                    inc[p, s, j, k] = (rates[k + 1, p] + rates[k, p]) * (t_seg * _HALF_DG[k])
            if s + 1 == n_seg:
                continue
            act[j] = act[j] and valid[s + 1, j] and (code == TIME or code == CUTOFF)  # noqa: SIM109 - numba
            any_act = any_act or act[j]
            # the next step starts from this segment's end state with its ageing applied
            q_end = ends[0]
            d[_THROUGHPUT] += abs(q_end - c[_Q0])
            g = _sei_growth(
                d, _sum10(inc[0, s, j]), _sum10(inc[1, s, j]), _sum10(inc[2, s, j]),
                _sum10(inc[3, s, j]), _sum10(inc[4, s, j]),
            )  # fmt: skip
            _apply_ageing(d, q_end, g[0], g[1], g[2], g[3])
            st[0, j], st[1, j], st[2, j], st[3, j], st[4, j] = (
                d[_Q], ends[1], ends[2], ends[3], ends[4],
            )  # fmt: skip
        if s + 1 < n_seg and not any_act:
            used = s + 1
            break
    coefs, t_max, codes, active = coefs[:used], t_max[:used], codes[:used], active[:used]
    tau, vg, tempg = tau[:used], vg[:used], tempg[:used]
    inc, aged = inc[:, :used], aged[:used]
    seg_t = np.zeros((used, n))
    seg_done = np.zeros((used, n), dtype=np.bool_)
    end_t = np.zeros(n)
    code_out = np.zeros(n, dtype=np.int64)
    seg_end_out = np.zeros(n, dtype=np.int64)
    aged_end = np.zeros((_N_AGED, n))
    ageing = np.zeros((4, n))
    end = np.zeros((5, n))
    passed = np.zeros((used, n))
    offset = np.empty(used)
    flat_t = np.empty(used * _K1)
    excess = np.empty(used * _K1)
    for j in range(n):
        cum = 0.0
        for s in range(used):
            cum += t_max[s, j]
            offset[s] = cum - t_max[s, j]
        total = offset[used - 1] + t_max[used - 1, j]
        seg_end = -1
        for s in range(used):
            seg_end += 1 if active[s, j] else 0
        code = codes[seg_end, j]
        t_end_phase = total
        k_cut = used * _K1
        for s in range(used):
            for k in range(_K1):
                flat_t[s * _K1 + k] = offset[s] + tau[s, j, k]
        # --- the voltage cut-off ----------------------------------------------------------
        any_cut = False
        for s in range(used):
            has = (not np.isnan(v_cut[s, j])) and (not cv[s, j]) and active[s, j]
            direction = (1.0 if coefs[s, _I0, j] > 0 else -1.0) if has else 0.0
            for k in range(_K1):
                excess[s * _K1 + k] = direction * (vg[s, j, k] - v_cut[s, j]) if has else -1.0
            any_cut = any_cut or has
        if any_cut:
            kf = -1
            for f in range(used * _K1):
                if excess[f] >= 0.0:
                    kf = f
                    break
            if kf >= 0:
                kl = max(kf - 1, 0)
                if kf == 0:
                    t_cut = 0.0
                else:
                    a_, b_ = flat_t[kl], flat_t[kf]
                    fa, fb = excess[kl], excess[kf]
                    denom = fb - fa if abs(fb - fa) > 1e-15 else 1.0
                    t_cut = min(max(a_ - fa * (b_ - a_) / denom, a_), b_)
                seg, jj = kf // _K1, kf % _K1
                if CUTOFF_REFINE and jj > 0:
                    cc = coefs[seg, :, j]
                    a_, b_ = tau[seg, j, jj - 1], tau[seg, j, jj]
                    fa, fb = excess[kf - 1], excess[kf]
                    sign = 1.0 if cc[_I0] > 0 else -1.0
                    target = v_cut[seg, j]
                    t = _secant(a_, fa, b_, fb)
                    for _ in range(CUTOFF_REFINE):
                        f = sign * (state_at(cc, t, table, diff, K64)[0] - target)
                        t_next = _inverse_quadratic(a_, fa, t, f, b_, fb)
                        if f >= 0.0:
                            b_, fb = t, f
                        else:
                            a_, fa = t, f
                        t = t_next if (t_next > a_ and t_next < b_) else _secant(a_, fa, b_, fb)
                    t_cut = offset[seg] + t
                t_end_phase = min(t_cut, t_end_phase)
                code = CUTOFF
                seg_end = seg
                k_cut = kf
        # --- safety limits ----------------------------------------------------------------
        t_safe, k_safe = np.inf, 0
        for kind in range(3):
            kf = -1
            for s in range(used):
                ok = active[s, j] and (kind == 2 or not cv[s, j])
                for k in range(_K1):
                    if kind == 0:
                        e = vg[s, j, k] - v_hi[j]
                    elif kind == 1:
                        e = v_lo[j] - vg[s, j, k]
                    else:
                        e = tempg[s, j, k] - t_hi[j]
                    excess[s * _K1 + k] = e if ok else -1.0
            for f in range(used * _K1):
                if excess[f] >= 0.0:
                    kf = f
                    break
            if kf < 0 or (kind < 2 and kf >= k_cut):
                continue
            if kf == 0:
                t = 0.0
            else:
                e0, e1 = excess[kf - 1], excess[kf]
                w = -e0 / (e1 - e0) if e1 - e0 > 1e-15 else 1.0
                t0, t1 = flat_t[kf - 1], flat_t[kf]
                t = t0 + min(max(w, 0.0), 1.0) * (t1 - t0)
            if t < t_safe:
                t_safe, k_safe = t, kf
        if t_safe <= t_end_phase:
            t_end_phase = t_safe
            code = SAFETY
            seg_end = k_safe // _K1
        end_t[j], code_out[j], seg_end_out[j] = t_end_phase, code, seg_end
        finished = code == TIME or code == CUTOFF  # noqa: SIM109 - numba
        for s in range(used):
            st_ = min(max(t_end_phase - offset[s], 0.0), t_max[s, j])
            seg_t[s, j] = 0.0 if s > seg_end else st_
            seg_done[s, j] = s < seg_end or (s == seg_end and finished)
        # --- ageing of the ending segment up to the end, and the end state ---------------
        t_end = seg_t[seg_end, j]
        d_end = data[:, j].copy()
        for r in range(_N_AGED):
            aged_end[r, j] = aged[seg_end, r, j]
            d_end[_AGED[r]] = aged_end[r, j]
        tm = t_max[seg_end, j]
        frac = min(max(t_end / (tm if tm > 0.0 else 1.0), 0.0), 1.0)
        kfr = GRID * (1.0 - np.sqrt(1.0 - frac))
        integ = np.zeros(5)
        for p in range(5):
            acc = 0.0
            for k in range(GRID):
                acc += inc[p, seg_end, j, k] * min(max(kfr - k, 0.0), 1.0)
            integ[p] = acc
        g = _sei_growth(d_end, integ[0], integ[1], integ[2], integ[3], integ[4])
        ageing[0, j], ageing[1, j], ageing[2, j], ageing[3, j] = g[0], g[1], g[2], g[3]
        # the end state: phases._end_state is the closed form (state_at) without the OCV
        _v, _i, temp, q, v1, v2, h = state_at(coefs[seg_end, :, j], t_end, table, diff, K64)[:7]
        end[0, j], end[1, j], end[2, j], end[3, j], end[4, j] = q, temp, v1, v2, h
        for s in range(used):
            cs = coefs[s, :, j]
            gq = (1.0 - np.exp(cs[_NEG_A] * seg_t[s, j])) * cs[_INV_A]
            gq += cs[_IS_LIN] * seg_t[s, j]
            passed[s, j] = cs[_KQ] * gq
    return (coefs, t_max, active, seg_t, seg_done, end_t, code_out, seg_end_out, inc, aged,
            aged_end, ageing, end, passed)  # fmt: skip
