"""Records → complete cycles and their summaries, on hand-built record arrays."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.drivers.cycle_summary import CycleAssembler, step_kinds, summarise_cycle
from voltloop.drivers.records import empty_records

# One cycle, 10 s per record: 1 A CC charge 3.2→3.6 V (steps 1), CV at 3.6 V with the
# current falling 1.0 → 0.2 A (step 2), rest (step 3), -1 A discharge (step 4).
CC = [(1.0, 3.2 + 0.04 * k, 1) for k in range(11)]  # reaches 3.6 V at its last record
CV = [(1.0 - 0.2 * k, 3.6, 2) for k in range(1, 5)]  # 0.8, 0.6, 0.4, 0.2 A
REST = [(0.0, 3.45, 3)] * 3
DIS = [(-1.0, 3.3 - 0.04 * k, 4) for k in range(10)]


def _cycle(cycle: int, first_record: int, t0: float) -> np.ndarray:
    rows = CC + CV + REST + DIS
    rec = empty_records(len(rows))
    rec["record"] = np.arange(first_record, first_record + len(rows))
    rec["t_s"] = t0 + 10.0 * np.arange(len(rows))
    rec["cycle"] = cycle
    rec["current_A"] = [r[0] for r in rows]
    rec["voltage_V"] = [r[1] for r in rows]
    rec["step"] = [r[2] for r in rows]
    rec["temperature_C"] = 30.0 + np.abs(rec["current_A"])
    dt_h = 10.0 / 3600
    rec["charge_Ah"] = np.cumsum(np.clip(rec["current_A"], 0, None)) * dt_h
    rec["discharge_Ah"] = np.cumsum(np.clip(-rec["current_A"], 0, None)) * dt_h
    return rec


def test_summary_figures() -> None:
    rec = _cycle(0, 0, 0.0)
    s = summarise_cycle(rec)
    assert s.cycle == 0 and s.n_records == len(rec) and (s.first_record, s.last_record) == (0, 27)
    assert s.charge_Ah == pytest.approx((11 * 1.0 + 0.8 + 0.6 + 0.4 + 0.2) * 10 / 3600, rel=1e-5)
    assert s.discharge_Ah == pytest.approx(10 * 10 / 3600, rel=1e-5)
    assert s.coulombic_efficiency == pytest.approx(s.discharge_Ah / s.charge_Ah)
    assert s.temperature_max_C == pytest.approx(31.0) and s.temperature_min_C == pytest.approx(30.0)
    # charging intervals end at the 10 CC records after the first plus the 4 CV records
    assert s.charge_time_s == pytest.approx(140.0)
    assert s.cv_time_s == pytest.approx(40.0)
    # energy: trapezoid of V*I; charge energy lies between 3.2 and 3.6 V times the charge
    assert 3.2 * 0.036 < s.charge_energy_Wh < 3.6 * 0.04
    assert s.discharge_energy_Wh > 0


def test_internal_resistance_from_current_steps() -> None:
    rec = _cycle(0, 0, 0.0)
    # rest→discharge: 0 → -1 A with 3.45 → 3.30 V; CV end→rest: 0.2 → 0 A, 3.6 → 3.45 V
    s = summarise_cycle(rec)
    assert s.internal_resistance_ohm == pytest.approx(0.15, rel=1e-3)
    flat = rec.copy()
    flat["current_A"] = 1.0
    assert summarise_cycle(flat).internal_resistance_ohm is None


def test_cv_time_from_protocol_step_kinds() -> None:
    protocol = {
        "method": [
            {"step": "tag"},
            {"step": "constant_current"},
            {"step": "constant_voltage"},
            {"step": "open_circuit_voltage"},
            {"step": "constant_current"},
        ]
    }
    kinds = step_kinds(protocol)
    assert kinds[2] == "constant_voltage"
    assert summarise_cycle(_cycle(0, 0, 0.0), kinds=kinds).cv_time_s == pytest.approx(40.0)


def test_assembler_holds_back_the_running_cycle() -> None:
    rec = np.concatenate([_cycle(0, 0, 0.0), _cycle(1, 28, 280.0), _cycle(2, 56, 560.0)])
    assembler = CycleAssembler()
    out = []
    for start in range(0, len(rec), 11):  # batch boundaries anywhere
        out += assembler.feed(rec[start : start + 11])
    assert [c.summary.cycle for c in out] == [0, 1]
    assert len(assembler.pending) == 28  # cycle 2 waits for the next cycle or the end
    out += assembler.finish()
    assert [c.summary.cycle for c in out] == [0, 1, 2]
    np.testing.assert_array_equal(np.concatenate([c.records for c in out]), rec)
    assert assembler.finish() == []
    arrays = out[0].arrays()
    assert set(arrays) == {"t_s", "voltage_V", "current_A", "temperature_C"}
    assert arrays["t_s"].shape == (28,)


def test_assembler_refuses_gaps_and_repeats() -> None:
    rec = _cycle(0, 0, 0.0)
    assembler = CycleAssembler()
    assembler.feed(rec[:5])
    with pytest.raises(ValueError, match="continue at index 5"):
        assembler.feed(rec[6:])
    with pytest.raises(ValueError, match="continue at index 5"):
        assembler.feed(rec[3:])


def test_resume_from_a_stored_index() -> None:
    rec = np.concatenate([_cycle(0, 0, 0.0), _cycle(1, 28, 280.0)])
    assembler = CycleAssembler(next_record=28)
    assert assembler.feed(rec[28:]) == []
    assert [c.summary.first_record for c in assembler.finish()] == [28]


def test_summary_needs_one_cycle() -> None:
    with pytest.raises(ValueError, match="one"):
        summarise_cycle(np.concatenate([_cycle(0, 0, 0.0), _cycle(1, 28, 280.0)]))
    with pytest.raises(ValueError, match="at least one"):
        summarise_cycle(empty_records())


def _checkpointed_cycle(lead: bool) -> np.ndarray:
    """The cycle above with an EIS checkpoint (steps 10-12: charge 0.5 A to mid SOC,
    a long rest at 25 °C, discharge back) before or after it; counters run on."""
    aging = _cycle(0, 0, 0.0)
    checkpoint = empty_records(12)
    checkpoint["current_A"] = [0.5] * 4 + [0.0] * 4 + [-0.5] * 4
    checkpoint["voltage_V"] = 3.3
    checkpoint["step"] = [10] * 4 + [11] * 4 + [12] * 4
    checkpoint["temperature_C"] = 25.0
    parts = [checkpoint, aging] if lead else [aging, checkpoint]
    rec = np.concatenate(parts)
    rec["record"] = np.arange(len(rec))
    rec["t_s"] = 10.0 * np.arange(len(rec))
    rec["t_s"][np.arange(len(rec)) >= np.flatnonzero(rec["step"] == 11)[-1]] += 36_000.0  # wait
    dt_h = 10.0 / 3600
    rec["charge_Ah"] = np.cumsum(np.clip(rec["current_A"], 0, None)) * dt_h
    rec["discharge_Ah"] = np.cumsum(np.clip(-rec["current_A"], 0, None)) * dt_h
    return rec


@pytest.mark.parametrize("lead", [True, False])
def test_checkpoint_steps_stay_out_of_the_cycle_figures(lead: bool) -> None:
    plain = summarise_cycle(_cycle(0, 0, 0.0))
    rec = _checkpointed_cycle(lead)
    merged = summarise_cycle(rec)  # without the protocol's roles: the counters include it
    assert merged.charge_Ah == pytest.approx(plain.charge_Ah + 4 * 0.5 * 10 / 3600, rel=1e-5)
    s = summarise_cycle(rec, checkpoint=frozenset({10, 11, 12}))
    assert s.charge_Ah == pytest.approx(plain.charge_Ah, rel=1e-5)
    assert s.discharge_Ah == pytest.approx(plain.discharge_Ah, rel=1e-5)
    assert s.temperature_min_C == pytest.approx(plain.temperature_min_C)
    assert s.charge_time_s == pytest.approx(plain.charge_time_s)
    # the cycle's span still covers every record, the wait included
    assert (s.n_records, s.first_record, s.last_record) == (len(rec), 0, len(rec) - 1)
    assert s.end_t_s - s.start_t_s > 36_000.0


def test_checkpoint_steps_are_found_by_their_ids() -> None:
    from voltloop.campaigns.checkpoints import aging_discharge, checkpoint_steps

    protocol = {"method": [{"step": "constant_current", "id": i} for i in ("eis_set_soc", "CC1")]}
    protocol["method"] += [{"step": "impedance_spectroscopy", "id": "eis"}, {"step": "loop"}]
    protocol["method"] += [{"step": "constant_current", "id": "rpt_discharge"}]
    assert checkpoint_steps(protocol) == frozenset({0, 2, 4})
    rec = _checkpointed_cycle(lead=True)
    voltage, q = aging_discharge(
        rec["voltage_V"],
        rec["current_A"],
        rec["discharge_Ah"],
        rec["step"],
        frozenset({10, 11, 12}),
    )
    assert voltage.size == 10 and q[0] == pytest.approx(10 / 3600, rel=1e-5)
    assert q[-1] == pytest.approx(100 / 3600, rel=1e-5)  # counted from the aging discharge
