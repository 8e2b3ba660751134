"""SimulatedLab honours the VirtualLab contract (verbs, states, records, loader)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voltloop.drivers.records import SAMPLE_DTYPE
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.reference_protocols import attia_protocol
from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState, VirtualLab


def _lab(n: int = 2, **kw: object) -> SimulatedLab:
    lab = SimulatedLab(n, seed=3, **kw)  # type: ignore[arg-type]
    for ch in range(n):
        lab.load_cell(ch, CellSpec(cell_id=f"cell-{ch}", seed=ch))
    return lab


def test_is_a_virtual_lab() -> None:
    assert isinstance(SimulatedLab(1), VirtualLab)


def test_runs_attia_protocol_and_records_are_contiguous() -> None:
    lab = _lab(1)
    assert lab.start(0, attia_protocol(4.8, 5.2, 5.2, cycles=3), "exp-1")
    assert lab.status(0).state == ChannelState.RUNNING
    lab.advance(12 * 3600.0)
    st = lab.status(0)
    assert st.state == ChannelState.COMPLETED
    assert st.cycle == 2
    rec = lab.records(0, 0, limit=10**6)
    assert rec.dtype == SAMPLE_DTYPE
    assert np.array_equal(rec["record"], np.arange(rec.size))
    assert np.all(np.diff(rec["t_s"]) >= 0)
    assert rec["voltage_V"].max() < 3.62 and rec["voltage_V"].min() > 1.98
    assert set(np.unique(rec["cycle"])) == {0, 1, 2}
    # record fetch since an index returns the tail
    tail = lab.records(0, rec.size - 5)
    assert np.array_equal(tail["record"], rec["record"][-5:])
    caps = lab.capacities(0)
    assert caps.size == 3 and np.all((caps > 0.95) & (caps < 1.2))


def test_start_is_idempotent_and_refuses_busy_or_empty_channels() -> None:
    lab = _lab(2)
    proto = attia_protocol(4.8, 5.2, 5.2, cycles=2)
    assert lab.start(0, proto, "a")
    assert lab.start(0, proto, "a") is False
    with pytest.raises(ValueError, match="busy"):
        lab.start(0, proto, "b")
    lab.unload_cell(1)
    with pytest.raises(ValueError, match="empty"):
        lab.start(1, proto, "c")


def test_protocol_outside_instrument_limits_is_refused() -> None:
    lab = _lab(1)
    data = json.loads(attia_protocol(8.0, 7.0, 5.6, cycles=2))
    data["method"][1]["rate_C"] = 20.0  # 22 A > 10 A
    with pytest.raises(ValueError, match="instrument limit"):
        lab.start(0, json.dumps(data), "x")


def test_eis_checkpoint_waits_for_resume_and_can_be_skipped() -> None:
    lab = _lab(2, eis_timeout_s=600.0)
    proto = attia_protocol(4.8, 5.2, 5.2, cycles=4, eis_every=2)
    lab.start(0, proto, "a")
    lab.start(1, proto, "b")
    lab.advance(1.0)
    assert lab.status(0).state == ChannelState.WAITING_EIS
    z = lab.impedance(0, np.logspace(4, -2, 61))
    assert z.shape == (61,) and np.all(np.isfinite(z))
    lab.resume(0)
    assert lab.status(0).state == ChannelState.RUNNING
    lab.advance(700.0)
    assert lab.status(1).state == ChannelState.RUNNING
    assert lab.skipped_eis(1) == [0]
    assert "skipped EIS" in (lab.status(1).reason or "")


def test_faults_and_stop() -> None:
    lab = _lab(2)
    proto = attia_protocol(4.8, 5.2, 5.2, cycles=2)
    lab.start(0, proto, "a")
    lab.start(1, proto, "b")
    lab.inject_fault(0, "hardware")
    lab.inject_fault(1, "over_temperature")
    assert lab.status(0).state == ChannelState.FAULT
    assert lab.status(1).state == ChannelState.SAFETY_STOPPED
    assert "temperature" in (lab.status(1).reason or "")
    with pytest.raises(ValueError, match="unknown fault"):
        lab.inject_fault(0, "gremlins")


def test_truth_and_seeded_variation() -> None:
    a = _lab(2)
    b = _lab(2)
    assert a.truth(0) == b.truth(0)
    assert a.truth(0).capacity_Ah != a.truth(1).capacity_Ah
    assert 1.05 < a.truth(0).capacity_Ah < 1.16
