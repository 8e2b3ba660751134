"""The cycler driver against the simulated cycler over real byte streams (TCP and pty)."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from voltloop.drivers.cycler import CyclerDriver
from voltloop.drivers.errors import Disconnected, InstrumentError
from voltloop.drivers.interfaces import ChannelState, StartOutcome
from voltloop.drivers.sim.virtual_lab import InstrumentLimits
from voltloop.drivers.testing import simulated_cycler

pytestmark = pytest.mark.integration


def _ingest(driver: CyclerDriver, experiments: dict[int, str], timeout_s: float = 20.0):
    """Poll like the orchestrator: fetch from the next unstored index, resume EIS pauses,
    until every experiment has ended and all its records are stored."""
    stored = {ch: [] for ch in experiments}
    next_index = dict.fromkeys(experiments, 0)
    done: set[int] = set()
    eis_pauses = 0
    deadline = time.monotonic() + timeout_s
    while len(done) < len(experiments):
        assert time.monotonic() < deadline, f"experiments not finished: {set(experiments) - done}"
        for ch, exp in experiments.items():
            if ch in done:
                continue
            status = driver.status(ch)
            batch = driver.fetch(ch, next_index[ch], experiment_id=exp)
            stored[ch].append(batch.records)
            next_index[ch] = batch.next_index
            if status.state is ChannelState.WAITING_EIS:
                eis_pauses += 1
                driver.resume(ch)
            elif status.state.is_final and next_index[ch] >= status.record_count:
                done.add(ch)
        time.sleep(0.01)
    return {ch: np.concatenate(parts) for ch, parts in stored.items()}, eis_pauses


def test_full_protocol_on_several_channels(lab, link, make_protocol, clock_type) -> None:
    experiments = {ch: str(uuid.uuid4()) for ch in range(3)}
    with (
        simulated_cycler(lab, link=link) as server,
        CyclerDriver(server.url, timeout_s=1.0) as driver,
    ):
        assert driver.identify().model == "VLC-4"
        assert driver.self_test().passed
        assert driver.limits().channels == 4
        for ch, exp in experiments.items():
            protocol = make_protocol(cycles=2 + ch, eis=(ch == 1))
            assert driver.start(ch, protocol, exp, max_temperature_C=45) is StartOutcome.STARTED
        with clock_type(lab):
            stored, eis_pauses = _ingest(driver, experiments)
        for ch, exp in experiments.items():
            status = driver.status(ch)
            assert status.state is ChannelState.COMPLETED
            assert status.experiment_id == uuid.UUID(exp)
            assert status.cycle == 1 + ch  # cycles 0 .. cycles-1
            produced = lab.all_records(ch)
            assert len(produced) > 50
            np.testing.assert_array_equal(stored[ch], produced)
        assert eis_pauses == 3  # one EIS checkpoint per cycle on channel 1


def test_start_is_idempotent_and_refuses_busy_empty_channels(lab, link, make_protocol) -> None:
    exp, other = str(uuid.uuid4()), str(uuid.uuid4())
    with (
        simulated_cycler(lab, link=link) as server,
        CyclerDriver(server.url, timeout_s=1.0) as driver,
    ):
        assert driver.start(0, make_protocol(), exp) is StartOutcome.STARTED
        assert driver.start(0, make_protocol(), exp) is StartOutcome.ALREADY_RUNNING
        with pytest.raises(InstrumentError) as busy:
            driver.start(0, make_protocol(), other)
        assert busy.value.code == -213 and exp in str(busy.value)
        with pytest.raises(InstrumentError) as empty:
            driver.start(3, make_protocol(), other)
        assert empty.value.code == -241
        driver.stop(0)
        driver.stop(0)  # idempotent
        assert driver.status(0).state is ChannelState.STOPPED
        # the stopped experiment is not restarted by replaying its dispatch
        assert driver.start(0, make_protocol(), exp) is StartOutcome.ALREADY_RUNNING
        assert driver.start(0, make_protocol(), other) is StartOutcome.STARTED
        with pytest.raises(InstrumentError, match="waiting_eis"):
            driver.resume(0)


@pytest.mark.parametrize(
    ("change", "limit"),
    [
        ({"rate_C": 12.0}, "max_current_A"),
        ({"until_voltage_V": 5.5, "until_time_s": None}, "voltage"),
    ],
)
def test_limits_are_enforced_at_upload(lab, make_protocol, change, limit) -> None:
    protocol = make_protocol()
    protocol["method"][1].update(change)
    with simulated_cycler(lab) as server, CyclerDriver(server.url, timeout_s=1.0) as driver:
        with pytest.raises(InstrumentError, match=limit) as info:
            driver.start(0, protocol, str(uuid.uuid4()))
        assert info.value.code == -222 and "method[1] constant_current" in str(info.value)
        assert driver.status(0).state is ChannelState.IDLE


def test_step_count_and_temperature_limits(lab_type, make_protocol) -> None:
    from voltloop.drivers.sim.virtual_lab import CellSpec

    lab = lab_type(channels=1, limits=InstrumentLimits(max_steps=4, max_temperature_C=60))
    lab.load_cell(0, CellSpec(cell_id="c"))
    with simulated_cycler(lab) as server, CyclerDriver(server.url, timeout_s=1.0) as driver:
        with pytest.raises(InstrumentError, match="max_steps 4"):
            driver.start(0, make_protocol(), str(uuid.uuid4()))
        short = make_protocol()
        short["method"] = short["method"][1:3]
        with pytest.raises(InstrumentError, match="max_temperature_C 60"):
            driver.start(0, short, str(uuid.uuid4()), max_temperature_C=70)
        assert (
            driver.start(0, short, str(uuid.uuid4()), max_temperature_C=55) is StartOutcome.STARTED
        )


def test_unreachable_urls_fail_fast_with_a_typed_error(tmp_path) -> None:
    for url in ("socket://127.0.0.1:1", str(tmp_path / "no-such-tty")):
        driver = CyclerDriver(url, timeout_s=0.5, retries=1)
        began = time.monotonic()
        with pytest.raises(Disconnected):
            driver.identify()
        assert time.monotonic() - began < 5.0


def test_pty_url_is_a_stable_symlink(lab) -> None:
    with simulated_cycler(lab, link="pty") as server:
        import os

        assert os.path.islink(server.url)
        assert os.readlink(server.url).startswith("/dev/pts/")


def test_testing_helper_serves_a_ready_physics_lab() -> None:
    """Users' own tests: a lab with cells and a running clock, one context manager."""
    with simulated_cycler(channels=2, link="pty", speed="max") as server:
        with CyclerDriver(server.url, timeout_s=1.0) as driver:
            assert [driver.status(ch).state for ch in range(2)] == [ChannelState.IDLE] * 2
            assert driver.status(0).cell_id == "sim-cell-00"
        assert server.lab.channel_count == 2


def test_a_new_tcp_host_takes_over_from_an_abandoned_connection(lab) -> None:
    with simulated_cycler(lab) as server:
        first = CyclerDriver(server.url, timeout_s=1.0)
        assert first.identify().maker == "VOLTLOOP"  # connected, then abandoned (not closed)
        with CyclerDriver(server.url, timeout_s=1.0) as second:
            assert second.status(0).state is ChannelState.IDLE
        # the first host notices its link is gone and reconnects by itself
        assert first.status(1).state is ChannelState.IDLE
        assert first.transport.reconnects == 1
        first.close()
