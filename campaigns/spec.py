"""Campaign specifications: the public models, in one place.

Import from here (``from voltloop.campaigns.spec import ProtocolCampaign, ...``);
the models live in campaigns/base.py (shared parts), campaigns/protocol_campaign.py
(with its charge steps in campaigns/charge_steps.py) and
campaigns/materials_campaign.py. ``CampaignSpec`` is the tagged union of both kinds
(tag: ``kind``); campaigns/loading.py reads one from TOML.

A spec round-trips through JSON (``spec.model_dump(mode="json")`` and
:func:`spec_from_json`), which is how the database stores it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from voltloop.campaigns.base import (
    CampaignBase,
    CampaignKind,
    CellDefinition,
    Constraint,
    CyclerInstrument,
    Direction,
    EisCheckpoints,
    FixedCycle,
    Instruments,
    LifetimeSettings,
    LoopMode,
    Metric,
    Objective,
    PotentiostatInstrument,
    ReferencePerformanceTest,
    StrictModel,
)
from voltloop.campaigns.charge_steps import (
    ChargeStep,
    ConstantCurrentCharge,
    ConstantVoltageHold,
    Rest,
)
from voltloop.campaigns.materials_campaign import (
    MATERIALS_METRICS,
    MaterialsCampaign,
    MaterialsPool,
    MaterialsTestProtocol,
    Prototype,
    SubstitutionRule,
)
from voltloop.campaigns.protocol_campaign import (
    PROTOCOL_METRICS,
    CandidateError,
    DerivedParameter,
    DerivedRule,
    ParameterDefinition,
    ParameterUnit,
    ProtocolCampaign,
    ProtocolSpace,
    SpacePreset,
)

#: Either campaign kind, chosen by the ``kind`` field.
CampaignSpec = Annotated[ProtocolCampaign | MaterialsCampaign, Field(discriminator="kind")]

_ADAPTER: TypeAdapter[ProtocolCampaign | MaterialsCampaign] = TypeAdapter(CampaignSpec)


def validate_spec(data: dict[str, Any]) -> ProtocolCampaign | MaterialsCampaign:
    """Validate a plain mapping (parsed TOML, stored JSON) into the right campaign model."""
    return _ADAPTER.validate_python(data)


def spec_from_json(text: str | bytes) -> ProtocolCampaign | MaterialsCampaign:
    """Inverse of ``spec.model_dump_json()`` (the form the database stores)."""
    return _ADAPTER.validate_json(text)


__all__ = [
    "MATERIALS_METRICS",
    "PROTOCOL_METRICS",
    "CampaignBase",
    "CampaignKind",
    "CampaignSpec",
    "CandidateError",
    "CellDefinition",
    "ChargeStep",
    "ConstantCurrentCharge",
    "ConstantVoltageHold",
    "Constraint",
    "CyclerInstrument",
    "DerivedParameter",
    "DerivedRule",
    "Direction",
    "EisCheckpoints",
    "FixedCycle",
    "Instruments",
    "LifetimeSettings",
    "LoopMode",
    "MaterialsCampaign",
    "MaterialsPool",
    "MaterialsTestProtocol",
    "Metric",
    "Objective",
    "ParameterDefinition",
    "ParameterUnit",
    "PotentiostatInstrument",
    "ProtocolCampaign",
    "ProtocolSpace",
    "Prototype",
    "ReferencePerformanceTest",
    "Rest",
    "SpacePreset",
    "StrictModel",
    "SubstitutionRule",
    "spec_from_json",
    "validate_spec",
]
