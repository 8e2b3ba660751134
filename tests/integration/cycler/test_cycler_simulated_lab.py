"""The cycler driver against the physics lab (SimulatedLab + LabClock) over TCP and pty."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from voltloop.drivers.cycle_summary import CycleAssembler
from voltloop.drivers.cycler import CyclerDriver
from voltloop.drivers.interfaces import ChannelState
from voltloop.drivers.sim.clock import LabClock
from voltloop.drivers.sim.faults import FaultInjector
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.virtual_lab import CellSpec
from voltloop.drivers.testing import simulated_cycler

pytestmark = pytest.mark.integration


def _protocol(cycles: int) -> dict:
    return {
        "sample": {"name": "lfp", "capacity_mAh": 1100},
        "record": {"time_s": 20},
        "safety": {"max_voltage_V": 3.8, "min_voltage_V": 1.9},
        "method": [
            {"step": "tag", "tag": "c"},
            {"step": "constant_current", "rate_C": 2.0, "until_voltage_V": 3.6},
            {"step": "constant_voltage", "voltage_V": 3.6, "until_rate_C": 0.1},
            {"step": "open_circuit_voltage", "until_time_s": 300},
            {"step": "constant_current", "rate_C": -2.0, "until_voltage_V": 2.0},
            {"step": "open_circuit_voltage", "until_time_s": 300},
            {"step": "loop", "loop_to": "c", "cycle_count": cycles},
        ],
    }


def test_physics_lab_end_to_end_with_cycle_summaries(link) -> None:
    lab = SimulatedLab(channel_count=3, seed=1)
    for ch in range(3):
        lab.load_cell(ch, CellSpec(cell_id=f"cell-{ch}", seed=ch))
    faults = FaultInjector(seed=2, delay_s=0.5, down_s=0.05)
    experiments = {ch: str(uuid.uuid4()) for ch in range(3)}
    assemblers = {ch: CycleAssembler() for ch in experiments}
    cycles: dict[int, list] = {ch: [] for ch in experiments}
    with (
        simulated_cycler(lab, link=link, faults=faults) as server,
        CyclerDriver(server.url, timeout_s=0.5) as driver,
    ):
        for ch, exp in experiments.items():
            driver.start(ch, _protocol(cycles=3 + ch), exp, max_temperature_C=55)
        next_index = dict.fromkeys(experiments, 0)
        done: set[int] = set()
        faults.force("disconnect", match="CHAN0:DATA?")  # at least one, whatever the timing
        with LabClock(lab, factor=None, chunk_s=300.0):
            deadline = time.monotonic() + 30
            polls = 0
            while len(done) < 3:
                assert time.monotonic() < deadline
                polls += 1
                if polls % 5 == 0:
                    faults.force("disconnect", match="CHAN", after=1)
                for ch, exp in experiments.items():
                    if ch in done:
                        continue
                    status = driver.status(ch)
                    batch = driver.fetch(ch, next_index[ch], experiment_id=exp)
                    next_index[ch] = batch.next_index
                    cycles[ch] += assemblers[ch].feed(batch.records)
                    if status.state.is_final and next_index[ch] >= status.record_count:
                        cycles[ch] += assemblers[ch].finish()
                        done.add(ch)
                time.sleep(0.005)
        for ch in experiments:
            assert driver.status(ch).state is ChannelState.COMPLETED
            produced = lab.records(ch, 0, 10**9)
            assert next_index[ch] == len(produced)
            got = np.concatenate([c.records for c in cycles[ch]])
            np.testing.assert_array_equal(got, produced)
            summaries = [c.summary for c in cycles[ch]]
            assert [s.cycle for s in summaries] == list(range(3 + ch))
            for s in summaries:
                assert 0.8 < s.charge_Ah < 1.3 and 0.8 < s.discharge_Ah < 1.3
                assert 0.95 < s.coulombic_efficiency <= 1.01
                assert s.cv_time_s > 0 and s.charge_time_s > s.cv_time_s
                assert s.internal_resistance_ohm is not None
                assert 0.001 < s.internal_resistance_ohm < 0.5
                assert s.temperature_min_C <= s.temperature_mean_C <= s.temperature_max_C
    assert driver.transport.reconnects >= 1


def test_temperature_limit_is_enforced_on_the_instrument() -> None:
    """max_temperature_C travels with the schedule; the lab stops the cell when it is
    exceeded and the host reads the reason from STAT?."""
    lab = SimulatedLab(channel_count=1, seed=3)
    lab.load_cell(0, CellSpec(cell_id="hot", seed=3))
    with simulated_cycler(lab) as server, CyclerDriver(server.url, timeout_s=1.0) as driver:
        driver.start(0, _protocol(cycles=5), uuid.uuid4(), max_temperature_C=31.0)
        for _ in range(40):
            lab.advance(600)
        status = driver.status(0)
        assert status.state is ChannelState.SAFETY_STOPPED
        assert "temperature" in (status.reason or "")
        records = driver.fetch(0, 0).records
        assert records["temperature_C"].max() > 31.0 - 0.5


def test_eis_checkpoint_round_trip_through_both_served_instruments() -> None:
    """serve_lab: the cycler pauses at an EIS step, the potentiostat measures the same
    cell over its own link, the cycler resumes and completes."""
    from voltloop.drivers.eis import EisSpec
    from voltloop.drivers.potentiostat import PalmSensPotentiostat
    from voltloop.drivers.sim.serve import serve_lab

    lab = SimulatedLab(channel_count=2, seed=5)
    lab.load_cell(1, CellSpec(cell_id="eis-cell", seed=5))
    lab.attach_potentiostat(1)
    protocol = _protocol(cycles=2)
    protocol["method"].insert(
        -1,
        {
            "step": "impedance_spectroscopy",
            "amplitude_V": 0.005,
            "start_frequency_Hz": 1e4,
            "end_frequency_Hz": 1.0,
        },
    )
    # fast, but slow enough that an EIS sweep fits in the lab's checkpoint timeout (1 h virtual)
    with serve_lab(lab, link="pty", speed=3000.0) as instruments:
        assert set(instruments.urls) == {"cycler", "potentiostat"}
        cycler = CyclerDriver(instruments.urls["cycler"], timeout_s=1.0)
        potentiostat = PalmSensPotentiostat(
            instruments.urls["potentiostat"], timeout_s=2.0, analyse=False
        )
        with cycler, potentiostat:
            cycler.start(1, protocol, uuid.uuid4())
            spectra, deadline = [], time.monotonic() + 30
            while (status := cycler.status(1)).state is not ChannelState.COMPLETED:
                assert time.monotonic() < deadline and not status.state.is_final
                if status.state is ChannelState.WAITING_EIS:
                    spec = EisSpec(f_start_Hz=1e4, f_end_Hz=1.0, points_per_decade=5)
                    spectra.append(potentiostat.eis(spec))  # no Lin-KK here: fast
                    cycler.resume(1)
                time.sleep(0.01)
    assert len(spectra) == 2
    for spectrum in spectra:
        assert len(spectrum.frequencies_Hz) == 21
        assert all(z > 0 for z in spectrum.z_real_ohm)
