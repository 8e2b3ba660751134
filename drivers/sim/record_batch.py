"""The records of one clock advance: scheduled per step segment, evaluated in one batch.

While the executor advances, every phase solve leaves, per channel and step, a
*segment*: the step's closed-form coefficients (phases.COLUMNS) and where its
records fall (every ``record.time_s`` of test time, plus one at the end of the
step). Record numbers are reserved at once; the values of all segments of an
advance are evaluated afterwards in one compiled loop
(:func:`record_kernel.evaluate_records`, the closed form of :func:`phases.trajectory`
record by record), grouped by channel (segments sorted by channel, stably, so each
channel's records come out in time order and numbered consecutively), with sensor
noise, and appended to the channels' record buffers (decisions 0033, 0086, 0087).

Record values are outputs only (the cell state never reads them back). They are
evaluated in float64 and stored as float32.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from voltloop.drivers.records import SAMPLE_DTYPE
from voltloop.drivers.sim.chemistry import OcpTable
from voltloop.drivers.sim.record_buffer import RecordBuffer

if TYPE_CHECKING:
    from voltloop.drivers.sim.open_phases import PhasePlan

#: Rows of a segment's metadata.
_SEG_FIELDS = 12
_S_CH, _S_REC, _S_T0, _S_CYCLE, _S_STEP, _S_CHG, _S_DIS, _S_K0, _S_DT, _S_NREG, _S_EXTRA, _S_END = (
    range(_SEG_FIELDS)
)


class SensorNoise:
    """Standard deviations of the cycler's measurement noise.

    Draws are Gaussian through a 65,536-level quantile table indexed by 16-bit hashes
    of (channel stream, record number) (:func:`record_kernel.noise_bits`; cheaper than
    ``Generator.standard_normal``, and the same whatever the clock's chunking); the
    distribution is the normal one, quantised to 1/65,536 in probability and bounded
    at 4.3 sigma.
    """

    def __init__(
        self, voltage_V: float = 1e-4, current_rel: float = 2e-4, temperature_C: float = 0.05
    ) -> None:
        self.voltage_V = voltage_V
        self.current_rel = current_rel
        self.temperature_C = temperature_C


def _f64(x: np.ndarray) -> np.ndarray:
    """C-contiguous float64 (the compiled kernels have one signature; another dtype or
    layout would compile them again)."""
    return np.ascontiguousarray(x, dtype=np.float64)


def _bool(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.bool_)


def _filled(x: object, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A new writable C array of ``shape`` holding ``x`` (broadcast): the same array
    type as the kernels' own temporaries (a read-only broadcast view would be another
    signature)."""
    out = np.empty(shape, dtype=dtype)
    out[...] = x
    return out


@functools.cache
def _gauss_levels() -> np.ndarray:
    """Standard normal quantiles at probabilities (k + 0.5) / 65536, float32 (~30 ms
    once per process with the standard library; scipy.special would take ~0.3 s to
    import)."""
    from statistics import NormalDist

    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf((k + 0.5) / 65536) for k in range(65536)], dtype=np.float32)


class RecordBatch:
    """Record segments scheduled during one advance (see the module docstring)."""

    def __init__(self) -> None:
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []

    def schedule_plan(
        self,
        p: PhasePlan,
        chs: np.ndarray,
        first: np.ndarray,
        t0: np.ndarray,
        dt: np.ndarray,
        where: tuple[np.ndarray, ...],
        part: tuple[Any, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Schedule the records of the phase plans ``p`` of channels ``chs`` (m,) whose
        first record numbers are ``first``, test times at the phase start ``t0``, record
        intervals ``dt`` and (cycle, step, charge, discharge) at the phase start
        ``where``: all of every phase, or with ``part`` = (el, new_el, fin) the stretch
        from ``el`` (None: the start) to ``new_el`` s into each, ``fin`` where that is the
        phase's end. Returns the number of records of each channel (m,)."""
        from voltloop.drivers.sim.record_kernel import schedule_phase  # numba: imported late

        if part is None:
            whole, has_el, el, new_el, fin = True, False, t0, t0, p.seg_done[0]
        else:
            el, new_el, fin = part
            whole, has_el = False, el is not None
            el = new_el if el is None else el
        meta, coef, counts = schedule_phase(
            _f64(p.coefs), _f64(p.seg_t), _f64(p.passed), _bool(p.seg_done), _f64(chs),
            _f64(first), _f64(t0), _f64(dt), *(_f64(w) for w in where), whole, has_el,
            _f64(el), _f64(new_el), _bool(fin),
        )  # fmt: skip
        self._parts.append((meta, coef))
        return counts

    def schedule(
        self,
        coefs: np.ndarray,
        chs: np.ndarray,
        first: np.ndarray,
        t0: np.ndarray,
        dt: np.ndarray,
        end_t: np.ndarray,
        step_done: np.ndarray,
        where: tuple[np.ndarray, ...],
        start: np.ndarray | None = None,
    ) -> np.ndarray:
        """Schedule S consecutive segments of every channel in ``chs`` (m,).

        ``coefs`` (S, NC, m) are the segments' closed forms from their starts; ``first``
        (m,) the number of each channel's first record; per segment, shape (S, m):
        ``t0`` the test time at its start, ``end_t`` the time spent in it (up to the
        end of this part), ``step_done`` whether the step ended there, ``where``
        (cycle, step, charge and discharge counters at its start), ``start`` (default
        0) the time into the segment from which records are due (a segment split by
        the end of an advance is scheduled in parts, from its own start each time, so
        its records do not depend on the split); ``dt`` (m,) the record interval.
        Returns the number of records of each channel (m,).
        """
        from voltloop.drivers.sim.record_kernel import schedule_segments  # numba: late

        shape = np.shape(end_t)
        cycle, step, chg, dis = (_filled(w, shape, np.float64) for w in where)
        meta, coef, counts = schedule_segments(
            _f64(coefs), _f64(chs), _f64(first), _filled(t0, shape, np.float64), _f64(dt),
            _filled(end_t, shape, np.float64), _filled(step_done, shape, np.bool_), cycle, step,
            chg, dis, _filled(0.0 if start is None else start, shape, np.float64),
        )  # fmt: skip
        self._parts.append((meta, coef))
        return counts

    def flush(
        self,
        tables: OcpTable,
        keys: np.ndarray,
        noise_sd: SensorNoise,
        buffers: list[RecordBuffer],
    ) -> None:
        """Evaluate every scheduled record and append them to the channels' buffers."""
        if not self._parts:
            return
        meta = np.concatenate([p[0] for p in self._parts], axis=1)
        coef = np.concatenate([p[1] for p in self._parts], axis=1)
        self._parts = []
        counts = (meta[_S_NREG] + meta[_S_EXTRA]).astype(np.intp)
        # segments ordered by channel (stable: in time order within a channel), so the
        # records come out grouped by channel and numbered consecutively; the kernel
        # reads the segments through this order (no reordered copies)
        order = (counts > 0).nonzero()[0]
        order = order[np.argsort(meta[_S_CH, order].astype(np.int32), kind="stable")]
        total = int(counts[order].sum())
        if total == 0:
            return
        out = np.empty(total, dtype=SAMPLE_DTYPE)
        sd = np.array(
            [noise_sd.voltage_V, noise_sd.current_rel, noise_sd.temperature_C], dtype=np.float32
        )
        from voltloop.drivers.sim.record_kernel import evaluate_records  # numba: imported late

        # C-contiguous float64 and intp always: the compiled kernel has one signature
        evaluate_records(meta, coef, order.astype(np.intp), counts, out, keys, sd,
                         _gauss_levels(), tables.table, tables.diff)  # fmt: skip
        channels = meta[_S_CH, order].astype(np.intp)
        per = np.bincount(channels, weights=counts[order], minlength=len(buffers))
        stops = np.cumsum(per).astype(np.intp)
        for ch in per.nonzero()[0]:
            buffers[ch].append(out[stops[ch] - int(per[ch]) : stops[ch]])
