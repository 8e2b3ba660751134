"""`voltloop init` writes example campaigns that load; the shipped examples validate."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from voltloop.campaigns.examples import EXAMPLES
from voltloop.campaigns.loading import load_campaign
from voltloop.campaigns.spec import MaterialsCampaign, ProtocolCampaign
from voltloop.orchestrator.cli import main

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_shipped_example_validates(name: str) -> None:
    path = Path(str(resources.files("voltloop.campaigns.examples").joinpath(EXAMPLES[name])))
    spec = load_campaign(path)
    expected = MaterialsCampaign if name.startswith("materials") else ProtocolCampaign
    assert isinstance(spec, expected)


def test_protocol_example_is_the_attia_loop() -> None:
    path = Path(str(resources.files("voltloop.campaigns.examples").joinpath("protocol.toml")))
    spec = load_campaign(path)
    assert isinstance(spec, ProtocolCampaign)
    assert (spec.rounds, spec.batch_size, spec.instruments.total_channels) == (4, 48, 48)
    assert spec.lifetime.early_prediction_cycle == 100
    assert spec.eis is not None and spec.eis.every_cycles == 50
    assert len(spec.space.enumerate()) == 224


@pytest.mark.parametrize("kind", ["protocol", "materials", "protocol-ci"])
def test_init_output_loads(tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "lab_campaign"
    with pytest.raises(SystemExit) as done:
        main(["init", str(directory), "--kind", kind])
    assert done.value.code == 0
    spec = load_campaign(directory / "campaign.toml")
    assert spec.name == "lab_campaign"
    assert spec.kind.value == ("materials" if kind == "materials" else "protocol")
    assert "wrote" in capsys.readouterr().err


def test_init_refuses_to_overwrite_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "campaign.toml"
    target.write_text("# my edits\n")
    with pytest.raises(SystemExit) as refused:
        main(["init", str(tmp_path)])
    assert refused.value.code == 2
    assert "already exists; use --force" in capsys.readouterr().err
    assert target.read_text() == "# my edits\n"
    with pytest.raises(SystemExit) as forced:
        main(["init", str(tmp_path), "--kind", "materials", "--force"])
    assert forced.value.code == 0
    assert isinstance(load_campaign(target), MaterialsCampaign)
    assert [p.name for p in tmp_path.iterdir()] == ["campaign.toml"]  # no temp files left


def test_init_into_a_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as refused:
        main(["init", str(blocker)])
    assert refused.value.code == 2
    assert "is not a directory" in capsys.readouterr().err


def test_load_campaign_missing_file_and_missing_structures(tmp_path: Path) -> None:
    from voltloop.campaigns.loading import CampaignSpecError

    with pytest.raises(CampaignSpecError, match="no such file"):
        load_campaign(tmp_path / "absent.toml")
    text = (
        resources.files("voltloop.campaigns.examples").joinpath("materials.toml").read_text()
    ).replace("structures = []", 'structures = ["structures/LiMnPO4.cif", "cifs/*.cif"]')
    path = tmp_path / "campaign.toml"
    path.write_text(text)
    with pytest.raises(CampaignSpecError) as caught:
        load_campaign(path)
    message = str(caught.value)
    assert "pool.structures[0] = 'structures/LiMnPO4.cif': no such file" in message
    assert "pool.structures[1] = 'cifs/*.cif': the pattern matches no file" in message
    (tmp_path / "structures").mkdir()
    (tmp_path / "structures" / "LiMnPO4.cif").write_text("data_x\n")
    (tmp_path / "cifs").mkdir()
    (tmp_path / "cifs" / "a.cif").write_text("data_a\n")
    spec = load_campaign(path)
    assert isinstance(spec, MaterialsCampaign)
    assert [p.name for p in spec.structure_paths()] == ["LiMnPO4.cif", "a.cif"]


def test_materials_example_pool_builds() -> None:
    from voltloop.campaigns.materials_pool import build_pool

    path = Path(str(resources.files("voltloop.campaigns.examples").joinpath("materials.toml")))
    spec = load_campaign(path)
    assert isinstance(spec, MaterialsCampaign)
    pool = build_pool(spec)
    assert len(pool) == 20  # olivine: 1 + 3 x 4; layered: 1 + 2 x 3
    assert {"LiFePO4", "LiMnPO4", "LiCoO2", "LiNiO2"} <= {c.label for c in pool}


def test_runnable_example_in_the_docs_validates(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "campaigns.md"
    text = docs.read_text().split("## A runnable example")[1].split("```toml")[1].split("```")[0]
    path = tmp_path / "mini.toml"
    path.write_text(text)
    spec = load_campaign(path)
    assert isinstance(spec, ProtocolCampaign) and spec.name == "attia-mini"
    assert len(spec.space.enumerate()) == 224
