"""The compiled record evaluation against the closed form it compiles.

The reference below is the vectorised numpy evaluation (``phases.trajectory`` in
float64 on every record, numpy's SplitMix64 noise words): the kernel must give the
same records, bit for bit but where a float64 value sits within its last bits of a
float32 rounding boundary (the kernel's polynomial ``exp`` and numpy's differ there,
and the voltage is summed in another order)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from voltloop.drivers.records import SAMPLE_DTYPE
from voltloop.drivers.sim import record_kernel
from voltloop.drivers.sim.closed_form import exp_poly
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.phases import C, trajectory
from voltloop.drivers.sim.record_batch import _gauss_levels
from voltloop.drivers.sim.record_kernel import noise_bits
from voltloop.drivers.sim.reference_protocols import attia_protocol
from voltloop.drivers.sim.virtual_lab import CellSpec

_GOLDEN, _MIX1, _MIX2 = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xBF58476D1CE4E5B9),
    np.uint64(0x94D049BB133111EB),
)


def numpy_noise_bits(keys: np.ndarray, records: np.ndarray) -> np.ndarray:
    x = records.astype(np.uint64) + np.uint64(1)
    x *= _GOLDEN
    x += keys
    x ^= x >> np.uint64(30)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    return x.view(np.uint16).reshape(-1, 4)[:, :3].T


@njit
def _exp_all(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = exp_poly(x[i])
    return out


def numpy_records(tables, meta, coef, counts, keys, sd, levels) -> np.ndarray:
    out = np.empty(int(counts.sum()), dtype=SAMPLE_DTYPE)
    seg = np.repeat(meta, counts, axis=1)
    cr = np.repeat(coef, counts, axis=1)
    j = np.arange(out.size) - np.repeat(np.cumsum(counts) - counts, counts)
    rec_no = seg[1].astype(np.int64) + j
    tau = (seg[7] + 1.0 + j) * seg[8] - seg[2]
    last_extra = (j == seg[9]) & (seg[10] > 0)
    tau[last_extra] = seg[11][last_extra]
    v, current, temp, q, *_ = trajectory(tables, cr, tau)
    cv = cr[C["cv"]] > 0
    v[cv] = cr[C["v_set"]][cv]
    passed = q - cr[C["q0"]]
    noise = levels.take(numpy_noise_bits(keys[seg[0].astype(np.intp)], rec_no))
    noise *= sd[:, None]
    out["record"], out["t_s"], out["cycle"], out["step"] = rec_no, seg[2] + tau, seg[3], seg[4]
    out["voltage_V"] = v + noise[0]
    out["current_A"] = current + current * noise[1]
    out["temperature_C"] = temp + noise[2]
    out["charge_Ah"] = seg[5] + np.maximum(passed, 0.0)
    out["discharge_Ah"] = seg[6] - np.minimum(passed, 0.0)
    return out


@pytest.fixture(scope="module")
def batches() -> tuple[object, list[tuple]]:
    """The kernel's inputs and outputs over 12 h of 6 cells on three Attia protocols (CC
    and CV steps, rests, discharge, EIS pauses)."""
    seen = []
    compiled = record_kernel.evaluate_records
    patch = pytest.MonkeyPatch()

    def spy(meta, coef, order, counts, out, keys, sd, levels, table, diff):
        compiled(meta, coef, order, counts, out, keys, sd, levels, table, diff)
        # the segments in the order the kernel wrote them
        seen.append((meta[:, order], coef[:, order], counts[order], out.copy(), keys.copy(), sd))

    patch.setattr(record_kernel, "evaluate_records", spy)
    try:
        lab = SimulatedLab(6, seed=5, eis_timeout_s=60.0)
        for ch, (cc1, cc2, cc3) in enumerate([(8, 6, 4.8), (3.6, 7, 5.6), (6, 3.6, 5.6)] * 2):
            lab.load_cell(ch, CellSpec(cell_id=f"k{ch}", seed=ch))
            protocol = attia_protocol(cc1, cc2, cc3, cycles=40, eis_every=3, record_interval_s=20.0)
            lab.start(ch, protocol, f"k{ch}")
        for _ in range(8):
            lab.advance(1.5 * 3600.0)
    finally:
        patch.undo()
    assert seen
    return lab.bank.tables, seen


def test_records_match_the_numpy_closed_form(batches) -> None:
    tables, seen = batches
    levels = _gauss_levels()
    rows = 0
    floats = ("voltage_V", "current_A", "temperature_C", "charge_Ah", "discharge_Ah")
    differ = dict.fromkeys(floats, 0)
    for meta, coef, counts, got, keys, sd in seen:
        want = numpy_records(tables, meta, coef, counts, keys, sd, levels)
        rows += got.size
        for field in ("record", "t_s", "cycle", "step"):
            np.testing.assert_array_equal(got[field], want[field], err_msg=field)
        for field in floats:
            ulps = np.abs(got[field].view(np.int32) - want[field].view(np.int32))
            assert ulps.max() <= 1, (field, ulps.max())
            differ[field] += np.count_nonzero(ulps)
    assert rows > 10_000
    assert all(n <= 1e-3 * rows for n in differ.values()), differ


def test_noise_words_match_numpy_splitmix() -> None:
    keys = np.array([0, 7, 2**63 + 5, 2**64 - 1], dtype=np.uint64).repeat(2_500)
    records = np.tile(np.arange(2_500, dtype=np.int64) * 977, 4)
    np.testing.assert_array_equal(noise_bits(keys, records), numpy_noise_bits(keys, records))


def test_compiled_ahead_for_the_types_the_simulator_passes(batches) -> None:
    """``make`` compiles the kernels once (compile_ahead); a simulation that passed other
    array types would compile them again, on its first advance."""
    from voltloop.drivers.sim import compiled, phase_kernel

    compiled.compile_ahead()
    assert len(record_kernel.evaluate_records.signatures) == 1
    assert len(record_kernel.schedule_phase.signatures) == 1
    assert len(record_kernel.schedule_segments.signatures) == 1
    assert len(phase_kernel.solve_phase.signatures) == 1


def test_polynomial_exp_is_accurate_to_a_few_float64_ulps() -> None:
    """The records' ``exp`` (closed_form.exp_poly, vectorisable) against numpy's, over
    the whole range where exp is a normal float64 and densely where the closed form
    evaluates it (decay constants times phase times, Arrhenius and SOC factors)."""
    rng = np.random.default_rng(11)
    x = np.concatenate([np.linspace(-708.0, 709.0, 200_001), rng.uniform(-40.0, 5.0, 200_000)])
    got = _exp_all(x)
    rel = np.abs(got / np.exp(x) - 1.0)
    assert rel.max() < 1e-14, rel.max()
    clamped = _exp_all(np.array([-1e4, 1e4]))  # clamped to [-708, 709], not 0 or inf
    np.testing.assert_array_equal(clamped, _exp_all(np.array([-708.0, 709.0])))


def test_segment_loop_is_vectorised() -> None:
    """The loop over a segment's records compiles to vector instructions (SSE2 at
    least, on x86-64) with no call to the C library's ``exp`` (LLVM would vectorise
    around it and call it once per lane): a call or a load the compiler cannot hoist
    would make it about twice as slow per record."""
    import re

    from numba import njit

    from voltloop.drivers.sim.phases import NC

    kernel = record_kernel._segment_values
    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = njit(**options)(kernel.py_func)  # compiled here, so its IR can be read
    fresh(np.zeros((NC, 3))[:, 1], 0.0, 10.0, 16, np.empty((6, 16)))
    llvm_ir = next(iter(fresh.inspect_llvm().values()))
    assert re.search(r"<\d+ x double>", llvm_ir)
    assert not re.search(r"@(llvm\.)?exp", llvm_ir)
