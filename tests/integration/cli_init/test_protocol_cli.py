"""`voltloop protocol show|export` on the shipped example campaigns."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from voltloop.drivers.protocols import CompiledProtocol
from voltloop.orchestrator.cli import main

pytestmark = pytest.mark.integration

EXAMPLES = resources.files("voltloop.campaigns.examples")
PROTOCOL = str(EXAMPLES.joinpath("protocol.toml"))
MATERIALS = str(EXAMPLES.joinpath("materials.toml"))
CANDIDATE = "CC1=5.2,CC2=5.2,CC3=4.8"


def run(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return int(done.value.code or 0)


def test_show_prints_the_steps_and_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("protocol", "show", PROTOCOL, "--candidate", CANDIDATE) == 0
    err = capsys.readouterr().err
    for text in (
        "CC1",
        "CC4",
        "cc_finish",
        "discharge",
        "impedance_spectroscopy",
        "aging cycles: 100",
        "eis@50",
        "ok: within the dry run's simulated cycler limits",
    ):
        assert text in err  # fmt: skip


def test_show_json_is_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("protocol", "show", PROTOCOL, "--candidate", CANDIDATE, "--json") == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True and payload["violations"] == []
    compiled = CompiledProtocol.model_validate(payload["compiled"])
    assert compiled.parameters["CC4"] == pytest.approx(4.16)


def test_bad_candidates_exit_2_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("protocol", "show", PROTOCOL, "--candidate", "CC1=5.3,CC2=5.2,CC3=4.8") == 2
    assert "CC1 = 5.3 is not allowed; it must be one of" in capsys.readouterr().err
    assert run("protocol", "show", PROTOCOL, "--candidate", "CC1=3.6,CC2=3.6,CC3=3.6") == 2
    assert "derived CC4 = no positive rate" in capsys.readouterr().err
    assert run("protocol", "show", PROTOCOL) == 2
    assert "needs --candidate 'CC1=..., CC2=..., CC3=...'" in capsys.readouterr().err
    assert run("protocol", "show", PROTOCOL, "--candidate", "CC1") == 2
    assert "expected NAME=VALUE pairs" in capsys.readouterr().err


def test_export_pybamm_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "attia.txt"
    args = ("protocol", "export", PROTOCOL, "--candidate", CANDIDATE, "--format", "pybamm")
    assert run(*args, "--out", str(out)) == 0
    lines = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert sum(line.startswith("Discharge at 4.0C") for line in lines) == 100
    assert "note: PyBaMM cannot express EIS" in capsys.readouterr().err
    assert run(*args, "--out", str(out)) == 2  # exists, no --force
    assert "already exists" in capsys.readouterr().err


def test_export_refusals_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "attia.mps"
    code = run("protocol", "export", PROTOCOL, "--candidate", CANDIDATE, "--format", "biologic",
               "--out", str(out))  # fmt: skip
    assert code == 2
    assert "constant_current 'CC1' needs 5720 mA" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert run("protocol", "export", PROTOCOL, "--candidate", CANDIDATE, "--format", "csv") == 2
    assert "--format 'csv' is not known" in capsys.readouterr().err


def test_export_materials_test_to_biologic_and_neware(tmp_path: Path) -> None:
    mps = tmp_path / "olivine.mps"
    assert run("protocol", "export", MATERIALS, "--material", "LiMnPO4", "--format", "biologic",
               "--out", str(mps)) == 0  # fmt: skip
    text = mps.read_text(encoding="cp1252")
    assert text.startswith("EC-LAB SETTING FILE") and "PEIS" in text
    xml = tmp_path / "olivine.xml"
    assert run("protocol", "export", MATERIALS, "--format", "neware", "--out", str(xml)) == 0
    assert "<!-- voltloop notes" in xml.read_text()


def test_limits_queried_from_a_simulated_cycler_over_tcp(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from voltloop.drivers.sim.lab import SimulatedLab
    from voltloop.drivers.sim.virtual_lab import InstrumentLimits
    from voltloop.drivers.testing import simulated_cycler

    lab = SimulatedLab(channel_count=2, limits=InstrumentLimits(max_current_A=5.0))
    with simulated_cycler(lab, link="tcp") as server:
        code = run("protocol", "show", PROTOCOL, "--candidate", CANDIDATE,
                   "--limits-from", server.url)  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"refused (the limits of the cycler at {server.url})" in err
    assert "method[7] constant_current 'CC1': current 5.72 A (5.2 C × 1.1 Ah) exceeds the " in err
