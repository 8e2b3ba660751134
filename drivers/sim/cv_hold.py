"""The constant-voltage hold of a phase: its current I0 exp(-a t) and its end.

A CV hold at V_set draws I = (V_set - OCV(q) - h) / R. With the OCV linearised by the
secant slope s between the start charge and the charge at the end of the hold, the
current decays as I0 exp(-a t), a = s / (3600 R), and reaches the cut-off I_cut at
t = ln(I0 / I_cut) / a (phases.py uses this closed form; decisions 0031, 0033).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from voltloop.drivers.sim.cell_model import ROW
from voltloop.drivers.sim.chemistry import OcpTable

#: Points of the OCV scan that brackets the end of a CV hold.
CV_SCAN = 48
_SCAN_FRACTIONS = np.linspace(0.0, 1.0, CV_SCAN + 1)[1:]
_NLI, _CNEG, _NOM = ROW["n_li"], ROW["c_neg"], ROW["nominal_Ah"]
_D_CAPS = [ROW["c_pos"], ROW["c_neg"]]
_D_OFFS = [ROW["chem_off"], ROW["off_n"]]


def ocv_of(tables: OcpTable, d: np.ndarray) -> Any:
    """OCV(q) (V) of the cells with fields ``d`` (NF, m), for ``q`` of shape (m,) or
    (m, M); the capacities and table offsets are read once."""
    inv = 1.0 / d[_D_CAPS]  # (2, m): 1/C_p, 1/C_n
    y0 = d[_NLI] * inv[0]
    off = d[_D_OFFS]
    inv_col, y0_col, off_col = inv[:, :, None], y0[:, None], off[:, :, None]

    def ocv(q: np.ndarray) -> np.ndarray:
        col = q.ndim == 2
        s = q * (inv_col if col else inv)
        np.subtract(y0_col if col else y0, s[0], out=s[0])
        u = tables.lookup(s, off_col if col else off)[0]
        return u[0] - u[1]

    return ocv


def linearise_cv(
    tables: OcpTable,
    d: np.ndarray,
    q0: np.ndarray,
    h: np.ndarray,
    v_set: np.ndarray,
    i_cut: np.ndarray,
    t_lim: np.ndarray,
    r_eff: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CV current I0 exp(-a t) for the CV cells with fields ``d`` (NF, m).

    ``a`` comes from the secant OCV slope between the start and the end of the hold;
    the end time is where |I| reaches ``i_cut``. With a current cut-off the end charge
    solves OCV(q_end) = V - h - I_cut R inside the electrode range: the OCV is scanned
    at ``CV_SCAN`` points (one table lookup for all cells), the first bracketing
    interval is refined by two regula falsi steps, and the secant runs from the start
    to that root. Without a cut-off the secant runs over the charge the time limit
    allows (two passes). Returns (I0, a, t_cv), each shape (m,).
    """
    nominal = d[_NOM]
    ocv_at = ocv_of(tables, d)
    ocv0 = ocv_at(q0)
    i_cv = (v_set - ocv0 - h) / r_eff
    sgn = np.where(i_cv >= 0.0, 1.0, -1.0)
    has_cut = ~np.isnan(i_cut)
    cut = np.where(has_cut, i_cut, 1.0)
    ratio = np.maximum(np.abs(i_cv) / cut, 1.0)
    step = sgn * 2e-3 * nominal
    hi = np.where(sgn > 0, np.minimum(d[_NLI], d[_CNEG]), 0.0) + sgn * 0.02 * nominal
    # one lookup: the slope step and the scan towards the end of the electrode range
    q = np.empty((q0.size, CV_SCAN + 1))
    q[:, 0] = q0 + step
    np.multiply((hi - q0)[:, None], _SCAN_FRACTIONS, out=q[:, 1:])
    q[:, 1:] += q0[:, None]
    ocv = ocv_at(q)
    slope = np.maximum(np.abs(ocv[:, 0] - ocv0) / np.abs(step), 1e-3)
    if np.count_nonzero(has_cut):
        target = v_set - h - sgn * cut * r_eff
        f = sgn[:, None] * (ocv - target[:, None])
        f[:, 0] = sgn * (ocv0 - target)  # column 0 becomes the start of the scan
        q[:, 0] = q0
        rows = np.arange(q0.size)
        k = np.maximum(np.argmax(f >= 0.0, axis=1), 1)  # none found: the last interval
        lo, hi = q[rows, k - 1], q[rows, k]
        f_lo, f_hi = f[rows, k - 1], f[rows, k]
        mid = secant_root(lo, hi, f_lo, f_hi)
        f_mid = sgn * (ocv_at(mid) - target)
        up = f_mid >= 0.0
        hi, f_hi = np.where(up, mid, hi), np.where(up, f_mid, f_hi)
        lo, f_lo = np.where(up, lo, mid), np.where(up, f_lo, f_mid)
        dq = secant_root(lo, hi, f_lo, f_hi) - q0
        big = has_cut & (np.abs(dq) > 1e-6)
        secant = np.abs(target - ocv0) / np.where(big, np.abs(dq), 1.0)
        slope = np.where(big, np.maximum(secant, 1e-3), slope)
    a = slope / (r_eff * 3600.0)
    no_cut = ~has_cut
    if np.count_nonzero(no_cut):
        for _ in range(2):
            dq = i_cv * (1.0 - np.exp(-a * t_lim)) / (a * 3600.0)
            big = no_cut & (np.abs(dq) > 1e-5)
            secant = np.abs(ocv_at(q0 + dq) - ocv0) / np.where(big, np.abs(dq), 1.0)
            a = np.where(big, np.maximum(secant, 1e-3) / (r_eff * 3600.0), a)
    t_cv = np.where(has_cut, np.log(ratio) / a, np.inf)
    return i_cv, a, t_cv


def secant_root(lo: np.ndarray, hi: np.ndarray, f_lo: np.ndarray, f_hi: np.ndarray) -> np.ndarray:
    """Root of the straight line through (lo, f_lo) and (hi, f_hi)."""
    denom = np.where(np.abs(f_hi - f_lo) > 1e-12, f_hi - f_lo, 1.0)
    return lo - f_lo * (hi - lo) / denom
