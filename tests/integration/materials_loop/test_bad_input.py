"""Bad materials input fails before anything is stored, with a message naming the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voltloop.campaigns.loading import load_campaign
from voltloop.db.engine import read_session
from voltloop.db.migrate import open_database
from voltloop.db.models import Campaign, Material

from .conftest import EXAMPLE

pytestmark = pytest.mark.integration
SCRIPT = Path(sys.executable).with_name("voltloop")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaign.toml"
    path.write_text(text)
    return path


def _nothing_stored(url: str) -> None:
    db = open_database(url, read_only=True)
    try:
        with read_session(db) as session:
            assert session.scalar(select(func.count()).select_from(Campaign)) == 0
            assert session.scalar(select(func.count()).select_from(Material)) == 0
    finally:
        db.dispose()


def test_unreadable_structure_file(tmp_path: Path) -> None:
    (tmp_path / "broken.cif").write_text("data_broken\n_cell_length_a not-a-number\n")
    text = EXAMPLE.read_text().replace("structures = []", 'structures = ["broken.cif"]')
    path = _write(tmp_path, text)
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    result = subprocess.run(
        [str(SCRIPT), "dry-run", str(path), "--db", url, "--no-prefect"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot read structure file" in result.stderr and "broken.cif" in result.stderr
    assert "Traceback" not in result.stderr
    _nothing_stored(url)


def test_every_material_excluded_is_an_empty_pool(tmp_path: Path) -> None:
    from voltloop.orchestrator.dry_run import run_dry_run
    from voltloop.orchestrator.materials_proposing import MaterialsPoolError

    path = _write(tmp_path, EXAMPLE.read_text().replace("max = 0.3", "max = 0.05"))
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(MaterialsPoolError) as caught:
        run_dry_run(load_campaign(path), url)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "every material of the pool is excluded by the thermal_risk constraint" in message
    assert "LiFePO4: thermal_risk 0.10 outside [None, 0.05]" in message
    _nothing_stored(url)


def test_a_material_the_simulated_lab_cannot_build(tmp_path: Path) -> None:
    from pymatgen.core import Lattice, Structure

    from voltloop.orchestrator.dry_run import run_dry_run
    from voltloop.orchestrator.materials_proposing import MaterialsPoolError

    rock_salt = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    (tmp_path / "NaCl.json").write_text(rock_salt.to_json())
    text = EXAMPLE.read_text().replace("structures = []", 'structures = ["NaCl.json"]')
    url = f"sqlite:///{tmp_path / 'nacl.db'}"
    with pytest.raises(MaterialsPoolError, match="cannot build a cell of NaCl"):
        run_dry_run(load_campaign(_write(tmp_path, text)), url)
    _nothing_stored(url)
