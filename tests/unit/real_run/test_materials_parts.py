"""Materials real runs without instruments: the cathode-mass field and its refusal, and
what a loading-sheet cell says about the material to build."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from voltloop.campaigns.loading import CampaignSpecError, load_campaign
from voltloop.campaigns.materials_campaign import MaterialsCampaign
from voltloop.orchestrator.materials_run import (
    CathodeMassError,
    SheetMaterial,
    require_cathode_mass,
)
from voltloop.orchestrator.operator_desk import sheet_parameters
from voltloop.orchestrator.ports import LoadingSlot
from voltloop.orchestrator.real_run import RealRunError, materials_parts

EXAMPLES = Path(__file__).resolve().parents[3] / "campaigns" / "examples"
CI = load_campaign(EXAMPLES / "materials-ci.toml")
PROTOCOL = load_campaign(EXAMPLES / "protocol-ci.toml")


def with_cell(spec: MaterialsCampaign, **changes) -> MaterialsCampaign:
    data = spec.model_dump(mode="json")
    data["cell"].update(changes)
    return MaterialsCampaign.model_validate(data)


def test_the_field_is_optional_checked_and_materials_only(tmp_path) -> None:
    assert isinstance(CI, MaterialsCampaign) and CI.cell.cathode_mass_g is None
    assert with_cell(CI, cathode_mass_g=0.0202).cell.cathode_mass_g == 0.0202
    text = (EXAMPLES / "materials-ci.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("[cell]\n", "[cell]\ncathode_mass_g = 0\n"))
    with pytest.raises(CampaignSpecError, match=r"cell\.cathode_mass_g = 0: must be > 0"):
        load_campaign(bad)
    protocol = tmp_path / "protocol.toml"
    protocol_text = (EXAMPLES / "protocol-ci.toml").read_text()
    protocol.write_text(protocol_text.replace("[cell]\n", "[cell]\ncathode_mass_g = 1.0\n"))
    with pytest.raises(CampaignSpecError, match=r"cell\.cathode_mass_g = 1(\.0)?: unknown field"):
        load_campaign(protocol)


def test_specific_energy_without_a_cathode_mass_is_refused() -> None:
    assert CI.needs_cathode_mass
    with pytest.raises(CathodeMassError) as refused:
        require_cathode_mass(CI)
    assert refused.value.exit_code == 2
    message = str(refused.value)
    assert "objectives[0] = specific_energy" in message
    assert "set cell.cathode_mass_g" in message and "nothing was written" in message
    with pytest.raises(CathodeMassError):
        materials_parts(CI)  # `voltloop run` asks before any I/O
    assert require_cathode_mass(with_cell(CI, cathode_mass_g=0.02)) == 0.02
    assert materials_parts(with_cell(CI, cathode_mass_g=0.02)).cathode_mass_g == 0.02


def test_a_campaign_without_specific_energy_needs_no_mass() -> None:
    data = CI.model_dump(mode="json")
    data["objectives"] = [{"metric": "capacity_retention", "direction": "maximize"}]
    spec = MaterialsCampaign.model_validate(data)
    assert not spec.needs_cathode_mass
    assert require_cathode_mass(spec) is None
    parts = materials_parts(spec)
    assert parts.cathode_mass_g is None and parts.predictor is None
    assert "specific_energy is not measured" in parts.cathode_mass_note()


def test_protocol_campaigns_have_no_materials_parts() -> None:
    assert materials_parts(PROTOCOL) is None
    other = SimpleNamespace(kind="other")
    with pytest.raises(RealRunError, match="no real run for campaigns of kind"):
        materials_parts(other)


def test_a_sheet_cell_names_the_material_to_build() -> None:
    slot = LoadingSlot("e1", "c1", "socket://lab:5025", 2, {"material_id": 7.0})
    material = SheetMaterial(7, "LiMn0.25Fe0.75PO4", "Li4MnFe3(PO4)4")
    assert sheet_parameters(slot, material) == {
        "material_label": "LiMn0.25Fe0.75PO4",
        "formula": "Li4MnFe3(PO4)4",
        "material_id": 7.0,
    }
    assert list(sheet_parameters(slot, material))[0] == "material_label"  # printed first
    assert sheet_parameters(slot, None) == {"material_id": 7.0}
