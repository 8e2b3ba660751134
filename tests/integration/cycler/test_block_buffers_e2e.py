"""A host that keeps fetched rows never sees them change; one that drops them gets
its receive buffer back (``FETC?`` sweeps over TCP, the real simulated lab)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from voltloop.drivers.block_buffers import BlockBuffers
from voltloop.drivers.cycler import CyclerDriver
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.reference_protocols import attia_protocol
from voltloop.drivers.sim.virtual_lab import CellSpec
from voltloop.drivers.testing import simulated_cycler

pytestmark = pytest.mark.integration

CHANNELS = 8


def test_kept_rows_are_never_written_over_and_dropped_ones_free_the_buffer() -> None:
    lab = SimulatedLab(CHANNELS, seed=3)
    protocol = attia_protocol(4.8, 5.2, 5.2, cycles=100, record_interval_s=1.0)
    for ch in range(CHANNELS):
        lab.load_cell(ch, CellSpec(cell_id=f"buf-{ch}", seed=ch))
    since = dict.fromkeys(range(CHANNELS), 0)
    with (
        simulated_cycler(lab, link="tcp") as server,
        CyclerDriver(server.url, timeout_s=10.0) as driver,
    ):
        for ch in range(CHANNELS):
            driver.start(ch, protocol, str(uuid.uuid4()))
        blocks = driver.transport._blocks = BlockBuffers()  # not the process's pool

        def sweep() -> dict:
            lab.advance(4_000.0)  # ~4,000 rows a channel: a 1.4 MB block, pooled
            batches = driver.fetch_many(since)
            for ch, batch in batches.items():
                assert len(batch.records) > 3_000
                np.testing.assert_array_equal(batch.records, lab.records(ch, batch.since, 10**9))
                since[ch] = batch.next_index
            return batches

        first = sweep()
        kept = {ch: batch.records.copy() for ch, batch in first.items()}
        second = sweep()
        third = sweep()
        assert blocks.reused == 0  # first and second still held
        for ch in range(CHANNELS):
            np.testing.assert_array_equal(first[ch].records, kept[ch])
            assert not np.shares_memory(first[ch].records, third[ch].records)
        del first, second
        sweep()
        assert blocks.reused == 1
