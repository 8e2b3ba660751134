"""Every injected fault kind over TCP and pty: the driver recovers or raises its typed
error within its timeout, and records fetched across faults equal what the instrument
produced — none lost, none doubled."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from voltloop.drivers.cycler import CyclerDriver
from voltloop.drivers.errors import InstrumentCommunicationError, TransportTimeout
from voltloop.drivers.interfaces import ChannelState, StartOutcome
from voltloop.drivers.sim.faults import LAB_FAULTS, FaultInjector, FaultKind, FaultRates
from voltloop.drivers.testing import simulated_cycler

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.3
#: One driver call: (1 + retries) × (resync + write + read) + backoff + reconnects.
CALL_BOUND_S = 3 * (3 * TIMEOUT_S) + 1.5


def _injector(**kw) -> FaultInjector:
    return FaultInjector(seed=1, delay_s=0.5, down_s=0.1, **kw)


def _driver(url: str, **kw) -> CyclerDriver:
    options = {"timeout_s": TIMEOUT_S, "retries": 2}
    options.update(kw)
    driver = CyclerDriver(url, **options)
    driver.transport.backoff_s = 0.01
    return driver


def _running_experiment(lab, driver, make_protocol, channel=0, record_s=30.0, cycles=50):
    exp = str(uuid.uuid4())
    assert (
        driver.start(channel, make_protocol(cycles=cycles, record_s=record_s), exp)
        is StartOutcome.STARTED
    )
    lab.advance(20_000)
    return exp


def _timed(fn, *args, **kwargs):
    began = time.monotonic()
    result = fn(*args, **kwargs)
    elapsed = time.monotonic() - began
    assert elapsed < CALL_BOUND_S, f"{fn.__name__} took {elapsed:.2f} s"
    return result


@pytest.mark.parametrize("kind", ["delay", "drop", "garble", "partial"])
def test_wire_faults_on_queries_are_recovered(lab, link, make_protocol, kind) -> None:
    faults = _injector()
    with simulated_cycler(lab, link=link, faults=faults) as server, _driver(server.url) as driver:
        exp = _running_experiment(lab, driver, make_protocol)
        faults.force(kind, match="CHAN0:STAT?")
        status = _timed(driver.status, 0)
        assert status.experiment_id == uuid.UUID(exp) and status.state is ChannelState.RUNNING
        faults.force(kind, match="CHAN0:DATA?")
        batch = _timed(driver.fetch, 0, 0, experiment_id=exp)
        np.testing.assert_array_equal(batch.records, lab.all_records(0))
        assert faults.counts[FaultKind(kind)] == 2
        # the link is clean again: no stale reply is taken for the next answer
        assert driver.identify().maker == "VOLTLOOP"
        assert driver.status(0).record_count == len(batch.records)


@pytest.mark.parametrize("kind", ["delay", "drop", "garble", "partial"])
def test_without_retries_a_typed_error_comes_within_the_timeout(lab, link, kind) -> None:
    faults = _injector()
    with (
        simulated_cycler(lab, link=link, faults=faults) as server,
        _driver(server.url, retries=0) as driver,
    ):
        driver.identify()
        faults.force(kind, match="*IDN?")
        began = time.monotonic()
        with pytest.raises(InstrumentCommunicationError):
            driver.identify()
        assert time.monotonic() - began < TIMEOUT_S + 0.3
        assert driver.limits().channels == 4  # and the next call works


def test_disconnect_mid_fetch_loses_and_doubles_nothing(lab, link, make_protocol) -> None:
    faults = _injector()
    with simulated_cycler(lab, link=link, faults=faults) as server, _driver(server.url) as driver:
        server.max_batch = 200
        exp = _running_experiment(lab, driver, make_protocol, record_s=5.0)
        produced = lab.all_records(0)
        assert len(produced) > 1000
        faults.force("disconnect", match="CHAN0:DATA?", after=2)
        batch = _timed(driver.fetch, 0, 0, experiment_id=exp)
        np.testing.assert_array_equal(batch.records, produced)
        assert driver.transport.reconnects >= 1 and server.sessions >= 2


def test_host_loop_across_disconnects_while_cells_run(lab, link, make_protocol, clock_type) -> None:
    """The orchestrator's pattern: fetch from the last stored index; on a typed error
    try again next poll. Stored records equal the instrument's buffer exactly."""
    faults = _injector()
    with simulated_cycler(lab, link=link, faults=faults) as server, _driver(server.url) as driver:
        server.max_batch = 50
        exp = str(uuid.uuid4())
        driver.start(0, make_protocol(cycles=4, record_s=5.0), exp)
        stored, next_index, errors = [], 0, 0
        with clock_type(lab, dt_s=10.0):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                faults.force("disconnect", match="CHAN0:DATA?", after=3)
                try:
                    batch = driver.fetch(0, next_index, experiment_id=exp)
                    state = driver.status(0)
                except InstrumentCommunicationError:
                    errors += 1
                    continue
                stored.append(batch.records)
                next_index = batch.next_index
                if state.state.is_final and next_index >= state.record_count:
                    break
        np.testing.assert_array_equal(np.concatenate(stored), lab.all_records(0))
        assert faults.counts[FaultKind.DISCONNECT] >= 3


def test_instrument_reset_loses_the_session_not_the_cells(lab, link, make_protocol) -> None:
    faults = _injector()
    with simulated_cycler(lab, link=link, faults=faults) as server, _driver(server.url) as driver:
        exp0 = _running_experiment(lab, driver, make_protocol, channel=0)
        # a reset right after the upload forgets the staged schedule: start re-uploads
        faults.force("reset", match="CHAN1:SCH")
        exp1 = str(uuid.uuid4())
        assert _timed(driver.start, 1, make_protocol(), exp1) is StartOutcome.STARTED
        faults.force("reset", match="CHAN0:STAT?")
        status = _timed(driver.status, 0)
        assert status.state is ChannelState.RUNNING and status.experiment_id == uuid.UUID(exp0)
        assert driver.status(1).experiment_id == uuid.UUID(exp1)
        assert lab.resets == 2
        np.testing.assert_array_equal(driver.fetch(0, 0).records, lab.all_records(0))


@pytest.mark.parametrize(
    ("kind", "state", "reason"),
    [
        ("channel_fault", ChannelState.FAULT, "hardware"),
        ("over_temperature", ChannelState.SAFETY_STOPPED, "over_temperature"),
    ],
)
def test_channel_faults_end_the_experiment_with_a_reason(
    lab, link, make_protocol, kind, state, reason
) -> None:
    faults = _injector()
    with simulated_cycler(lab, link=link, faults=faults) as server, _driver(server.url) as driver:
        exp = _running_experiment(lab, driver, make_protocol)
        faults.force(kind, match="*OPC?")
        driver.transport.query("*OPC?")
        status = driver.status(0)
        assert status.state is state and reason in (status.reason or "")
        assert driver.self_test().passed is (kind != "channel_fault")
        lab.advance(5_000)  # a stopped channel produces nothing more
        batch = driver.fetch(0, 0, experiment_id=exp)
        np.testing.assert_array_equal(batch.records, lab.all_records(0))
        assert batch.next_index == status.record_count


def test_random_faults_soak(lab, link, make_protocol, clock_type) -> None:
    """Random faults of every link/wire/session kind at 12 % per reply during a full run on three
    channels: every stored record equals the instrument's, every experiment completes."""
    weights = {k: 1.0 for k in FaultKind if k not in LAB_FAULTS}
    weights[FaultKind.DELAY] = 0.3  # each costs a timeout; keep the test fast
    faults = FaultInjector(FaultRates.uniform(0.12, weights), seed=11, delay_s=0.3, down_s=0.05)
    experiments = {ch: str(uuid.uuid4()) for ch in range(3)}
    stored = {ch: [] for ch in experiments}
    next_index = dict.fromkeys(experiments, 0)
    done: set[int] = set()
    errors: list[str] = []
    with (
        simulated_cycler(lab, link=link, faults=faults) as server,
        _driver(server.url, timeout_s=0.2) as driver,
    ):
        server.max_batch = 40
        faults.enabled = False
        for ch, exp in experiments.items():
            driver.start(ch, make_protocol(cycles=3, eis=(ch == 2)), exp)
        faults.enabled = True
        with clock_type(lab, dt_s=10.0, period_s=0.005):
            deadline = time.monotonic() + 40
            # poll until every experiment is stored and at least 150 messages were
            # exposed to faults (the seeded draws are then the same on every run)
            while (len(done) < len(experiments) or faults.decisions < 150) and (
                time.monotonic() < deadline
            ):
                for ch, exp in experiments.items():
                    if ch in done:
                        try:
                            driver.status(ch)
                        except InstrumentCommunicationError as exc:
                            errors.append(type(exc).__name__)
                        continue
                    try:
                        status = _timed(driver.status, ch)
                        batch = _timed(driver.fetch, ch, next_index[ch], experiment_id=exp)
                        stored[ch].append(batch.records)
                        next_index[ch] = batch.next_index
                        if status.state is ChannelState.WAITING_EIS:
                            _timed(driver.resume, ch)
                        elif status.state.is_final and next_index[ch] >= status.record_count:
                            done.add(ch)
                    except InstrumentCommunicationError as exc:
                        errors.append(type(exc).__name__)
        faults.enabled = False
        assert done == set(experiments), f"unfinished: {set(experiments) - done}, errors {errors}"
        for ch in experiments:
            assert driver.status(ch).state is ChannelState.COMPLETED
            np.testing.assert_array_equal(np.concatenate(stored[ch]), lab.all_records(ch))
    assert faults.decisions >= 150
    assert sum(faults.counts.values()) >= 10 and len(faults.counts) >= 4


def test_a_dead_instrument_gives_a_timeout_not_a_hang(lab, link) -> None:
    faults = _injector(rates=FaultRates({FaultKind.DROP: 1.0}))
    with simulated_cycler(lab, link=link, faults=faults) as server, _driver(server.url) as driver:
        began = time.monotonic()
        with pytest.raises(TransportTimeout):
            driver.identify()
        assert time.monotonic() - began < CALL_BOUND_S


def test_a_late_large_block_is_skipped_when_resynchronising(lab, link, make_protocol) -> None:
    """A delayed 180 kB record block arrives while the host resynchronises: it is read
    past quickly (no byte-at-a-time reads) and the next fetch gets the right rows."""
    faults = _injector()
    with simulated_cycler(lab, link=link, faults=faults) as server, _driver(server.url) as driver:
        exp = _running_experiment(lab, driver, make_protocol, record_s=2.0)
        assert len(lab.all_records(0)) > 4096
        faults.force("delay", match="CHAN0:DATA?")
        batch = _timed(driver.fetch, 0, 0, experiment_id=exp)
        np.testing.assert_array_equal(batch.records, lab.all_records(0))
