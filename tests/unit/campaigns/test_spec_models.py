"""Spec models: cross-field rules, the attia2020 preset, user step spaces, JSON round trip."""

from __future__ import annotations

import math

import pytest

from voltloop.campaigns import attia
from voltloop.campaigns.loading import parse_campaign
from voltloop.campaigns.spec import (
    CandidateError,
    MaterialsCampaign,
    ProtocolCampaign,
    spec_from_json,
    validate_spec,
)


def test_attia_preset_expands_to_an_ordinary_space(protocol_toml: str) -> None:
    spec = parse_campaign(protocol_toml)
    assert isinstance(spec, ProtocolCampaign)
    space = spec.space
    assert space.parameter_names == ("CC1", "CC2", "CC3")
    assert space.derived_names == ("CC4",)
    assert [s.rate_C for s in space.charge] == ["CC1", "CC2", "CC3", "CC4"]
    assert space.discrete


def test_preset_space_enumerates_the_same_224_protocols(protocol_toml: str) -> None:
    space = parse_campaign(protocol_toml).space
    from_spec = sorted(
        tuple(round(c[k], 9) for k in ("CC1", "CC2", "CC3", "CC4")) for c in space.enumerate()
    )
    reference = sorted(tuple(round(v, 9) for v in p) for p in attia.enumerate_protocols())
    assert from_spec == reference


def test_resolve_derives_cc4_and_rejects_bad_candidates(protocol_toml: str) -> None:
    space = parse_campaign(protocol_toml).space
    values = space.resolve({"CC1": 5.2, "CC2": 5.2, "CC3": 4.8})
    assert values["CC4"] == pytest.approx(attia.derive_cc4(5.2, 5.2, 4.8))
    with pytest.raises(CandidateError, match=r"CC1 = 5\.3 is not allowed.*one of"):
        space.resolve({"CC1": 5.3, "CC2": 5.2, "CC3": 4.8})
    with pytest.raises(CandidateError, match=r"derived CC4 = .*within \[0\.1, 4\.81\]"):
        space.resolve({"CC1": 3.6, "CC2": 3.6, "CC3": 3.6})
    with pytest.raises(CandidateError, match="unknown parameter"):
        space.resolve({"CC1": 5.2, "CC2": 5.2, "CC3": 4.8, "CC9": 1})
    with pytest.raises(CandidateError, match="lacks CC3"):
        space.resolve({"CC1": 5.2, "CC2": 5.2})
    assert not space.is_feasible({"CC1": 4.8, "CC2": 4.8, "CC3": 4.8})  # the excluded baseline


def test_user_defined_steps_space(steps_toml: str) -> None:
    spec = parse_campaign(steps_toml)
    space = spec.space
    assert space.parameter_names == ("I1", "I2", "SOC1")
    assert not space.discrete
    assert space.resolve({"I1": 3.0, "I2": 2.0, "SOC1": 0.4}) == {"I1": 3.0, "I2": 2.0, "SOC1": 0.4}
    with pytest.raises(CandidateError, match=r"within \[2\.0, 6\.0\]"):
        space.resolve({"I1": 7.0, "I2": 2.0, "SOC1": 0.4})
    with pytest.raises(CandidateError, match="enumerated"):
        space.enumerate()


def test_json_round_trip_is_exact(protocol_toml: str, steps_toml: str, materials_toml: str) -> None:
    for text in (protocol_toml, steps_toml, materials_toml):
        spec = parse_campaign(text)
        again = spec_from_json(spec.model_dump_json())
        assert again == spec
        assert type(again) is type(spec)


def test_models_are_frozen(protocol_toml: str) -> None:
    spec = parse_campaign(protocol_toml)
    with pytest.raises(Exception, match="frozen"):
        spec.rounds = 9  # type: ignore[misc]


def test_materials_campaign(materials_toml: str) -> None:
    spec = parse_campaign(materials_toml)
    assert isinstance(spec, MaterialsCampaign)
    rule = spec.pool.substitutions[0]
    assert rule.substituents == ["Mn", "Co", "Ni"]
    assert spec.test_protocol.formation_cycles == 2


def test_validate_spec_from_python_dict(protocol_toml: str) -> None:
    data = parse_campaign(protocol_toml).model_dump(mode="json")
    data["batch_size"] = 8
    assert validate_spec(data).batch_size == 8
    data["batch_size"] = 9
    with pytest.raises(ValueError, match="must not exceed the cycler channels available"):
        validate_spec(data)


def test_temperature_stop_limit_is_the_tightest_safe_limit(protocol_toml: str) -> None:
    spec = parse_campaign(protocol_toml)
    assert spec.temperature_stop_limit_C == 45.0
    soft = protocol_toml.replace("max = 45.0", "max = 45.0\nsafe_mode = false")
    assert parse_campaign(soft).temperature_stop_limit_C == 60.0
    assert math.isfinite(spec.lifetime.stop_cycle) and spec.lifetime.stop_cycle == 100
