"""Protocol execution details, safety limits, record buffering and EIS spectra."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voltloop.drivers.records import empty_records
from voltloop.drivers.sim.lab import SimulatedLab
from voltloop.drivers.sim.record_buffer import RecordBuffer
from voltloop.drivers.sim.virtual_lab import CellSpec, ChannelState, InstrumentLimits


def _protocol(method: list[dict], **extra: object) -> str:
    data = {"sample": {"capacity_mAh": 1100}, "record": {"time_s": 10}, "method": method}
    data.update(extra)
    return json.dumps(data)


CHARGE = {"step": "constant_current", "rate_C": 1.0, "until_voltage_V": 3.6}
HOLD = {"step": "constant_voltage", "voltage_V": 3.6, "until_rate_C": 0.05}
REST = {"step": "open_circuit_voltage", "until_time_s": 60}
DISCHARGE = {"step": "constant_current", "rate_C": -1.0, "until_voltage_V": 2.0}


def _lab(**kw: object) -> SimulatedLab:
    lab = SimulatedLab(1, seed=2, **kw)  # type: ignore[arg-type]
    lab.load_cell(0, CellSpec(cell_id="c", seed=4))
    return lab


def test_nested_loops_count_cycles() -> None:
    lab = _lab()
    method = [
        {"step": "tag", "tag": "outer"},
        REST,
        {"step": "tag", "tag": "inner"},
        CHARGE,
        DISCHARGE,
        {"step": "loop", "loop_to": "inner", "cycle_count": 2},
        {"step": "loop", "loop_to": "outer", "cycle_count": 2},
    ]
    lab.start(0, _protocol(method), "n")
    lab.advance(20 * 3600.0)
    st = lab.status(0)
    assert st.state == ChannelState.COMPLETED
    assert st.cycle == 3  # 2 x 2 passes -> cycles 0..3
    caps = lab.capacities(0)
    assert caps.size == 4 and np.all(caps > 1.0)
    rec = lab.records(0, 0, 10**6)
    # within a cycle the charge counter never decreases; it resets between cycles
    for c in range(4):
        assert np.all(np.diff(rec["charge_Ah"][rec["cycle"] == c]) >= -1e-6)


def test_cv_step_ends_at_current_cutoff() -> None:
    lab = _lab()
    lab.start(0, _protocol([CHARGE, HOLD, REST]), "cv")
    lab.advance(4 * 3600.0)
    rec = lab.records(0, 0, 10**6)
    hold = rec[rec["step"] == 1]
    assert np.all(np.abs(hold["voltage_V"] - 3.6) < 2e-3)
    assert hold["current_A"][-1] == pytest.approx(0.055, rel=0.1)
    assert np.all(np.diff(hold["current_A"]) < 1e-3)


def test_protocol_safety_voltage_stops_channel_with_reason() -> None:
    lab = _lab()
    method = [{"step": "constant_current", "rate_C": 1.0, "until_time_s": 7200}]
    lab.start(0, _protocol(method, safety={"max_voltage_V": 3.5}), "s")
    lab.advance(7200.0)
    st = lab.status(0)
    assert st.state == ChannelState.SAFETY_STOPPED
    assert "voltage" in (st.reason or "") and "3.500" in (st.reason or "")
    assert lab.records(0, 0)["voltage_V"].max() < 3.52


def test_cell_temperature_limit_from_voltloop_block() -> None:
    lab = _lab()
    method = [{"step": "constant_current", "rate_C": 5.0, "until_time_s": 600}]
    lab.start(0, _protocol(method, voltloop={"max_temperature_C": 32.0}), "t")
    lab.advance(600.0)
    st = lab.status(0)
    assert st.state == ChannelState.SAFETY_STOPPED
    assert "temperature" in (st.reason or "")


def test_instrument_limits_refuse_upload() -> None:
    lab = SimulatedLab(1, limits=InstrumentLimits(max_current_A=2.0))
    lab.load_cell(0, CellSpec(cell_id="c"))
    with pytest.raises(ValueError, match="exceeds the instrument limit"):
        lab.start(0, _protocol([{**CHARGE, "rate_C": 3.0}]), "x")
    with pytest.raises(ValueError, match="invalid unicycler protocol"):
        lab.start(0, _protocol([{"step": "warp"}]), "y")


def test_voltage_scan_runs() -> None:
    lab = _lab()
    scan = {"step": "voltage_scan", "start_voltage_V": 3.2, "end_voltage_V": 3.4,
            "scan_rate_mV_per_s": 0.5}  # fmt: skip
    lab.start(0, _protocol([CHARGE, {**DISCHARGE, "until_voltage_V": 3.25}, scan]), "v")
    lab.advance(6 * 3600.0)
    assert lab.status(0).state == ChannelState.COMPLETED
    rec = lab.records(0, 0, 10**6)
    sweep = rec[rec["step"] == 2]
    assert sweep["voltage_V"][0] < 3.25 and sweep["voltage_V"][-1] > 3.38


def test_record_buffer_since_limit_and_retention() -> None:
    buf = RecordBuffer(max_records=25)
    for start in range(0, 60, 10):
        chunk = empty_records(10)
        chunk["record"] = np.arange(start, start + 10)
        buf.append(chunk)
    assert buf.count == 60
    assert buf.since(55)["record"].tolist() == [55, 56, 57, 58, 59]
    assert buf.since(0, limit=3)["record"].tolist() == [buf.first, buf.first + 1, buf.first + 2]
    assert buf.first == 30 and buf.since(100).size == 0


def test_impedance_arcs_grow_with_age() -> None:
    lab = _lab()
    f = np.logspace(4, -2, 61)
    z_fresh = lab.impedance(0, f)
    fresh = lab.impedance_parameters(0)
    lab.bank.r_film[0] += 0.01  # an aged film
    aged = lab.impedance_parameters(0)
    assert aged.r_sei > fresh.r_sei
    z_aged = lab.impedance(0, f)
    assert z_aged.real.max() > z_fresh.real.max() + 0.008
    assert -z_fresh.imag.min() > 0  # capacitive arcs below the real axis


def test_impedance_needs_a_resting_cell() -> None:
    lab = _lab()
    lab.start(0, _protocol([CHARGE]), "r")
    with pytest.raises(ValueError, match="at rest"):
        lab.impedance(0, np.array([1.0]))


def test_record_memory_is_a_bounded_ring_by_default() -> None:
    from voltloop.drivers.sim.lab import DEFAULT_MAX_RECORDS

    lab = _lab()
    assert all(b.max_records == DEFAULT_MAX_RECORDS for b in lab.executor.buffers)
    unbounded = SimulatedLab(1, max_records_per_channel=None)
    assert unbounded.executor.buffers[0].max_records is None


def test_step_chains_match_step_by_step_solves(monkeypatch: pytest.MonkeyPatch) -> None:
    from voltloop.drivers.sim import executor
    from voltloop.drivers.sim.reference_protocols import attia_protocol

    default_chain = executor.MAX_CHAIN

    def run(max_chain: int) -> tuple[SimulatedLab, int]:
        monkeypatch.setattr(executor, "MAX_CHAIN", max_chain)
        lab = _lab()
        lab.start(0, attia_protocol(4.8, 5.2, 5.2, cycles=6), "chain")
        solves = 0
        run_phase = lab.executor._plan

        def counted(*args: object) -> None:
            nonlocal solves
            solves += 1
            run_phase(*args)  # type: ignore[arg-type]

        lab.executor._plan = counted  # type: ignore[method-assign]
        lab.advance(12 * 3600.0)  # to the end: the last phase's ageing is applied
        assert lab.status(0).state == ChannelState.COMPLETED
        return lab, solves

    (step_lab, step_solves), (chain_lab, chain_solves) = run(1), run(default_chain)
    # CC1 -> ... -> CC 1C, CV -> rest -> discharge and CV -> rest are one solve each
    assert chain_solves < 0.5 * step_solves
    # each step of a chain starts from the aged end state of the one before
    # (decision 0037), so a chain is the step-by-step solve to float rounding
    np.testing.assert_allclose(chain_lab.capacities(0), step_lab.capacities(0), rtol=1e-12)
    for field in ("q_pl", "q_sei", "lam_neg", "n_li", "r_film", "throughput"):
        assert getattr(chain_lab.bank, field)[0] == pytest.approx(
            getattr(step_lab.bank, field)[0], rel=1e-12
        ), field
    a, b = step_lab.records(0, 0, 10**6), chain_lab.records(0, 0, 10**6)
    np.testing.assert_array_equal(a["step"], b["step"])
    np.testing.assert_allclose(a["t_s"], b["t_s"], atol=1e-6)
    np.testing.assert_array_equal(a["discharge_Ah"], b["discharge_Ah"])
    assert np.all(np.diff(b["t_s"]) > 0) and np.array_equal(b["record"], np.arange(b.size))


def test_cutoff_inside_a_chain_ends_the_phase_there() -> None:
    # charge; then rest -> time-limited discharge -> rest is one chain, and the
    # discharge meets its voltage cut-off long before its time limit
    timed = {**DISCHARGE, "until_time_s": 7200}
    lab = _lab()
    lab.start(0, _protocol([CHARGE, REST, timed, REST]), "cut")
    lab.advance(6 * 3600.0)
    assert lab.status(0).state == ChannelState.COMPLETED
    rec = lab.records(0, 0, 10**6)
    dis = rec[rec["step"] == 2]
    # ended at its cut-off on the steep end of discharge (the crossing is refined on
    # the closed form; the grid's straight line alone stopped at ~2.2 V), far from
    # its 2-h limit
    assert abs(dis["voltage_V"][-1] - 2.0) < 0.01 and dis["voltage_V"][:-1].min() > 2.0
    assert 1.0 < dis["discharge_Ah"][-1] < 1.15 and dis["t_s"][-1] - dis["t_s"][0] < 3700
    rest = rec[rec["step"] == 3]
    assert np.all(np.abs(rest["current_A"]) < 1e-3)
    assert rest["voltage_V"][-1] > dis["voltage_V"][-1] + 0.02  # relaxes upwards
