"""Validation before dispatch names the step and the limit, and never clamps."""

from __future__ import annotations

import pytest

from voltloop.drivers.protocols import compile_candidate
from voltloop.drivers.safety import ProtocolLimitError, check_protocol
from voltloop.drivers.sim.virtual_lab import InstrumentLimits

CANDIDATE = {"CC1": 8.0, "CC2": 4.0, "CC3": 4.0}


def test_within_cell_and_fast_charge_channel_limits(attia_spec) -> None:
    compiled = compile_candidate(attia_spec, CANDIDATE)
    assert compiled.check() == []
    assert compiled.check(InstrumentLimits(max_current_A=30.0)) == []
    compiled.ensure_dispatchable(InstrumentLimits(max_current_A=30.0))


def test_safety_current_beyond_the_instrument_is_refused_before_dispatch(attia_spec) -> None:
    """The cell allows 10 C (11 A); a 10 A channel would refuse the schedule, so the
    check says so before dispatch instead of the instrument afterwards."""
    compiled = compile_candidate(attia_spec, CANDIDATE)
    violations = compiled.check(InstrumentLimits(max_current_A=10.0))
    assert [(v.step_index, v.limit) for v in violations] == [
        (None, "instrument.max_current_A"),  # charge: 10 C x 1.1 Ah
        (None, "instrument.max_current_A"),  # discharge: 20 C x 1.1 Ah
    ]
    assert [v.value for v in violations] == [pytest.approx(11.0), pytest.approx(22.0)]
    assert "safety max_current_mA 11 A is beyond the instrument's max_current_A 10 A" in (
        violations[0].message
    )


def test_instrument_current_limit_names_step_and_limit(attia_spec) -> None:
    compiled = compile_candidate(attia_spec, CANDIDATE)
    before = compiled.protocol.model_dump()
    limits = InstrumentLimits(max_current_A=6.0)
    violations = [v for v in compiled.check(limits) if v.step_index is not None]
    assert [(v.step_index, v.step_kind, v.step_id, v.limit) for v in violations] == [
        (7, "constant_current", "CC1", "instrument.max_current_A")
    ]
    assert violations[0].value == pytest.approx(8.8)
    with pytest.raises(ProtocolLimitError) as caught:
        compiled.ensure_dispatchable(limits)
    assert caught.value.exit_code == 2
    assert (
        "method[7] constant_current 'CC1': current 8.8 A (8 C × 1.1 Ah) exceeds the "
        "instrument's max_current_A 6 A" in str(caught.value)
    )
    assert compiled.protocol.model_dump() == before  # nothing clamped


def test_voltage_steps_and_temperature_limits(attia_spec) -> None:
    compiled = compile_candidate(attia_spec, CANDIDATE)
    limits = InstrumentLimits(max_voltage_V=3.5, max_steps=10, max_temperature_C=40.0)
    found = {v.limit for v in compiled.check(limits)}
    assert {
        "instrument.max_voltage_V",
        "instrument.max_steps",
        "instrument.max_temperature_C",
    } <= found
    messages = "\n".join(str(v) for v in compiled.check(limits))
    assert "cut-off 3.6 V is above the instrument's max_voltage_V 3.5 V" in messages
    assert "23 steps; the instrument takes at most 10" in messages


def test_cell_limits_catch_hand_edited_protocols(attia_spec) -> None:
    compiled = compile_candidate(attia_spec, CANDIDATE)
    method = list(compiled.protocol.method)
    method[14] = method[14].model_copy(update={"rate_C": -25.0})  # discharge at 25 C
    method[12] = method[12].model_copy(update={"voltage_V": 3.8})  # CV above the window
    method[11] = method[11].model_copy(update={"until_voltage_V": None})
    edited = compiled.protocol.model_copy(update={"method": method})
    violations = check_protocol(edited, compiled.safety)
    by_limit = {v.limit: v for v in violations}
    assert by_limit["cell.max_discharge_current_A"].step_id == "discharge"
    assert by_limit["cell.max_voltage_V"].step_index in (11, 12)
    text = "\n".join(map(str, violations))
    assert "method[12] constant_voltage 'cv_finish': hold voltage 3.8 V is above the cell's" in text
    assert "method[11] constant_current 'cc_finish': no until_voltage_V" in text
