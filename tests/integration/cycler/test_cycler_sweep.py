"""``fetch_many`` (one ``FETC?`` for several channels) over TCP and pty: it returns
exactly the instrument's records for every channel, in several rounds when a channel
has more than ``max_batch``, and recovers from every wire fault on the sweep."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest

from voltloop.drivers.cycler import CyclerDriver
from voltloop.drivers.sim.faults import FaultInjector, FaultKind
from voltloop.drivers.testing import simulated_cycler

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.3
CALL_BOUND_S = 3 * (3 * TIMEOUT_S) + 1.5


def _start_three(lab, driver, make_protocol) -> dict[int, str]:
    ids = {ch: str(uuid.uuid4()) for ch in (0, 1, 2)}
    for ch, exp in ids.items():
        driver.start(ch, make_protocol(cycles=50, record_s=5.0 + ch), exp)
    lab.advance(8_000)
    return ids


def test_fetch_many_equals_the_instruments_buffers(lab, link, make_protocol) -> None:
    with (
        simulated_cycler(lab, link=link) as server,
        CyclerDriver(server.url, timeout_s=TIMEOUT_S) as driver,
    ):
        server.max_batch = 500
        ids = _start_three(lab, driver, make_protocol)
        assert len(lab.all_records(0)) > 1000  # several FETC? rounds for channel 0
        batches = driver.fetch_many({0: 0, 1: 0, 3: 0, 2: 17}, experiment_ids=ids)
        assert list(batches) == [0, 1, 3, 2]
        for ch in (0, 1):
            np.testing.assert_array_equal(batches[ch].records, lab.all_records(ch))
            assert batches[ch].experiment_id == uuid.UUID(ids[ch])
        np.testing.assert_array_equal(batches[2].records, lab.all_records(2)[17:])
        assert batches[3].experiment_id is None and len(batches[3].records) == 0  # empty
        # the same rows as channel-by-channel DATA?
        np.testing.assert_array_equal(driver.fetch(2, 17).records, batches[2].records)


@pytest.mark.parametrize(
    ("link", "kind"),
    [("tcp", kind) for kind in ("delay", "drop", "garble", "partial", "disconnect", "reset")]
    + [("pty", "garble"), ("pty", "disconnect")],
)
def test_a_fault_on_the_sweep_loses_and_doubles_nothing(lab, link, make_protocol, kind) -> None:
    faults = FaultInjector(seed=1, delay_s=0.5, down_s=0.1)
    with (
        simulated_cycler(lab, link=link, faults=faults) as server,
        CyclerDriver(server.url, timeout_s=TIMEOUT_S, retries=2) as driver,
    ):
        driver.transport.backoff_s = 0.01
        server.max_batch = 400
        ids = _start_three(lab, driver, make_protocol)
        faults.force(kind, match="FETC?", after=1)  # the second round of the sweep
        began = time.monotonic()
        batches = driver.fetch_many(dict.fromkeys(ids, 0), experiment_ids=ids)
        assert time.monotonic() - began < 2 * CALL_BOUND_S
        for ch in ids:
            np.testing.assert_array_equal(batches[ch].records, lab.all_records(ch))
        assert faults.counts[FaultKind(kind)] == 1
        assert driver.identify().maker == "VOLTLOOP"  # and the link is clean again
