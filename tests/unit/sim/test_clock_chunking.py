"""The simulated cells follow the same trajectory however the clock chunks time
(decision 0036): per-cycle capacities, cell state and records (sensor noise included)
agree to float rounding."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.record_batch import SensorNoise
from voltloop.drivers.sim.record_kernel import noise_bits
from voltloop.drivers.sim.reference_protocols import attia_protocol
from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState

TOTAL_S = 14 * 3600.0
LATE_START_S = 1234.5  # channel 1 starts later: its steps never line up with channel 0's


def _run(chunks: list[float]) -> SimulatedLab:
    """Two cells (an Attia protocol with EIS checkpoints that time out on the
    instrument after 600 s) advanced by ``chunks`` (s) until ``TOTAL_S``."""
    lab = SimulatedLab(2, seed=3, eis_timeout_s=600.0)  # default sensor noise
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


def _advance_to(lab: SimulatedLab, now: float, until: float, dt: float) -> float:
    while now < until:
        step = min(dt, until - now)
        lab.advance(step)
        now += step
    return now


@pytest.mark.parametrize("dt", [97.0, 2500.0])
def test_host_actions_mid_phase_land_at_the_same_state(dt: float) -> None:
    """An EIS resume and a host stop in the middle of a planned phase end it where it
    stands (state, ageing, counters), whatever the chunks before."""
    protocol = attia_protocol(8.0, 4.0, 4.4, cycles=40, eis_every=20, record_interval_s=10.0)
    labs = []
    for chunk in (20000.0, dt):
        lab = SimulatedLab(1, seed=3, eis_timeout_s=1e12)
        lab.load_cell(0, CellSpec(cell_id="c", seed=5))
        lab.start(0, protocol, "a")
        now = _advance_to(lab, 0.0, 5000.0, chunk)
        assert lab.status(0).state == ChannelState.WAITING_EIS  # waiting since cycle 0
        lab.resume(0)  # the wait ends at 5000 s, mid-phase
        now = _advance_to(lab, now, 20000.0, chunk)
        assert lab.status(0).state == ChannelState.RUNNING
        lab.stop(0)  # in the middle of some step
        assert lab.status(0).t_s == pytest.approx(20000.0, abs=1e-6)
        assert lab.bank.throughput[0] > 3.0  # the stopped phase's charge is counted
        labs.append(lab)
    a, b = labs
    assert a.status(0).t_s == pytest.approx(b.status(0).t_s, rel=1e-12)
    assert a.status(0).step == b.status(0).step and a.status(0).cycle == b.status(0).cycle
    np.testing.assert_allclose(a.capacities(0), b.capacities(0), rtol=1e-9)
    for field in ("q", "temp", "q_sei", "q_pl", "n_li", "c_neg", "r_film", "throughput"):
        assert getattr(a.bank, field)[0] == pytest.approx(getattr(b.bank, field)[0], rel=1e-9)
    ra, rb = a.records(0, 0, 10**6), b.records(0, 0, 10**6)
    np.testing.assert_allclose(rb["t_s"], ra["t_s"], atol=1e-6)
    np.testing.assert_allclose(rb["voltage_V"], ra["voltage_V"], atol=1e-5)


def test_sensor_noise_is_a_function_of_the_record() -> None:
    keys = np.full(50_000, np.uint64(7))
    bits = noise_bits(keys, np.arange(50_000))
    assert bits.shape == (3, 50_000)
    np.testing.assert_array_equal(noise_bits(keys[:10], np.arange(10)), bits[:, :10])
    assert abs(bits.mean() / 65535 - 0.5) < 0.01  # uniform, independent lanes
    assert np.abs(np.corrcoef(bits.astype(float))[0, 1:]).max() < 0.02
    other = noise_bits(np.full(10, np.uint64(8)), np.arange(10))
    assert not np.array_equal(other, bits[:, :10])  # another experiment, other noise
    noisy = SensorNoise()
    assert noisy.voltage_V == 1e-4
