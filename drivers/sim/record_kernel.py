# ruff: noqa: N803, N806 - names follow phases.COLUMNS and the record fields
"""Compiled evaluation of an advance's records (decision 0086).

:func:`evaluate_records` computes every record of a group of segments in one
compiled loop: the closed-form trajectory of :func:`phases.trajectory` at each record
time (:func:`closed_form.state_at` in float32), the sensor noise of
:func:`noise_bits`, written straight into the output rows. The numpy
version made ~60 whole-array calls per group and as many temporaries of the group's
size; this makes none. Arithmetic is float32 in the same order as the numpy
version, so the records agree with it to the last bit or two of float32 (the ``exp``
of the C library against numpy's vectorised one), far below the sensor noise.

Compiled with numba and cached (``compiled.py`` says where); ``make`` compiles it
ahead.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from voltloop.drivers.sim.closed_form import K32, state_at
from voltloop.drivers.sim.phases import C

_CV, _V_SET, _Q0 = C["cv"], C["v_set"], C["q0"]
_ZERO = np.float32(0.0)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_U1, _S30, _S27, _S31 = np.uint64(1), np.uint64(30), np.uint64(27), np.uint64(31)
_MASK16, _S16, _S32 = np.uint64(0xFFFF), np.uint64(16), np.uint64(32)


@njit(cache=True, inline="always")
def _noise_word(key, record):  # noqa: ANN001, ANN202 - compiled
    """A record's 64-bit noise word: the SplitMix64 finaliser of key + golden * (record
    + 1). Its three low 16-bit parts index the Gaussian levels of voltage, current and
    temperature (:func:`noise_bits`)."""
    x = np.uint64(record) + _U1
    x *= _GOLDEN
    x += key
    x ^= x >> _S30
    x *= _MIX1
    x ^= x >> _S27
    x *= _MIX2
    x ^= x >> _S31
    return x


@njit(cache=True)
def noise_bits(keys, records):  # noqa: ANN001, ANN201 - compiled
    """Three uniform 16-bit draws per record, shape (3, m), from its channel's stream
    key (uint64, (m,)) and record number (int64, (m,)). A record's noise depends only
    on which record it is, not on how the clock's advances batched it (decision 0036)."""
    out = np.empty((3, records.size), dtype=np.uint16)
    for k in range(records.size):
        word = _noise_word(keys[k], records[k])
        out[0, k] = np.uint16(word & _MASK16)
        out[1, k] = np.uint16((word >> _S16) & _MASK16)
        out[2, k] = np.uint16((word >> _S32) & _MASK16)
    return out


@njit(cache=True)
def evaluate_records(  # noqa: ANN201, PLR0913, PLR0915 - compiled
    meta,  # (12, m) float64: record_batch._S_* rows
    coef,  # (NC, m) float32
    counts,  # (m,) intp
    out,  # (sum(counts),) SAMPLE_DTYPE
    keys,  # (channels,) uint64 noise stream keys
    noise_sd,  # (3,) float32: voltage V, current (relative), temperature degC
    levels,  # (65536,) float32 Gaussian quantiles
    table,  # float32 OCP table (OcpTable.table32)
    diff,  # float32 forward differences (OcpTable.diff32)
):
    row = 0
    for s in range(counts.size):
        n = counts[s]
        ch = np.intp(meta[0, s])
        rec0 = np.int64(meta[1, s])
        t0, cycle, step = meta[2, s], np.int32(meta[3, s]), np.int32(meta[4, s])
        chg, dis, k0, dt = meta[5, s], meta[6, s], meta[7, s], meta[8, s]
        n_reg, extra, end = meta[9, s], meta[10, s], meta[11, s]
        key = keys[ch]
        c = coef[:, s]
        is_cv = c[_CV] > _ZERO
        for j in range(n):
            rec = rec0 + j
            tau64 = (k0 + 1.0 + j) * dt - t0
            if j == n_reg and extra > 0.0:
                tau64 = end
            tau = np.float32(tau64)
            v, current, temp, q = state_at(c, tau, table, diff, K32)[:4]
            if is_cv:
                v = c[_V_SET]
            passed = q - c[_Q0]
            word = _noise_word(key, rec)
            n_v = levels[np.intp(word & _MASK16)] * noise_sd[0]
            n_i = levels[np.intp((word >> _S16) & _MASK16)] * noise_sd[1]
            n_t = levels[np.intp((word >> _S32) & _MASK16)] * noise_sd[2]
            r = out[row]
            r.record = rec
            r.t_s = t0 + tau64
            r.cycle = cycle
            r.step = step
            r.voltage_V = v + n_v
            r.current_A = current + current * n_i
            r.temperature_C = temp + n_t
            r.charge_Ah = chg + np.float64(max(passed, _ZERO))
            r.discharge_Ah = dis - np.float64(min(passed, _ZERO))
            row += 1
