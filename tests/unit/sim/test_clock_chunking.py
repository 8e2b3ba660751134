"""The simulated cells follow the same trajectory however the clock chunks time
(decision 0036): per-cycle capacities, cell state and records agree to float rounding."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.record_batch import SensorNoise
from voltloop.drivers.sim.reference_protocols import attia_protocol
from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState

TOTAL_S = 14 * 3600.0
LATE_START_S = 1234.5  # channel 1 starts later: its steps never line up with channel 0's


def _run(chunks: list[float]) -> SimulatedLab:
    """Two cells (an Attia protocol with EIS checkpoints that time out on the
    instrument after 600 s) advanced by ``chunks`` (s) until ``TOTAL_S``."""
    lab = SimulatedLab(2, seed=3, eis_timeout_s=600.0, noise=SensorNoise(0.0, 0.0, 0.0))
    protocol = attia_protocol(8.0, 4.0, 4.4, cycles=40, eis_every=3, record_interval_s=10.0)
    for ch in range(2):
        lab.load_cell(ch, CellSpec(cell_id=f"c{ch}", seed=5 + ch, chamber_temperature_C=30.0))
    lab.start(0, protocol, "a")
    started, now = False, 0.0
    for dt in chunks:
        if not started and now + dt >= LATE_START_S:
            dt = LATE_START_S - now
            started = True
        dt = min(dt, TOTAL_S - now)
        lab.advance(dt)
        now += dt
        if now == LATE_START_S:
            lab.start(1, protocol, "b")
        if now >= TOTAL_S:
            return lab
    raise AssertionError("chunks shorter than the run")


def _chunkings() -> dict[str, list[float]]:
    rng = np.random.default_rng(11)
    return {
        "4 h": [14400.0] * 20,
        "1000 s": [1000.0] * 60,
        "137 s": [137.0] * 400,
        "random": list(rng.uniform(0.5, 3000.0, 200)) + [14400.0] * 10,
    }


@pytest.fixture(scope="module")
def runs() -> dict[str, SimulatedLab]:
    return {name: _run(chunks) for name, chunks in _chunkings().items()}


def test_capacities_do_not_depend_on_the_chunking(runs: dict[str, SimulatedLab]) -> None:
    ref = runs["4 h"]
    for ch in range(2):
        caps = ref.capacities(ch)
        assert caps.size >= 7 and ref.status(ch).state == ChannelState.RUNNING
        assert ref.skipped_eis(ch)  # EIS waits ran (timed out on the instrument)
        for name, lab in runs.items():
            other = lab.capacities(ch)
            assert other.size == caps.size, name
            np.testing.assert_allclose(other, caps, rtol=1e-9, err_msg=name)
            for field in ("q", "temp", "q_sei", "q_pl", "n_li", "c_neg", "r_film"):
                a, b = getattr(lab.bank, field)[ch], getattr(ref.bank, field)[ch]
                assert a == pytest.approx(b, rel=1e-9, abs=1e-12), (name, field)


def test_records_do_not_depend_on_the_chunking(runs: dict[str, SimulatedLab]) -> None:
    ref = runs["4 h"]
    for ch in range(2):
        a = ref.records(ch, 0, 10**7)
        assert a.size > 1000 and np.all(np.diff(a["t_s"]) >= 0)
        for name, lab in runs.items():
            b = lab.records(ch, 0, 10**7)
            assert b.size == a.size, name
            np.testing.assert_array_equal(b["record"], a["record"])
            np.testing.assert_array_equal(b["step"], a["step"])
            np.testing.assert_array_equal(b["cycle"], a["cycle"])
            np.testing.assert_allclose(b["t_s"], a["t_s"], atol=1e-6, err_msg=name)
            for field in ("voltage_V", "current_A", "temperature_C", "discharge_Ah"):
                np.testing.assert_allclose(b[field], a[field], atol=1e-5, err_msg=name)
        status = [lab.status(ch).t_s for lab in runs.values()]
        assert status == pytest.approx([TOTAL_S - (ch * LATE_START_S)] * len(runs))
