# ruff: noqa: N802, N815  (unit suffixes: _V, _A, _Ah, temperature_C)
"""voltloop's safety block and the checks every protocol passes before dispatch.

``aurora_unicycler`` carries voltage, current and capacity limits but no cell
temperature limit. :class:`SafetyBlock` is voltloop's addition: the cell's
datasheet limits and the temperature at which a running cell is stopped (sent to
the cycler with the schedule as ``max_temperature_C``, docs/protocols/cycler.md).

:func:`check_protocol` compares a protocol with the cell (safety block) and,
optionally, the cycler's hard limits, and returns every violation; each names the
step (method index, kind, id) and the limit. :func:`ensure_dispatchable` raises
:class:`ProtocolLimitError` if there is any. Nothing is ever clamped: a protocol
outside a limit is refused, never quietly adjusted.
"""

from __future__ import annotations

from typing import Protocol, Self

from aurora_unicycler import (
    ConstantCurrent,
    ConstantVoltage,
    CyclingProtocol,
    ImpedanceSpectroscopy,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Relative tolerance when comparing a computed current with a limit.
_REL_TOL = 1e-9
#: Largest EIS excitation accepted (linear-response regime), V rms.
MAX_EIS_AMPLITUDE_V = 0.05
#: Violations listed in an error message; the rest are counted.
MAX_VIOLATIONS_SHOWN = 10


class InstrumentLimitsLike(Protocol):
    """What a cycler reports about its hard limits (drivers.interfaces.CyclerLimits,
    drivers.sim.virtual_lab.InstrumentLimits both fit)."""

    max_current_A: float
    min_voltage_V: float
    max_voltage_V: float
    max_temperature_C: float
    max_steps: int


class SafetyBlock(BaseModel):
    """Cell limits that travel with a compiled protocol (what unicycler lacks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_temperature_C: float = Field(description="Stop the cell above this temperature.")
    temperature_limit_source: str = Field(
        description="Where the stop limit comes from (cell datasheet or a safe-mode constraint)."
    )
    min_temperature_C: float | None = None
    nominal_capacity_Ah: float = Field(gt=0)
    min_voltage_V: float
    max_voltage_V: float
    max_charge_current_A: float = Field(gt=0)
    max_discharge_current_A: float = Field(gt=0)
    cell_max_temperature_C: float
    chamber_temperature_C: float

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.max_temperature_C > self.cell_max_temperature_C:
            raise ValueError(
                f"max_temperature_C {self.max_temperature_C} exceeds the cell's "
                f"{self.cell_max_temperature_C}"
            )
        if self.min_voltage_V >= self.max_voltage_V:
            raise ValueError("min_voltage_V must be below max_voltage_V")
        return self


class LimitViolation(BaseModel):
    """One way a protocol breaks a limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_index: int | None = Field(description="index in protocol.method, None = whole protocol")
    step_kind: str | None = None
    step_id: str | None = None
    limit: str = Field(description="e.g. instrument.max_current_A, cell.max_voltage_V")
    value: float
    allowed: float
    message: str

    def __str__(self) -> str:
        return self.message


class ProtocolLimitError(ValueError):
    """A protocol that breaks cell or instrument limits; refused before dispatch."""

    exit_code = 2

    def __init__(self, violations: list[LimitViolation], name: str = "protocol") -> None:
        self.violations = violations
        lines = [f"{name} breaks {len(violations)} limit(s):"]
        lines += [f"  - {v}" for v in violations[:MAX_VIOLATIONS_SHOWN]]
        if len(violations) > MAX_VIOLATIONS_SHOWN:
            lines.append(f"  ... and {len(violations) - MAX_VIOLATIONS_SHOWN} more")
        super().__init__("\n".join(lines))


def step_label(index: int, step: object) -> str:
    """``method[3] constant_current 'CC1'``: how errors name a step."""
    kind = getattr(step, "step", type(step).__name__)
    step_id = getattr(step, "id", None)
    return f"method[{index}] {kind}" + (f" {step_id!r}" if step_id else "")


def step_current_A(step: ConstantCurrent, capacity_Ah: float | None) -> float:
    """Signed current of a CC step, A (+ charge, − discharge)."""
    if step.rate_C:
        if capacity_Ah is None:
            raise ValueError("rate_C needs sample.capacity_mAh")
        return step.rate_C * capacity_Ah
    return (step.current_mA or 0.0) / 1000.0


def check_protocol(
    protocol: CyclingProtocol,
    safety: SafetyBlock,
    limits: InstrumentLimitsLike | None = None,
) -> list[LimitViolation]:
    """Every violation of the cell's limits (``safety``) and the instrument's (``limits``)."""
    out: list[LimitViolation] = []
    capacity_Ah = protocol.sample.capacity_mAh / 1000.0 if protocol.sample.capacity_mAh else None

    def add(
        index: int | None, step: object, limit: str, value: float, allowed: float, text: str
    ) -> None:
        where = step_label(index, step) if index is not None else "protocol"
        out.append(
            LimitViolation(
                step_index=index,
                step_kind=getattr(step, "step", None) if index is not None else None,
                step_id=getattr(step, "id", None) if index is not None else None,
                limit=limit,
                value=value,
                allowed=allowed,
                message=f"{where}: {text}",
            )
        )

    if capacity_Ah is None:
        add(
            None,
            None,
            "sample.capacity_mAh",
            0.0,
            safety.nominal_capacity_Ah,
            "sample.capacity_mAh is not set, so C-rates have no current",
        )
    v_lo, v_hi = safety.min_voltage_V, safety.max_voltage_V
    windows = [("cell", v_lo, v_hi)]
    if limits is not None:
        windows.append(("instrument", limits.min_voltage_V, limits.max_voltage_V))

    def check_voltage(i: int, step: object, volts: float, what: str) -> None:
        for owner, lo, hi in windows:
            if volts > hi + 1e-9:
                add(
                    i,
                    step,
                    f"{owner}.max_voltage_V",
                    volts,
                    hi,
                    f"{what} {volts:g} V is above the {owner}'s max_voltage_V {hi:g} V",
                )
            elif volts < lo - 1e-9:
                add(
                    i,
                    step,
                    f"{owner}.min_voltage_V",
                    volts,
                    lo,
                    f"{what} {volts:g} V is below the {owner}'s min_voltage_V {lo:g} V",
                )

    for i, step in enumerate(protocol.method):
        if isinstance(step, ConstantCurrent):
            try:
                current = step_current_A(step, capacity_Ah)
            except ValueError:
                continue  # reported once above
            rate = f" ({step.rate_C:g} C × {capacity_Ah:g} Ah)" if step.rate_C else ""
            if current > 0 and current > safety.max_charge_current_A * (1 + _REL_TOL):
                add(
                    i,
                    step,
                    "cell.max_charge_current_A",
                    current,
                    safety.max_charge_current_A,
                    f"charge current {current:.4g} A{rate} exceeds the cell's maximum "
                    f"{safety.max_charge_current_A:.4g} A",
                )
            if current < 0 and -current > safety.max_discharge_current_A * (1 + _REL_TOL):
                add(
                    i,
                    step,
                    "cell.max_discharge_current_A",
                    -current,
                    safety.max_discharge_current_A,
                    f"discharge current {-current:.4g} A{rate} exceeds the cell's maximum "
                    f"{safety.max_discharge_current_A:.4g} A",
                )
            if limits is not None and abs(current) > limits.max_current_A * (1 + _REL_TOL):
                add(
                    i,
                    step,
                    "instrument.max_current_A",
                    abs(current),
                    limits.max_current_A,
                    f"current {abs(current):.4g} A{rate} exceeds the instrument's "
                    f"max_current_A {limits.max_current_A:.4g} A",
                )
            if step.until_voltage_V:
                check_voltage(i, step, step.until_voltage_V, "cut-off")
            else:
                bound = "upper" if current > 0 else "lower"
                add(
                    i,
                    step,
                    f"cell.{'max' if current > 0 else 'min'}_voltage_V",
                    0.0,
                    v_hi if current > 0 else v_lo,
                    f"no until_voltage_V: nothing ends the step at the {bound} cut-off",
                )
        elif isinstance(step, ConstantVoltage):
            check_voltage(i, step, step.voltage_V, "hold voltage")
        elif (
            isinstance(step, ImpedanceSpectroscopy)
            and step.amplitude_V is not None
            and step.amplitude_V > MAX_EIS_AMPLITUDE_V
        ):
            add(
                i,
                step,
                "eis.amplitude_V",
                step.amplitude_V,
                MAX_EIS_AMPLITUDE_V,
                f"EIS amplitude {step.amplitude_V:g} V is above {MAX_EIS_AMPLITUDE_V:g} V "
                "(outside the linear regime)",
            )
    if protocol.safety.max_voltage_V is not None:
        safety_max_V = protocol.safety.max_voltage_V
        if limits is not None and safety_max_V > limits.max_voltage_V + 1e-9:
            add(
                None,
                None,
                "instrument.max_voltage_V",
                safety_max_V,
                limits.max_voltage_V,
                f"safety max_voltage_V {safety_max_V:g} V is above the instrument's "
                f"{limits.max_voltage_V:g} V",
            )
    if limits is not None:
        for name in ("max_current_mA", "min_current_mA"):
            value_mA = getattr(protocol.safety, name, None)
            if value_mA is not None and abs(value_mA) / 1000.0 > limits.max_current_A + 1e-9:
                add(
                    None,
                    None,
                    "instrument.max_current_A",
                    abs(value_mA) / 1000.0,
                    limits.max_current_A,
                    f"safety {name} {abs(value_mA) / 1000.0:g} A is beyond the instrument's "
                    f"max_current_A {limits.max_current_A:g} A (it would refuse the schedule)",
                )
        if len(protocol.method) > limits.max_steps:
            add(
                None,
                None,
                "instrument.max_steps",
                len(protocol.method),
                limits.max_steps,
                f"{len(protocol.method)} steps; the instrument takes at most {limits.max_steps}",
            )
        if safety.max_temperature_C > limits.max_temperature_C:
            add(
                None,
                None,
                "instrument.max_temperature_C",
                safety.max_temperature_C,
                limits.max_temperature_C,
                f"temperature limit {safety.max_temperature_C:g} °C is above the instrument's "
                f"max_temperature_C {limits.max_temperature_C:g} °C",
            )
    if safety.chamber_temperature_C >= safety.max_temperature_C:
        add(
            None,
            None,
            "safety.max_temperature_C",
            safety.chamber_temperature_C,
            safety.max_temperature_C,
            f"chamber temperature {safety.chamber_temperature_C:g} °C is not below the stop "
            f"limit {safety.max_temperature_C:g} °C",
        )
    return out


def ensure_dispatchable(
    protocol: CyclingProtocol,
    safety: SafetyBlock,
    limits: InstrumentLimitsLike | None = None,
    name: str = "protocol",
) -> None:
    """Raise :class:`ProtocolLimitError` listing every violation, if there is any."""
    violations = check_protocol(protocol, safety, limits)
    if violations:
        raise ProtocolLimitError(violations, name)
