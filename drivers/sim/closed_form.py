"""The closed-form cell state within a phase, compiled (decision 0086).

:func:`state_at` is :func:`phases.trajectory` at one time for one coefficient column,
written as scalar code for numba: the same operations in the same order, in the
float type of its arguments (float32 for records, float64 for the phase solve). The
constants come in a tuple of that type (``K32``, ``K64``) so that no operation mixes
precisions.
"""

from __future__ import annotations

import numpy as np

from voltloop.drivers.sim.compiled import configure_cache

configure_cache()  # before any kernel is defined: the cache follows the sources' digest

from numba import njit  # noqa: E402

from voltloop.drivers.sim.chemistry import (  # noqa: E402
    GAS_CONSTANT,
    GRID_POINTS,
    KELVIN,
    OVERRANGE_V_PER_UNIT,
)
from voltloop.drivers.sim.phases import C  # noqa: E402

#: Outputs of :func:`state_at`, in order (those of ``phases.trajectory``).
STATE_FIELDS = ("v", "current", "temp", "q", "v1", "v2", "h", "r0", "u_n", "x", "inv_t")


def _constants(t: type) -> tuple:
    """(one, zero, kelvin, 1/R, last grid index, over-range slope, and the SOC factor's
    exponent slopes and offsets; phases._SOC_K, _SOC_B) in float type ``t``."""
    return (
        t(1.0), t(0.0), t(KELVIN), t(1.0 / GAS_CONSTANT), t(GRID_POINTS - 1),
        t(OVERRANGE_V_PER_UNIT), t(-1.0 / 0.08), t(np.log(0.8)), t(1.0 / 0.06),
        t(np.log(0.3) - 1.0 / 0.06),
    )  # fmt: skip


K32 = _constants(np.float32)
K64 = _constants(np.float64)

# coefficient rows (phases.COLUMNS)
(_NEG_A, _NEG_TTH, _NEG_T1, _NEG_T2, _NEG_HR, _I0, _INV_A, _IS_LIN, _Q0, _KQ, _T_INF, _DTEMP,
 _A1, _A2, _HT, _DH, _Y0, _INV_CPOS, _INV_CNEG, _OFF_P, _OFF_N, _INV_TREF, _R0, _R1, _R2,
 _R0_EA, _R1_EA, _R2_EA, _R_FILM) = (
    C[name] for name in (
        "neg_a", "neg_inv_tau_th", "neg_inv_tau1", "neg_inv_tau2", "neg_hr", "i0", "inv_a",
        "is_lin", "q0", "kq", "t_inf", "dtemp", "a1", "a2", "ht", "dh", "y0", "inv_cpos",
        "inv_cneg", "off_p", "off_n", "inv_tref", "r0", "r1", "r2", "r0_ea", "r1_ea", "r2_ea",
        "r_film",
    )
)  # fmt: skip


@njit(cache=True, inline="always", error_model="numpy")
def electrode(s, off, table, diff, k):  # noqa: ANN001, ANN202 - compiled
    """OcpTable.lookup at one stoichiometry: (potential, clipped stoichiometry)."""
    sc = min(max(s, k[1]), k[0])
    pos = sc * k[4] + off
    i = np.intp(pos)
    pos -= np.floor(pos)  # pos >= 0: the fraction, in the type of pos
    u = table[i]
    u += pos * diff[i]
    u += k[5] * (sc - s)
    return u, sc


@njit(cache=True, inline="always", error_model="numpy")
def state_at(c, tau, table, diff, k):  # noqa: ANN001, ANN201 - compiled
    """``phases.trajectory`` of coefficient column ``c`` at phase time ``tau``: the
    tuple of :data:`STATE_FIELDS`. ``k``: the constants in the float type of ``c``."""
    ea = np.exp(c[_NEG_A] * tau)
    e_th = np.exp(c[_NEG_TTH] * tau)
    e1 = np.exp(c[_NEG_T1] * tau)
    e2 = np.exp(c[_NEG_T2] * tau)
    eh = np.exp(c[_NEG_HR] * tau)
    current = c[_I0] * ea
    g = (k[0] - ea) * c[_INV_A]
    g += c[_IS_LIN] * tau
    q = c[_Q0] + c[_KQ] * g
    temp = c[_T_INF] + c[_DTEMP] * e_th
    x = q * c[_INV_CNEG]
    u_p, _ = electrode(c[_Y0] - q * c[_INV_CPOS], c[_OFF_P], table, diff, k)
    u_n, xc = electrode(x, c[_OFF_N], table, diff, k)
    soc = np.exp(xc * k[6] + k[7]) + np.exp(xc * k[8] + k[9])
    soc += k[0]
    inv_t = k[0] / (temp + k[2])
    inv_t -= c[_INV_TREF]
    inv_t *= k[3]
    r0 = c[_R0] * np.exp(c[_R0_EA] * inv_t) + c[_R_FILM]
    v1 = c[_R1] * np.exp(c[_R1_EA] * inv_t) * soc
    v1 *= current
    v1 += c[_A1] * e1
    v2 = c[_R2] * np.exp(c[_R2_EA] * inv_t) * soc
    v2 *= current
    v2 += c[_A2] * e2
    h = c[_HT] + c[_DH] * eh
    v = u_p - u_n + h + current * r0 + v1 + v2
    return v, current, temp, q, v1, v2, h, r0, u_n, x, inv_t
