# ruff: noqa: N802, N815  (unit suffixes: _V, _s, rate_C)
"""Charge-template steps of a protocol campaign: ``cc``, ``cv``, ``rest``.

A step's numbers are literals or the *name* of a searched or derived parameter
(``rate_C = "CC1"``); campaigns/protocol_campaign.py checks that every name exists
and drivers/protocols.py fills in the candidate's values.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from voltloop.campaigns.base import IDENTIFIER_PATTERN, StrictModel

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]
#: A number, or the name of a parameter whose value is used.
ParamRef = float | Identifier


class ConstantCurrentCharge(StrictModel):
    """Charge at ``rate_C`` until ``soc_delta`` of nominal capacity has passed, ``duration_s``
    has elapsed, or the voltage reaches ``until_voltage_V`` (default: the upper cut-off)."""

    step: Literal["cc"]
    rate_C: ParamRef
    soc_delta: ParamRef | None = Field(default=None, description="SOC added, 0..1")
    duration_s: ParamRef | None = None
    until_voltage_V: float | None = Field(default=None, gt=0, le=10)
    label: Identifier | None = Field(default=None, description="step id; default: parameter")

    @model_validator(mode="after")
    def _has_end(self) -> Self:
        if self.soc_delta is None and self.duration_s is None and self.until_voltage_V is None:
            raise ValueError("a cc step needs soc_delta, duration_s or until_voltage_V to end")
        return self


class ConstantVoltageHold(StrictModel):
    """Hold ``voltage_V`` until the current falls to ``until_rate_C`` or ``duration_s``."""

    step: Literal["cv"]
    voltage_V: ParamRef
    until_rate_C: ParamRef | None = None
    duration_s: ParamRef | None = None
    label: Identifier | None = None

    @model_validator(mode="after")
    def _has_end(self) -> Self:
        if self.until_rate_C is None and self.duration_s is None:
            raise ValueError("a cv step needs until_rate_C or duration_s to end")
        return self


class Rest(StrictModel):
    """Open-circuit rest for ``duration_s``."""

    step: Literal["rest"]
    duration_s: ParamRef
    label: Identifier | None = None


ChargeStep = Annotated[
    ConstantCurrentCharge | ConstantVoltageHold | Rest, Field(discriminator="step")
]


def step_refs(step: ChargeStep) -> list[tuple[str, str]]:
    """(field, parameter name) for every field of ``step`` that names a parameter."""
    fields = ("rate_C", "soc_delta", "duration_s", "voltage_V", "until_rate_C")
    return [(f, getattr(step, f)) for f in fields if isinstance(getattr(step, f, None), str)]
