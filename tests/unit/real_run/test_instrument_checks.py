"""What makes ``voltloop run`` refuse an instrument: identity, firmware, self-test,
channels, current/voltage/temperature limits, EIS range; and idle-step detection."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from voltloop.campaigns.loading import load_campaign
from voltloop.drivers.interfaces import (
    CyclerLimits,
    InstrumentIdentity,
    InstrumentKind,
    SelfTestResult,
)
from voltloop.drivers.methodscript import DEVICE_LIMITS, DeviceModel
from voltloop.orchestrator.context import StepKind, StepResult
from voltloop.orchestrator.real_run import (
    CombinedLimits,
    check_cycler,
    check_potentiostat,
    step_is_idle,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "protocol-ci.toml"
SPEC = load_campaign(EXAMPLE)
IDN = InstrumentIdentity(
    kind=InstrumentKind.CYCLER,
    maker="VOLTLOOP",
    model="VLC-8",
    serial="SIM00001",
    firmware="1.0.0",
    url="socket://lab:5025",
)
LIMITS = CyclerLimits(
    channels=8,
    max_current_A=30.0,
    min_voltage_V=0.0,
    max_voltage_V=5.0,
    max_temperature_C=80.0,
    max_steps=256,
    max_batch=5000,
)
PASSED = SelfTestResult(passed=True, code=0)


def cfg(**changes):
    base = {
        "url": "socket://lab:5025",
        "channels": 4,
        "identity": "VOLTLOOP,VLC-8",
        "firmware": None,
    }
    return SimpleNamespace(**{**base, **changes})


def test_a_matching_cycler_passes() -> None:
    assert check_cycler(SPEC, cfg(), IDN, LIMITS, PASSED) == []


def test_identity_firmware_and_self_test_mismatches_are_named() -> None:
    problems = check_cycler(
        SPEC,
        cfg(identity="ACME,CY-96", firmware="2.1"),
        IDN,
        LIMITS,
        SelfTestResult(passed=False, code=-330, messages=("calibration lost",)),
    )
    assert len(problems) == 3
    assert "does not contain the configured identity 'ACME,CY-96'" in problems[0]
    assert "firmware '1.0.0', the campaign requires '2.1'" in problems[1]
    assert "self-test failed (calibration lost)" in problems[2]


def test_channels_and_limits_are_checked_against_the_cell() -> None:
    small = LIMITS.model_copy(
        update={"channels": 2, "max_current_A": 10.0, "max_voltage_V": 3.6, "min_voltage_V": 2.5}
    )
    problems = "\n".join(check_cycler(SPEC, cfg(), IDN, small, PASSED))
    assert "channels = 4, the instrument has 2" in problems
    assert "cell.max_charge_rate_C x nominal capacity = 11 A" in problems  # 10 C x 1.1 Ah
    assert "cell.max_discharge_rate_C x nominal capacity = 22 A" in problems
    assert "max_voltage_V 3.6 V (+0.05 V safety margin)" in problems
    assert "min_voltage_V 2 V is below the instrument's min_voltage_V 2.5 V" in problems
    hot = LIMITS.model_copy(update={"max_temperature_C": 40.0})
    assert "temperature stop limit 45 °C" in check_cycler(SPEC, cfg(), IDN, hot, PASSED)[0]


def test_potentiostat_identity_and_eis_range() -> None:
    pot = IDN.model_copy(update={"kind": InstrumentKind.POTENTIOSTAT, "maker": "PalmSens"})
    limits = DEVICE_LIMITS[DeviceModel.EMSTAT4_HR]
    assert check_potentiostat(SPEC, cfg(identity="PalmSens"), pot, limits) == []
    narrow = replace(limits, max_frequency_Hz=1000.0, min_frequency_Hz=1.0)
    problems = check_potentiostat(SPEC, cfg(identity="Gamry"), pot, narrow)
    assert len(problems) == 3
    assert "identity 'Gamry'" in problems[0]
    assert "start_frequency_Hz 10000" in problems[1] and "end_frequency_Hz 0.01" in problems[2]


def test_combined_limits_take_the_tightest_cycler() -> None:
    other = LIMITS.model_copy(update={"max_current_A": 12.0, "min_voltage_V": 1.0})
    combined = CombinedLimits.of([LIMITS, other])
    assert combined.max_current_A == 12.0 and combined.min_voltage_V == 1.0
    assert combined.max_voltage_V == 5.0 and combined.max_steps == 256


@pytest.mark.parametrize(
    ("result", "idle"),
    [
        (StepResult(StepKind.WAIT), True),
        (StepResult(StepKind.DISPATCH, counts={"waiting": 4, "loaded": 0}), True),
        (StepResult(StepKind.DISPATCH, counts={"waiting": 1, "loaded": 3}), False),
        (StepResult(StepKind.DISPATCH, counts={"started": 2, "waiting": 0}), False),
        (StepResult(StepKind.POLL, counts={"ingested": 1}), False),
    ],
)
def test_idle_steps(result: StepResult, idle: bool) -> None:
    assert step_is_idle(result) is idle


def test_the_campaign_file_can_require_a_firmware_version() -> None:
    from voltloop.campaigns.base import CyclerInstrument

    pinned = CyclerInstrument(url="socket://lab:5025", channels=4, firmware="2.1")
    problems = check_cycler(SPEC, pinned, IDN, LIMITS, PASSED)
    assert len(problems) == 1
    assert "firmware '1.0.0', the campaign requires '2.1'" in problems[0]
    assert check_cycler(SPEC, pinned.model_copy(update={"firmware": "1.0.0"}), IDN, LIMITS,
                        PASSED) == []  # fmt: skip
