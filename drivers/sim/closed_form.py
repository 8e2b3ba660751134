"""The closed-form cell state within a phase, compiled (decisions 0086, 0087).

:func:`state_at` is :func:`phases.trajectory` at one time for one coefficient column,
written as scalar code for numba: the same operations in the same order, in float64
(the constants come in the tuple ``K64``). :func:`state_parts` is all of it but the
two table lookups of the electrode potentials; with ``poly`` set it evaluates ``exp``
as :func:`exp_poly`, straight-line arithmetic that a loop over records can vectorise
(``record_kernel``).
"""

from __future__ import annotations

import math

import numpy as np

from voltloop.drivers.sim.compiled import configure_cache

configure_cache()  # before any kernel is defined: the cache follows the sources' digest

from llvmlite import ir as llvm_ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.core import cgutils  # noqa: E402
from numba.core.errors import RequireLiteralValue  # noqa: E402
from numba.extending import intrinsic  # noqa: E402

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


@intrinsic
def _bits_to_float64(typingctx, bits):  # noqa: ANN001, ANN202, ARG001 - numba intrinsic
    """The float64 whose IEEE-754 bits are the int64 ``bits`` (a register move)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
        return builder.bitcast(args[0], llvm_ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def column_tuple(typingctx, column, length):  # noqa: ANN001, ANN201, ARG001 - numba intrinsic
    """The first ``length`` (a constant) entries of the 1-d array ``column`` as a tuple:
    values the compiler knows no store can change, so a loop reading them can be
    vectorised. Unlike numba's ``to_fixed_tuple`` (a loop of ``tuple_setitem``, ~300
    ns for 33 entries) this is one load per entry."""
    if not isinstance(length, types.IntegerLiteral):
        raise RequireLiteralValue("column_tuple: the length must be a constant")
    count = length.literal_value
    result = types.UniTuple(column.dtype, count)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        out = context.get_constant_undef(result)
        for i in range(count):
            index = context.get_constant(types.intp, i)
            ptr = cgutils.get_item_pointer(context, builder, array_type, array, [index])
            out = builder.insert_value(out, builder.load(ptr), i)
        return out

    return result(column, length), codegen


_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's split
#: 1/k! for k = 11, 10, ..., 2 (Horner order)
_P11, _P10, _P9, _P8, _P7, _P6, _P5, _P4, _P3, _P2 = (
    1.0 / math.factorial(k) for k in range(11, 1, -1)
)


@njit(cache=True, inline="always", error_model="numpy")
def exp_poly(x):  # noqa: ANN001, ANN201 - compiled
    """exp(x) for float64 ``x`` in straight-line arithmetic, so that a loop calling it
    can be vectorised (a call to the C library's ``exp`` cannot): x = n ln 2 + r with
    |r| <= ln 2 / 2 (Cody-Waite), exp(r) by its Taylor polynomial of degree 11
    (truncation < 6e-15 relative), 2^n from the exponent bits. Relative error < 1e-14
    (tests/unit/sim/test_record_kernel.py); ``x`` is clamped to [-708, 709], where
    exp stays a normal float64."""
    x = min(max(x, -708.0), 709.0)
    n = np.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = _P11 * r + _P10
    p = p * r + _P9
    p = p * r + _P8
    p = p * r + _P7
    p = p * r + _P6
    p = p * r + _P5
    p = p * r + _P4
    p = p * r + _P3
    p = p * r + _P2
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _bits_to_float64((np.int64(n) + 1023) << 52)


@njit(cache=True, inline="always", error_model="numpy")
def _exp(x, poly):  # noqa: ANN001, ANN202 - compiled
    """exp(x): :func:`exp_poly` if ``poly`` (a constant where it is inlined, so the
    branch folds away) else the C library's."""
    return exp_poly(x) if poly else np.exp(x)


@njit(cache=True, inline="always", error_model="numpy")
def state_parts(c, tau, k, poly):  # noqa: ANN001, ANN201 - compiled
    """The closed form of coefficient column ``c`` at phase time ``tau`` up to the two
    electrode potentials (the table lookups): (current, temp, q, v1, v2, h, r0, x,
    y, inv_t), with x and y the negative and positive electrode stoichiometries.
    ``poly``: evaluate ``exp`` with :func:`exp_poly` (vectorisable loops)."""
    ea = _exp(c[_NEG_A] * tau, poly)
    e_th = _exp(c[_NEG_TTH] * tau, poly)
    e1 = _exp(c[_NEG_T1] * tau, poly)
    e2 = _exp(c[_NEG_T2] * tau, poly)
    eh = _exp(c[_NEG_HR] * tau, poly)
    current = c[_I0] * ea
    g = (k[0] - ea) * c[_INV_A]
    g += c[_IS_LIN] * tau
    q = c[_Q0] + c[_KQ] * g
    temp = c[_T_INF] + c[_DTEMP] * e_th
    x = q * c[_INV_CNEG]
    y = c[_Y0] - q * c[_INV_CPOS]
    xc = min(max(x, k[1]), k[0])  # the stoichiometry electrode() clips to
    soc = _exp(xc * k[6] + k[7], poly) + _exp(xc * k[8] + k[9], poly)
    soc += k[0]
    inv_t = k[0] / (temp + k[2])
    inv_t -= c[_INV_TREF]
    inv_t *= k[3]
    r0 = c[_R0] * _exp(c[_R0_EA] * inv_t, poly) + c[_R_FILM]
    v1 = c[_R1] * _exp(c[_R1_EA] * inv_t, poly) * soc
    v1 *= current
    v1 += c[_A1] * e1
    v2 = c[_R2] * _exp(c[_R2_EA] * inv_t, poly) * soc
    v2 *= current
    v2 += c[_A2] * e2
    h = c[_HT] + c[_DH] * eh
    return current, temp, q, v1, v2, h, r0, x, y, inv_t


@njit(cache=True, inline="always", error_model="numpy")
def state_at(c, tau, table, diff, k):  # noqa: ANN001, ANN201 - compiled
    """``phases.trajectory`` of coefficient column ``c`` at phase time ``tau``: the
    tuple of :data:`STATE_FIELDS`. ``k``: the constants in the float type of ``c``."""
    current, temp, q, v1, v2, h, r0, x, y, inv_t = state_parts(c, tau, k, False)
    u_p, _ = electrode(y, c[_OFF_P], table, diff, k)
    u_n, _ = electrode(x, c[_OFF_N], table, diff, k)
    v = u_p - u_n + h + current * r0 + v1 + v2
    return v, current, temp, q, v1, v2, h, r0, u_n, x, inv_t
