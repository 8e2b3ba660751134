"""The compiled phase solve against the numpy solve it compiles (decision 0086).

Every phase of a few simulated hours — one protocol on many channels (chained CC
steps, CV holds, rests, cut-offs refined on the closed form), many protocols with EIS
pauses, and cells whose temperature limit trips mid-step — is solved by both
``phases.NumpyPhase`` and ``phase_kernel.solve_phase`` from the same inputs; every
output must agree to float rounding (the C library's ``exp`` and numpy's differ in
the last bit, and two sums run in another order)."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.drivers.sim import executor, phases
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.phase_kernel import solve_phase
from voltloop.drivers.sim.reference_protocols import attia_protocol, attia_space
from voltloop.drivers.sim.virtual_lab import CellSpec, InstrumentLimits

OUTPUTS = ("coefs", "t_max", "active", "seg_t", "seg_done", "end_t", "code", "seg_end",
           "age_inc", "aged", "aged_end", "ageing", "end", "passed")  # fmt: skip


def captured(lab: SimulatedLab, advances: list[float]) -> list[tuple[tuple, phases.NumpyPhase]]:
    """Every phase the lab solves during ``advances``, solved by numpy: its inputs as the
    kernel takes them, and the numpy result."""
    seen = []

    class Capture(phases.NumpyPhase):
        def __init__(self, bank, sel, cv, i_set, v_set, v_cut, i_cut, t_avail, t_left,
                     limits, valid=None) -> None:  # fmt: skip
            data = bank.data[:, sel].copy()
            super().__init__(bank, sel, cv, i_set, v_set, v_cut, i_cut, t_avail, t_left,
                             limits, valid)  # fmt: skip
            args = phases.kernel_arguments(data, cv, i_set, v_set, v_cut, i_cut, t_avail,
                                           t_left, limits, valid, bank.tables)  # fmt: skip
            seen.append((args, self))

    patch = pytest.MonkeyPatch()
    patch.setattr(executor, "Phase", Capture)
    try:
        for dt in advances:
            lab.advance(dt)
    finally:
        patch.undo()
    return seen


def one_protocol_many_channels() -> SimulatedLab:
    lab = SimulatedLab(24, seed=7, keep_records=False)
    protocol = attia_protocol(4.8, 5.2, 5.2, cycles=50)
    for ch in range(24):
        lab.load_cell(ch, CellSpec(cell_id=f"a{ch}", seed=ch))
        lab.start(ch, protocol, f"a{ch}")
    return lab


def many_protocols_with_eis() -> SimulatedLab:
    space = attia_space()
    lab = SimulatedLab(12, seed=3, eis_timeout_s=60.0, keep_records=False)
    for ch in range(12):
        cc1, cc2, cc3 = space[(ch * 19) % len(space)][:3]
        lab.load_cell(ch, CellSpec(cell_id=f"b{ch}", seed=ch))
        lab.start(ch, attia_protocol(cc1, cc2, cc3, cycles=50, eis_every=2), f"b{ch}")
    return lab


def hot_cells() -> SimulatedLab:
    """Fast charging in a warm chamber against a low temperature limit: safety stops."""
    lab = SimulatedLab(6, 5, InstrumentLimits(max_temperature_C=42.0), keep_records=False)
    for ch in range(6):
        lab.load_cell(ch, CellSpec(cell_id=f"c{ch}", seed=ch, chamber_temperature_C=25.0 + 2 * ch))
        lab.start(ch, attia_protocol(8.0, 7.0, 6.0, cycles=20), f"c{ch}")
    return lab


@pytest.mark.parametrize(
    "make_lab", [one_protocol_many_channels, many_protocols_with_eis, hot_cells]
)
def test_the_kernel_solves_every_phase_as_numpy_does(make_lab) -> None:
    seen = captured(make_lab(), [1.5 * 3600.0] * 6)
    assert len(seen) > 20
    chained = 0
    for args, ref in seen:
        got = dict(zip(OUTPUTS, solve_phase(*args), strict=True))
        chained += ref.coefs.shape[0] > 1
        for name in OUTPUTS:
            if name == "active":
                continue
            want = np.asarray(getattr(ref, name))
            value = got[name]
            assert value.shape == want.shape, name
            if want.dtype.kind in "bi":
                np.testing.assert_array_equal(value, want, err_msg=name)
            else:
                np.testing.assert_allclose(value, want, rtol=1e-9, atol=1e-12, err_msg=name)
    assert chained > 0


def test_the_lab_uses_the_kernel_and_stops_hot_cells_as_numpy_does() -> None:
    """Whole runs: the same cycles, states and stop reasons with either solve."""
    runs = []
    for phase_class in (phases.Phase, phases.NumpyPhase):
        patch = pytest.MonkeyPatch()
        patch.setattr(executor, "Phase", phase_class)
        try:
            lab = hot_cells()
            for _ in range(8):
                lab.advance(1.5 * 3600.0)
        finally:
            patch.undo()
        runs.append(lab)
    kernel, numpy_run = runs
    np.testing.assert_array_equal(kernel.executor.cycle, numpy_run.executor.cycle)
    np.testing.assert_array_equal(kernel.executor.run, numpy_run.executor.run)
    np.testing.assert_allclose(kernel.bank.data, numpy_run.bank.data, rtol=1e-9, atol=1e-12)
    assert (kernel.executor.run == executor.RunState.SAFETY_STOPPED).any()
