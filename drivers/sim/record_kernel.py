# ruff: noqa: N803, N806 - names follow phases.COLUMNS and the record fields
"""Compiled evaluation of an advance's records (decisions 0086, 0087).

:func:`evaluate_records` computes every record of a group of segments: the
closed-form trajectory of :func:`phases.trajectory` at each record time, in float64,
and the sensor noise of :func:`noise_bits`, written straight into the output rows.
It works segment by segment in two loops:

- :func:`_segment_values` evaluates the closed form (:func:`closed_form.state_parts`
  with ``exp`` as :func:`closed_form.exp_poly`) at the segment's regular record times
  into a scratch block. The loop has no calls and no loads from arrays it might
  write, so LLVM vectorises it (AVX-512 / AVX2: 4-8 records at a time); the trip
  count is rounded up to a multiple of 16 so that no record falls into the scalar
  remainder loop (the extra rows are scratch, never read).
- a scalar loop adds the two electrode potentials (table lookups: gathers from an
  array the compiler cannot prove read-only would stop the vectorisation), the
  noise, and writes the rows.

Records agree with the closed form evaluated by numpy in float64 to the last bit of
their float32 fields but in rare ties (tests/unit/sim/test_record_kernel.py).

Where the records of a phase fall — per segment, the first record number, the grid
index of the first regular record, how many, and whether one more closes the step —
is worked out by :func:`schedule_phase` and :func:`schedule_segments`
(``record_batch.RecordBatch.schedule_plan`` / ``schedule``), also compiled: in numpy
it was ~40 whole-array calls per phase.

Compiled with numba and cached (``compiled.py`` says where); ``make`` compiles these
kernels ahead.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from voltloop.drivers.sim.closed_form import K64, column_tuple, electrode, state_parts
from voltloop.drivers.sim.phases import NC, C

_CV, _V_SET, _Q0, _OFF_P, _OFF_N = C["cv"], C["v_set"], C["q0"], C["off_p"], C["off_n"]
#: Rows of the scratch block of :func:`_segment_values`.
_VALUES = 6
#: Regular records are evaluated in blocks of this many (see the module docstring).
_BLOCK = 16
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


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _segment_values(c, tau0, dt, n, values):  # noqa: ANN001, ANN202 - compiled
    """The closed form of coefficient column ``c`` at phase times tau0 + j dt, j < n,
    into ``values[:, j]``: the voltage without the electrode potentials (h + I r0 +
    v1 + v2), current, temperature, charge, and the positive and negative electrode
    stoichiometries. Vectorised by LLVM: no calls, and the coefficients are read into
    a tuple first (loads from ``c`` inside the loop might alias the stores)."""
    cs = column_tuple(c, NC)
    for j in range(n):
        current, temp, q, v1, v2, h, r0, x, y, _ = state_parts(cs, tau0 + j * dt, K64, True)
        values[0, j] = h + current * r0 + v1 + v2
        values[1, j] = current
        values[2, j] = temp
        values[3, j] = q
        values[4, j] = y
        values[5, j] = x


@njit(cache=True, error_model="numpy")
def evaluate_records(  # noqa: ANN201, PLR0913 - compiled
    meta,  # (12, m) float64: record_batch._S_* rows
    coef,  # (NC, m) float64
    order,  # (k,) intp: the segments to evaluate, in the order their rows are written
    counts,  # (m,) intp records of each segment
    out,  # (sum(counts[order]),) SAMPLE_DTYPE
    keys,  # (channels,) uint64 noise stream keys
    noise_sd,  # (3,) float32: voltage V, current (relative), temperature degC
    levels,  # (65536,) float32 Gaussian quantiles
    table,  # OCP table (OcpTable.table)
    diff,  # its forward differences (OcpTable.diff)
):
    widest = 1
    for s in order:
        widest = max(widest, counts[s])
    values = np.empty((_VALUES, widest + 2 * _BLOCK))
    row = 0
    for s in order:
        n = counts[s]
        ch = np.intp(meta[0, s])
        rec0 = np.int64(meta[1, s])
        t0, cycle, step = meta[2, s], np.int32(meta[3, s]), np.int32(meta[4, s])
        chg, dis, k0, dt = meta[5, s], meta[6, s], meta[7, s], meta[8, s]
        n_reg, end = min(np.intp(meta[9, s]), n), meta[11, s]
        key = keys[ch]
        c = coef[:, s]
        tau0 = (k0 + 1.0) * dt - t0  # the first regular record's time into the segment
        _segment_values(c, tau0, dt, (n_reg + _BLOCK - 1) // _BLOCK * _BLOCK, values)
        if n > n_reg:  # the record at the step's end
            _segment_values(c, end, 0.0, 1, values[:, n_reg:])
        is_cv = c[_CV] > 0.0
        v_set, q0, off_p, off_n = c[_V_SET], c[_Q0], c[_OFF_P], c[_OFF_N]
        for j in range(n):
            rec = rec0 + j
            tau = end if j >= n_reg else (k0 + 1.0 + j) * dt - t0
            if is_cv:
                v = v_set
            else:
                u_p, _ = electrode(values[4, j], off_p, table, diff, K64)
                u_n, _ = electrode(values[5, j], off_n, table, diff, K64)
                v = u_p - u_n + values[0, j]
            current = values[1, j]
            passed = values[3, j] - q0
            word = _noise_word(key, rec)
            n_v = levels[np.intp(word & _MASK16)] * noise_sd[0]
            n_i = levels[np.intp((word >> _S16) & _MASK16)] * noise_sd[1]
            n_t = levels[np.intp((word >> _S32) & _MASK16)] * noise_sd[2]
            r = out[row]
            r.record = rec
            r.t_s = t0 + tau
            r.cycle = cycle
            r.step = step
            r.voltage_V = v + n_v
            r.current_A = current + current * n_i
            r.temperature_C = values[2, j] + n_t
            r.charge_Ah = chg + max(passed, 0.0)
            r.discharge_Ah = dis - min(passed, 0.0)
            row += 1


@njit(cache=True, error_model="numpy")
def schedule_segments(  # noqa: ANN201, PLR0913 - compiled
    coefs,  # (S, NC, m) the segments' closed forms
    chs,  # (m,) channel numbers
    first,  # (m,) number of each channel's first record
    t0,  # (S, m) test time at each segment's start
    dt,  # (m,) record intervals
    end_t,  # (S, m) time spent in each segment (up to the end of this part)
    step_done,  # (S, m) bool: the step ended there
    cycle,  # (S, m) cycle at each segment's start
    step,  # (S, m) step at each segment's start
    chg,  # (S, m) charge counter at each segment's start
    dis,  # (S, m) discharge counter at each segment's start
    start,  # (S, m) time into the segment from which records are due
):
    """``record_batch.RecordBatch.schedule``: the (12, S*m) segment metadata
    (``record_batch._S_*`` rows), the (NC, S*m) coefficients in the same column order
    (segment-major) and the number of records of each channel (m,)."""
    n_seg, nc, m = coefs.shape
    meta = np.empty((12, n_seg * m))
    coef = np.empty((nc, n_seg * m))
    per = np.zeros(m, dtype=np.int64)
    for j in range(m):
        rec = first[j]
        for s in range(n_seg):
            col = s * m + j
            k0 = np.floor((t0[s, j] + start[s, j]) / dt[j] + 1e-9)
            stop = t0[s, j] + end_t[s, j]
            k1 = np.floor(stop / dt[j] + 1e-9)
            n_reg = k1 - k0
            on_grid = abs(stop - k1 * dt[j]) < 1e-6
            extra = 1.0 if step_done[s, j] and not (on_grid and n_reg > 0.0) else 0.0
            meta[0, col] = chs[j]
            meta[1, col] = rec
            meta[2, col] = t0[s, j]
            meta[3, col] = cycle[s, j]
            meta[4, col] = step[s, j]
            meta[5, col] = chg[s, j]
            meta[6, col] = dis[s, j]
            meta[7, col] = k0
            meta[8, col] = dt[j]
            meta[9, col] = n_reg
            meta[10, col] = extra
            meta[11, col] = end_t[s, j]
            rec += n_reg + extra
            per[j] += np.int64(n_reg + extra)
            for r in range(nc):
                coef[r, col] = coefs[s, r, j]
    return meta, coef, per


@njit(cache=True, error_model="numpy")
def schedule_phase(  # noqa: ANN201, PLR0913 - compiled
    coefs,  # (S, NC, m)
    seg_t,  # (S, m) segment durations
    passed,  # (S, m) charge passed in each segment (+ charge, - discharge), Ah
    seg_done,  # (S, m) bool: the step ends with the segment
    chs,  # (m,)
    first,  # (m,)
    t0,  # (m,) test time at the phase start
    dt,  # (m,)
    cycle,  # (m,) cycle, step, charge and discharge counters at the phase start
    step,
    chg,
    dis,
    whole,  # all of every phase (then el, new_el and fin are not read)
    has_el,  # el is given (else the part starts at each phase's start)
    el,  # (m,) time into the phases where this part starts
    new_el,  # (m,) ... and ends
    fin,  # (m,) bool: new_el is the phase's end
):
    """``record_batch.RecordBatch.schedule_plan``: the segments of a phase plan (all of
    it, or the part from ``el`` to ``new_el``), for :func:`schedule_segments`."""
    n_seg, m = seg_t.shape
    t0s, upto, start = np.empty((n_seg, m)), np.empty((n_seg, m)), np.zeros((n_seg, m))
    ends = np.empty((n_seg, m), dtype=np.bool_)
    cycles, steps = np.empty((n_seg, m)), np.empty((n_seg, m))
    c_chg, c_dis = np.empty((n_seg, m)), np.empty((n_seg, m))
    for j in range(m):
        total = 0.0
        q_chg, q_dis = chg[j], dis[j]
        for s in range(n_seg):
            total += seg_t[s, j]
            offset = total - seg_t[s, j]  # as numpy's cumsum(seg_t) - seg_t
            t0s[s, j] = t0[j] + offset
            cycles[s, j] = cycle[j]
            steps[s, j] = step[j] + s
            c_chg[s, j], c_dis[s, j] = q_chg, q_dis
            gained = max(passed[s, j], 0.0)
            q_chg += gained
            q_dis += gained - passed[s, j]
            if whole:
                upto[s, j], ends[s, j] = seg_t[s, j], seg_done[s, j]
                continue
            stop = offset + seg_t[s, j]
            done = seg_done[s, j] and (fin[j] or stop <= new_el[j])
            if has_el:
                done = done and stop > el[j]
                start[s, j] = min(max(el[j] - offset, 0.0), seg_t[s, j])
            else:
                start[s, j] = min(max(0.0 - offset, 0.0), seg_t[s, j])
            upto[s, j] = min(max(new_el[j] - offset, 0.0), seg_t[s, j])
            ends[s, j] = done
    return schedule_segments(coefs, chs, first, t0s, dt, upto, ends, cycles, steps, c_chg,
                             c_dis, start)  # fmt: skip
