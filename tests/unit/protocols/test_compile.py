"""Candidates become unicycler protocols: the Attia program, templates, checkpoints."""

from __future__ import annotations

from collections import Counter

import pytest
from aurora_unicycler import ConstantCurrent, CyclingProtocol

from voltloop.campaigns import attia
from voltloop.campaigns.spec import CandidateError, ReferencePerformanceTest
from voltloop.drivers.protocols import (
    CompiledProtocol,
    ProtocolCompileError,
    compile_candidate,
    compile_material_test,
)

from .conftest import unroll  # noqa: TID252

CANDIDATE = {"CC1": 5.2, "CC2": 5.2, "CC3": 4.8}


def steps_by_id(compiled: CompiledProtocol) -> dict[str, object]:
    return {s.id: s for s in compiled.protocol.method if getattr(s, "id", None)}


def test_attia_charge_steps_each_cover_20_percent_soc(attia_spec) -> None:
    compiled = compile_candidate(attia_spec, CANDIDATE)
    steps = steps_by_id(compiled)
    cc4 = attia.derive_cc4(5.2, 5.2, 4.8)
    assert compiled.parameters == pytest.approx({**CANDIDATE, "CC4": cc4})
    total = 0.0
    for name, rate in (("CC1", 5.2), ("CC2", 5.2), ("CC3", 4.8), ("CC4", cc4)):
        step = steps[name]
        assert isinstance(step, ConstantCurrent)
        assert step.rate_C == pytest.approx(rate)
        assert step.until_time_s == pytest.approx(0.2 * 3600 / rate)
        assert step.until_voltage_V == 3.6
        total += step.until_time_s
    assert total == pytest.approx(600.0)  # 0 -> 80 % SOC in ten minutes


def test_attia_fixed_part_of_the_cycle(attia_spec) -> None:
    steps = steps_by_id(compile_candidate(attia_spec, CANDIDATE))
    assert (steps["cc_finish"].rate_C, steps["cc_finish"].until_voltage_V) == (1.0, 3.6)
    assert (steps["cv_finish"].voltage_V, steps["cv_finish"].until_rate_C) == (3.6, 0.05)
    assert (steps["discharge"].rate_C, steps["discharge"].until_voltage_V) == (-4.0, 2.0)
    assert steps["rest_charged"].until_time_s == 60.0
    assert steps["eis"].start_frequency_Hz == 10_000.0
    assert steps["eis"].end_frequency_Hz == 0.01
    assert steps["eis"].amplitude_V == 0.005
    assert steps["eis_rest"].until_time_s == 1800.0
    assert steps["eis_set_soc"].until_time_s == pytest.approx(0.5 * 3600 / 0.5)


def test_one_loop_jump_per_aging_cycle(attia_spec) -> None:
    """Cycle indices 0..N-1, one discharge each; EIS after cycles 0 (start), 50, 100."""
    compiled = compile_candidate(attia_spec, CANDIDATE)
    assert compiled.cycles == 100  # early prediction cycle
    executed = unroll(list(compiled.protocol.method))
    discharges = Counter(c for c, s in executed if s.id == "discharge")
    assert sorted(discharges) == list(range(100))
    assert set(discharges.values()) == {1}
    eis_cycles = [c for c, s in executed if s.id == "eis"]
    assert eis_cycles == [0, 49, 99]  # after 0, 50 and 100 completed cycles
    assert [(c.kind, c.after_cycles) for c in compiled.checkpoints] == [
        ("eis", 0), ("eis", 50), ("eis", 100)
    ]  # fmt: skip


def test_end_of_life_cells_and_reference_tests_nest(attia_spec) -> None:
    spec = attia_spec.model_copy(
        update={"reference_test": ReferencePerformanceTest(every_cycles=100)}
    )
    compiled = compile_candidate(spec, CANDIDATE, cycles=300)
    executed = unroll(list(compiled.protocol.method))
    assert Counter(c for c, s in executed if s.id == "discharge") == Counter(range(300))
    kinds = [(c.kind, c.after_cycles) for c in compiled.checkpoints]
    assert kinds[:4] == [("eis", 0), ("eis", 50), ("eis", 100), ("rpt", 100)]
    rpt_cycles = [c for c, s in executed if s.id == "rpt_discharge"]
    assert rpt_cycles == [99, 199, 299]
    assert len(compiled.protocol.method) < 60  # loops, not unrolled copies


def test_cycle_count_must_fit_the_checkpoint_blocks(attia_spec) -> None:
    with pytest.raises(ProtocolCompileError, match="multiple of 50"):
        compile_candidate(attia_spec, CANDIDATE, cycles=120)


def test_bad_candidates_are_refused(attia_spec) -> None:
    with pytest.raises(CandidateError, match="CC1 = 9 is not allowed"):
        compile_candidate(attia_spec, {"CC1": 9.0, "CC2": 5.2, "CC3": 4.8})


def test_user_step_template(attia_spec) -> None:
    from voltloop.campaigns.spec import ProtocolSpace

    space = ProtocolSpace.model_validate(
        {
            "parameters": [{"name": "I1", "bounds": [1.0, 6.0]}, {"name": "HOLD", "unit": "V",
                           "values": [3.5, 3.55]}],
            "charge": [
                {"step": "cc", "rate_C": "I1", "soc_delta": 0.5, "label": "fast"},
                {"step": "rest", "duration_s": 20},
                {"step": "cv", "voltage_V": "HOLD", "duration_s": 300},
            ],
        }
    )  # fmt: skip
    spec = attia_spec.model_copy(update={"space": space, "eis": None})
    compiled = compile_candidate(spec, {"I1": 3.0, "HOLD": 3.55})
    kinds = [(s.step, s.id) for s in compiled.protocol.method][:6]
    assert kinds == [
        ("tag", None),
        ("constant_current", "fast"),
        ("open_circuit_voltage", "charge_1"),
        ("constant_voltage", "charge_2"),
        ("constant_current", "cc_finish"),
        ("constant_voltage", "cv_finish"),
    ]
    fast = compiled.protocol.method[1]
    assert fast.until_time_s == pytest.approx(0.5 * 3600 / 3.0)
    loop = compiled.protocol.method[-1]
    assert (loop.step, loop.cycle_count) == ("loop", 100)


def test_compiled_protocol_json_round_trip(attia_spec) -> None:
    compiled = compile_candidate(attia_spec, CANDIDATE)
    again = CompiledProtocol.from_json(compiled.to_json())
    assert again == compiled
    payload = compiled.schedule_payload("8d9f1c5e-3f7b-4a52-9a53-0c2f6b1d7e10")
    assert payload["max_temperature_C"] == 45.0
    assert CyclingProtocol.model_validate(payload["protocol"]) == compiled.protocol


def test_materials_test_protocol(materials_spec) -> None:
    compiled = compile_material_test(materials_spec, "LiMn0.5Fe0.5PO4")
    ids = [s.id for s in compiled.protocol.method if getattr(s, "id", None)]
    assert ids[:2] == ["formation1_cc_charge", "formation1_cv_charge"]
    assert compiled.protocol.method[0].rate_C == 0.1
    executed = unroll(list(compiled.protocol.method))
    assert Counter(c for c, s in executed if s.id == "discharge") == Counter(range(50))
    assert compiled.safety.max_temperature_C == 55.0
    assert compiled.protocol.sample.capacity_mAh == pytest.approx(3.0)
