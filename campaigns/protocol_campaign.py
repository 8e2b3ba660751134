# ruff: noqa: N802, N815  (unit suffixes: _V, _s, rate_C)
"""Protocol campaigns: search over charging-protocol parameters for one cell type.

A protocol campaign has a parameter space and a charge template. Parameters are
either continuous (``bounds = [low, high]``) or take listed ``values``; derived
parameters are computed from the others (the Attia CC4). The charge template is a
list of steps (``cc``, ``cv``, ``rest``) whose numbers are either literals or the
*name* of a parameter. Each cycle is: the charge template, the fixed CC-CV finish to
the upper cut-off, rest, discharge, rest (``[cycling]``, a :class:`FixedCycle`).

``space.preset = "attia2020"`` fills in the Attia et al. ten-minute space (CC1–CC3
from the published value lists, CC4 derived, four 20 % SOC steps); the result is an
ordinary user-defined space, so every consumer handles one shape.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from voltloop.campaigns import attia
from voltloop.campaigns.base import (
    CampaignBase,
    CampaignKind,
    FixedCycle,
    Metric,
    SpecFieldError,
    StrictModel,
)
from voltloop.campaigns.charge_steps import (
    ChargeStep,
    ConstantCurrentCharge,
    ConstantVoltageHold,
    Identifier,
    ParamRef,
    step_refs,
)

_TOL = 1e-9


class CandidateError(ValueError):
    """A candidate (parameter values) that the space does not allow."""

    exit_code = 2


class SpacePreset(enum.StrEnum):
    ATTIA_2020 = "attia2020"  # Attia et al., Nature 578 (2020): 224 ten-minute protocols


class ParameterUnit(enum.StrEnum):
    C_RATE = "C"
    SOC = "soc"  # fraction 0..1
    SECONDS = "s"
    VOLTS = "V"


class ParameterDefinition(StrictModel):
    """A searched parameter: continuous within ``bounds`` or one of ``values``."""

    name: Identifier
    unit: ParameterUnit = ParameterUnit.C_RATE
    bounds: tuple[float, float] | None = Field(default=None, description="[low, high]")
    values: list[float] | None = Field(default=None, min_length=1, description="allowed values")

    @model_validator(mode="after")
    def _bounds_or_values(self) -> Self:
        if (self.bounds is None) == (self.values is None):
            raise SpecFieldError(
                "bounds",
                None if self.bounds is None else list(self.bounds),
                f"parameter {self.name!r} needs exactly one of bounds = [low, high] "
                "or values = [v1, v2, ...]",
            )
        if self.bounds is not None and not self.bounds[0] < self.bounds[1]:
            raise SpecFieldError(
                "bounds", list(self.bounds), "must be ordered [low, high] with low < high"
            )
        if self.bounds is not None and not all(math.isfinite(b) for b in self.bounds):
            raise SpecFieldError("bounds", list(self.bounds), "must be finite numbers")
        if self.values is not None and len(set(self.values)) != len(self.values):
            raise SpecFieldError("values", self.values, "must be distinct")
        for v in self.values or []:
            if not math.isfinite(v):
                raise SpecFieldError("values", self.values, "must be finite numbers")
        return self

    @property
    def discrete(self) -> bool:
        return self.values is not None

    @property
    def lower(self) -> float:
        return self.bounds[0] if self.bounds is not None else min(self.values or [0.0])

    @property
    def upper(self) -> float:
        return self.bounds[1] if self.bounds is not None else max(self.values or [0.0])

    def allows(self, value: float) -> bool:
        if self.values is not None:
            return any(abs(value - v) <= _TOL * max(1.0, abs(v)) for v in self.values)
        return self.lower - _TOL <= value <= self.upper + _TOL


class DerivedRule(enum.StrEnum):
    #: The C-rate of the step that uses this parameter is whatever completes the whole
    #: charge template in ``total_time_min`` (Attia's CC4).
    COMPLETE_CHARGE_IN_TIME = "complete_charge_in_time"


class DerivedParameter(StrictModel):
    """A parameter computed from the others; a candidate is infeasible outside ``bounds``."""

    name: Identifier
    rule: DerivedRule = DerivedRule.COMPLETE_CHARGE_IN_TIME
    total_time_min: float = Field(gt=0, le=24 * 60)
    bounds: tuple[float, float] = Field(description="allowed [low, high] of the derived value")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Self:
        if not 0 < self.bounds[0] < self.bounds[1]:
            raise SpecFieldError("bounds", list(self.bounds), "must satisfy 0 < low < high")
        return self


def attia_space_fields() -> dict[str, Any]:
    """The ``attia2020`` preset written out as an ordinary space (plain dicts)."""
    return {
        "parameters": [
            {"name": "CC1", "unit": "C", "values": list(attia.CC1_VALUES)},
            {"name": "CC2", "unit": "C", "values": list(attia.CC2_VALUES)},
            {"name": "CC3", "unit": "C", "values": list(attia.CC3_VALUES)},
        ],
        "derived": [
            {
                "name": "CC4",
                "rule": DerivedRule.COMPLETE_CHARGE_IN_TIME.value,
                "total_time_min": attia.CHARGE_TIME_MIN,
                "bounds": [attia.CC4_MIN, attia.CC4_MAX],
            }
        ],
        "charge": [
            {"step": "cc", "rate_C": name, "soc_delta": attia.STEP_SOC}
            for name in ("CC1", "CC2", "CC3", "CC4")
        ],
        "exclude": [dict(zip(("CC1", "CC2", "CC3"), attia.BASELINE, strict=True))],
    }


class ProtocolSpace(StrictModel):
    """Searched parameters, derived parameters and the charge template that uses them."""

    preset: SpacePreset | None = None
    parameters: list[ParameterDefinition] = Field(default_factory=list, max_length=16)
    derived: list[DerivedParameter] = Field(default_factory=list, max_length=4)
    charge: list[ChargeStep] = Field(default_factory=list, max_length=32)
    exclude: list[dict[str, float]] = Field(
        default_factory=list,
        description="Candidates never proposed (e.g. a control protocol run separately).",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("preset") != SpacePreset.ATTIA_2020.value:
            return data
        expanded = attia_space_fields()
        given = {k: data[k] for k in expanded if k in data}
        if given and any(cls._normalise(data[k]) != cls._normalise(expanded[k]) for k in given):
            raise ValueError(
                "preset 'attia2020' fixes parameters, derived, charge and exclude; remove "
                f"{', '.join(sorted(given))} or drop the preset to define your own space"
            )
        return {**data, **expanded}

    @staticmethod
    def _normalise(value: Any) -> Any:
        """Compare preset fields whether given as dicts or as validated models."""
        if isinstance(value, list):
            return [ProtocolSpace._normalise(v) for v in value]
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json", exclude_none=True)
        if isinstance(value, dict):
            return {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in value.items()
                if v is not None and k != "label"
            }
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.parameters:
            raise SpecFieldError(
                "parameters", [], "a protocol space needs at least one [[space.parameters]] entry"
            )
        if not self.charge:
            raise SpecFieldError(
                "charge", [], "a protocol space needs a charge template ([[space.charge]] steps)"
            )
        names = [p.name for p in self.parameters] + [d.name for d in self.derived]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise SpecFieldError("parameters", ", ".join(repeated), "names must be unique")
        used: list[str] = []
        for i, step in enumerate(self.charge):
            for field, ref in step_refs(step):
                if ref not in names:
                    raise SpecFieldError(
                        f"charge[{i}].{field}",
                        ref,
                        f"is not a parameter; known parameters: {', '.join(names)}",
                    )
                used.append(ref)
        unused = [n for n in names if n not in used]
        if unused:
            raise SpecFieldError(
                "parameters",
                ", ".join(unused),
                "not used by any charge step (a typo in a step, or a parameter to remove?)",
            )
        for derived in self.derived:
            self._check_derived(derived)
        for i, row in enumerate(self.exclude):
            free = {p.name for p in self.parameters}
            if set(row) != free:
                raise SpecFieldError(
                    f"exclude[{i}]",
                    row,
                    f"must give every searched parameter ({', '.join(sorted(free))})",
                )
        return self

    def _check_derived(self, derived: DerivedParameter) -> None:
        users = [
            (i, s)
            for i, s in enumerate(self.charge)
            if any(ref == derived.name for _, ref in step_refs(s))
        ]
        if len(users) != 1 or not isinstance(users[0][1], ConstantCurrentCharge):
            raise SpecFieldError(
                "derived",
                derived.name,
                f"{derived.rule.value} must be the rate_C of exactly one cc step",
            )
        index, step = users[0]
        if step.rate_C != derived.name or step.soc_delta is None:
            raise SpecFieldError(
                f"charge[{index}]",
                derived.name,
                "a derived rate must be the step's rate_C and the step must give soc_delta",
            )
        for i, other in enumerate(self.charge):
            if i == index:
                continue
            timed = other.duration_s is not None or (
                isinstance(other, ConstantCurrentCharge) and other.soc_delta is not None
            )
            if not timed:
                raise SpecFieldError(
                    f"charge[{i}]",
                    other.step,
                    f"derived {derived.name!r} ({derived.rule.value}) needs a known duration "
                    "for every other charge step: give soc_delta or duration_s",
                )

    # --- using the space -----------------------------------------------------------

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """The searched (free) parameters, in order: the optimiser's ``d`` inputs."""
        return tuple(p.name for p in self.parameters)

    @property
    def derived_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.derived)

    @property
    def discrete(self) -> bool:
        return all(p.discrete for p in self.parameters)

    def resolve(self, candidate: Mapping[str, float]) -> dict[str, float]:
        """Every parameter's value (free and derived) for ``candidate``.

        Raises :class:`CandidateError` naming the parameter, the value and what is
        allowed when a free value is missing, unknown or out of range, or a derived
        value falls outside its bounds.
        """
        free = {p.name: p for p in self.parameters}
        unknown = sorted(set(candidate) - set(free) - set(self.derived_names))
        if unknown:
            raise CandidateError(
                f"unknown parameter(s) {', '.join(unknown)}; this space has "
                f"{', '.join(free)}"
                + (f" (derived: {', '.join(self.derived_names)})" if self.derived else "")
            )
        missing = [n for n in free if n not in candidate]
        if missing:
            raise CandidateError(f"candidate lacks {', '.join(missing)}")
        values: dict[str, float] = {}
        for name, definition in free.items():
            value = float(candidate[name])
            if not definition.allows(value):
                allowed = (
                    f"one of {definition.values}"
                    if definition.values is not None
                    else f"within [{definition.lower}, {definition.upper}]"
                )
                raise CandidateError(f"{name} = {value:g} is not allowed; it must be {allowed}")
            values[name] = value
        for derived in self.derived:
            value = self._derive(derived, values)
            low, high = derived.bounds
            if not (low - _TOL <= value <= high + _TOL):
                shown = "no positive rate (no time left)" if math.isinf(value) else f"{value:.4g}"
                raise CandidateError(
                    f"derived {derived.name} = {shown} for "
                    + ", ".join(f"{k}={v:g}" for k, v in values.items())
                    + f"; it must lie within [{low}, {high}]"
                )
            given = candidate.get(derived.name)
            if given is not None and abs(float(given) - value) > 1e-6 * max(1.0, value):
                raise CandidateError(
                    f"{derived.name} = {float(given):g} contradicts the derived value {value:.6g}"
                )
            values[derived.name] = value
        return values

    def _derive(self, derived: DerivedParameter, values: Mapping[str, float]) -> float:
        """Apply ``derived.rule`` (only complete_charge_in_time exists)."""
        spent_h = 0.0
        own_soc = 0.0
        for step in self.charge:
            if isinstance(step, ConstantCurrentCharge) and step.rate_C == derived.name:
                own_soc = _value(step.soc_delta, values)
                continue
            if step.duration_s is not None:
                spent_h += _value(step.duration_s, values) / 3600.0
            elif isinstance(step, ConstantCurrentCharge) and step.soc_delta is not None:
                spent_h += _value(step.soc_delta, values) / _value(step.rate_C, values)
        remaining_h = derived.total_time_min / 60.0 - spent_h
        return own_soc / remaining_h if remaining_h > 0 else math.inf

    def is_feasible(self, candidate: Mapping[str, float]) -> bool:
        try:
            self.resolve(candidate)
        except CandidateError:
            return False
        return not self.is_excluded(candidate)

    def is_excluded(self, candidate: Mapping[str, float]) -> bool:
        return any(
            all(abs(float(candidate.get(k, math.nan)) - v) <= _TOL for k, v in row.items())
            for row in self.exclude
        )

    def enumerate(self) -> list[dict[str, float]]:
        """Every feasible, non-excluded candidate of an all-discrete space, resolved."""
        if not self.discrete:
            raise CandidateError(
                "only a space whose parameters all have listed values can be enumerated"
            )
        names = self.parameter_names
        out = []
        for combo in itertools.product(*(p.values or [] for p in self.parameters)):
            candidate = dict(zip(names, combo, strict=True))
            if self.is_excluded(candidate):
                continue
            try:
                out.append(self.resolve(candidate))
            except CandidateError:
                continue
        return out

    def max_value(self, ref: ParamRef | None) -> float | None:
        """The largest value ``ref`` can take (a literal, a parameter's upper bound)."""
        if ref is None or isinstance(ref, float | int):
            return None if ref is None else float(ref)
        for p in self.parameters:
            if p.name == ref:
                return p.upper
        for d in self.derived:
            if d.name == ref:
                return d.bounds[1]
        return None


def _value(ref: ParamRef | None, values: Mapping[str, float]) -> float:
    if ref is None:
        raise CandidateError("internal: missing step value")
    return float(values[ref]) if isinstance(ref, str) else float(ref)


#: Metrics a protocol campaign can optimise or constrain.
PROTOCOL_METRICS = frozenset(
    {
        Metric.CYCLE_LIFE,
        Metric.CAPACITY_RETENTION,
        Metric.DISCHARGE_CAPACITY,
        Metric.PEAK_TEMPERATURE,
        Metric.CHARGE_TIME,
    }
)


class ConfirmationSettings(StrictModel):
    """After the last round, the best tested protocols are tested again to end of life.

    Early predictions rank protocols well but carry a bias that can differ from one
    region of the space to another by more than the best protocols differ from each
    other. So, as Attia et al. validated their top protocols: the ``protocols`` tested
    protocols with the best posterior-mean life (among those likely to meet every
    limit) get ``cells`` fresh cells each, run to end of life, and the campaign
    recommends the one with the longest mean *measured* life.
    """

    protocols: int = Field(
        ge=1, le=256, description="How many of the best tested protocols are confirmed."
    )
    cells: int = Field(default=1, ge=1, le=64, description="Fresh cells per confirmed protocol.")

    @property
    def experiments(self) -> int:
        return self.protocols * self.cells


class ProtocolCampaign(CampaignBase):
    """Which charging protocol (from ``space``) gives the best objective for ``cell``?"""

    kind: Literal[CampaignKind.PROTOCOL] = CampaignKind.PROTOCOL
    space: ProtocolSpace
    cycling: FixedCycle
    replicates: bool = Field(
        default=True,
        description=(
            "A later round may put another cell on a protocol already tested when the "
            "acquisition rates it highest (a replicate, as in Attia et al.'s closed loop); "
            "false tests each protocol of a pool at most once."
        ),
    )

    confirmation: ConfirmationSettings | None = Field(
        default=None,
        description="Confirm the best protocols on fresh cells run to end of life "
        "after the last round; omit to recommend from early predictions alone.",
    )

    @model_validator(mode="after")
    def _protocol_rules(self) -> Self:
        self.check_metrics(PROTOCOL_METRICS, "protocol")
        self._check_confirmation()
        self.cycling.check_against(self.cell, "cycling")
        cell = self.cell
        for i, step in enumerate(self.space.charge):
            if isinstance(step, ConstantCurrentCharge):
                rate = self.space.max_value(step.rate_C)
                if rate is not None and rate > cell.max_charge_rate_C:
                    raise SpecFieldError(
                        f"space.charge[{i}].rate_C",
                        step.rate_C,
                        f"can reach {rate:g} C, above the cell's max_charge_rate_C "
                        f"({cell.max_charge_rate_C:g} C); lower the parameter's bounds/values "
                        "or raise cell.max_charge_rate_C",
                    )
                if step.until_voltage_V is not None and step.until_voltage_V > cell.max_voltage_V:
                    raise SpecFieldError(
                        f"space.charge[{i}].until_voltage_V",
                        step.until_voltage_V,
                        f"must not be above the cell's max_voltage_V ({cell.max_voltage_V} V)",
                    )
            if isinstance(step, ConstantVoltageHold):
                volts = self.space.max_value(step.voltage_V)
                if volts is not None and volts > cell.max_voltage_V:
                    raise SpecFieldError(
                        f"space.charge[{i}].voltage_V",
                        step.voltage_V,
                        f"can reach {volts:g} V, above the cell's max_voltage_V "
                        f"({cell.max_voltage_V} V)",
                    )
        return self

    def _check_confirmation(self) -> None:
        confirmation = self.confirmation
        if confirmation is None:
            return
        if self.lifetime.early_prediction_cycle is None:
            raise SpecFieldError(
                "confirmation",
                confirmation.model_dump(),
                "needs lifetime.early_prediction_cycle: without early prediction every "
                "cell already runs to end of life",
            )
        channels = self.instruments.total_channels
        if confirmation.experiments > channels:
            raise SpecFieldError(
                "confirmation.protocols",
                confirmation.protocols,
                f"{confirmation.protocols} protocols x {confirmation.cells} cells = "
                f"{confirmation.experiments} cells, more than the {channels} channels of "
                "the campaign's cyclers",
            )
