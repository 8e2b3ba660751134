"""`voltloop report` end to end on a campaign database written through the ingest API:
every section is there, plots are inline, the tables say what the database says,
missing data gives notes, errors are clear and nothing is half-written."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voltloop.db.engine import read_session
from voltloop.db.migrate import init_database, open_database
from voltloop.db.models import Candidate, Cycle, Experiment
from voltloop.orchestrator.cli import main

from .builder import build_campaign
from .htmltables import ReportPage

SECTIONS = ("summary", "recommendation", "plots", "rounds", "loading", "candidates",
            "experiments", "events", "spec")  # fmt: skip


def cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


@pytest.fixture(scope="module")
def campaign_db(tmp_path_factory) -> tuple[str, object]:
    path = tmp_path_factory.mktemp("report") / "campaign.db"
    url = f"sqlite:///{path}"
    init_database(url)
    return url, build_campaign(url, extra_events=3)


@pytest.fixture(scope="module")
def page(campaign_db, tmp_path_factory) -> tuple[str, dict, Path]:
    """The page rendered once through the CLI (with --csv and --json)."""
    url, built = campaign_db
    folder = tmp_path_factory.mktemp("out")
    out = folder / "report.html"
    with pytest.MonkeyPatch.context() as mp:
        captured = []
        mp.setattr("sys.stdout.write", lambda s: captured.append(s))
        with pytest.raises(SystemExit) as exit_info:
            main(["report", built.name, "--db", url, "--out", str(out), "--csv", str(folder),
                  "--events", "10", "--json"])  # fmt: skip
    assert exit_info.value.code in (0, None)
    return out.read_text(encoding="utf-8"), json.loads("".join(captured)), folder


def _db_truth(url: str) -> dict[str, dict]:
    db = open_database(url, read_only=True)
    truth = {}
    with read_session(db) as s:
        for e in s.scalars(select(Experiment)):
            cycles = s.scalar(select(func.count()).where(Cycle.experiment_id == e.id))
            eol = s.scalar(
                select(func.min(Cycle.cycle_index)).where(
                    Cycle.experiment_id == e.id,
                    Cycle.cycle_index > 0,
                    Cycle.discharge_capacity_ah < 0.8 * 1.1,
                )
            )
            candidate = s.get(Candidate, e.candidate_id)
            truth[e.cell_id] = {
                "status": e.status.value, "cycles": cycles, "eol": eol, "end_reason": e.end_reason,
                "candidate": candidate.id, "channel": e.channel_id - 1,
                "parameters": candidate.parameters, "experiment": e.id,
            }  # fmt: skip
    db.dispose()
    return truth


def test_every_section_and_plot_is_in_one_self_contained_page(page):
    text, summary, _ = page
    for section in SECTIONS:
        assert f'<section id="{section}">' in text
    for key in ("capacity", "calibration", "best", "space", "nyquist"):
        assert f'<figure class="fig" id="fig-{key}">' in text
    assert 'id="fig-pareto"' not in text  # one objective: no Pareto front
    assert text.count("<svg") >= 5
    assert "<script" not in text and "<link" not in text and "<img" not in text
    # only in-page anchors and inline data (matplotlib draws colour bars as data: images)
    assert not re.search(r'(href|src)="(?!#|data:)', text.split("</style>", 1)[1])
    assert not re.search(r"url\((?!#)", text)  # only clip paths inside the page
    assert summary["bytes"] == len(text.encode("utf-8")) and summary["experiments"]["failed"] == 1


def test_tables_match_the_database(page, campaign_db):
    text, _, _ = page
    url, built = campaign_db
    truth = _db_truth(url)
    report = ReportPage(text)
    experiments = {row["cell"]: row for row in report.table("experiments")}
    assert set(experiments) == set(truth)
    for cell, expected in truth.items():
        row = experiments[cell]
        assert row["status"] == expected["status"]
        assert int(row["cycles"]) == expected["cycles"]
        assert row["measured EOL"] == ("–" if expected["eol"] is None else str(expected["eol"]))
        assert row["end reason"] == expected["end_reason"]
    assert experiments[built.cell_ids[0][1]]["prediction @cycles (model)"] == (
        "420 ± 40 @30 (fade-line v3)"
    )
    candidates = {row["id"]: row for row in report.table("candidates")}
    best = candidates[str(built.recommended_candidate)]
    assert best["predicted life ± σ @cycles"] == "420 ± 40 @30"
    assert best["observed life"] == "420 (predicted)"
    assert candidates[str(built.candidate_ids[0][0])]["observed life"] == "61 (measured)"
    recommendation = dict(report.tables["recommendation"][0])
    assert recommendation["candidate"] == str(built.recommended_candidate)
    assert recommendation["parameters"] == "CC1=8, CC2=4, CC3=4.4"
    totals = report.table("rounds")[-1]
    assert totals["round"] == "all" and totals["completed"] == "3" and totals["aborted"] == "1"


def test_loading_sheets_in_page_and_csv(page, campaign_db):
    text, summary, folder = page
    url, _ = campaign_db
    truth = _db_truth(url)
    report = ReportPage(text)
    assert len(report.tables["loading"]) == 2
    for index in (0, 1):
        html_rows = report.table("loading", index)
        with open(folder / f"loading-sheet-round-{index}.csv", newline="") as handle:
            csv_rows = list(csv.DictReader(handle))
        assert [r["cell id"] for r in html_rows] == [r["cell_id"] for r in csv_rows]
        for row in csv_rows:
            expected = truth[row["cell_id"]]
            assert int(row["candidate_id"]) == expected["candidate"]
            assert int(row["channel"]) == expected["channel"]
            assert row["experiment_id"] == expected["experiment"]
            assert {k: float(row[k]) for k in ("CC1", "CC2", "CC3")} == expected["parameters"]
    assert len(summary["loading_sheets"]) == 2


def test_events_are_the_newest_with_level_colouring(page):
    text, _, _ = page
    report = ReportPage(text)
    events = report.table("events")
    assert len(events) == 10
    assert events[-1]["kind"] == "recommendation"
    classes = [c for c in report.row_classes["events"] if c]
    assert "ev-error" in classes
    error = next(e for e in events if e["level"] == "error")
    assert error["message"] == "start refused <b>bold</b>"  # shown as text, not markup
    assert "start refused &lt;b&gt;bold&lt;/b&gt;" in text
    assert "19 events in all" in text


def test_missing_data_gives_notes_not_failures(sqlite_db_url, tmp_path, capsys):
    built = build_campaign(sqlite_db_url, predictions=False, eis=False, recommendation=False)
    out = tmp_path / "r.html"
    code, _, err = cli(capsys, "report", built.name, "--db", sqlite_db_url, "--out", str(out))
    assert code == 0, err
    text = out.read_text()
    assert "No EIS spectra were measured" in text
    assert "No experiment has both a lifetime prediction and a measured end of life" in text
    assert "No recommendation yet" in text
    assert 'id="fig-capacity"' in text and 'id="fig-best"' in text  # measured lives remain


def test_pareto_front_for_two_objectives(sqlite_db_url, tmp_path, capsys):
    objectives = [{"metric": "cycle_life", "direction": "maximize"},
                  {"metric": "peak_temperature", "direction": "minimize"}]  # fmt: skip
    built = build_campaign(sqlite_db_url, objectives=objectives)
    out = tmp_path / "r.html"
    assert cli(capsys, "report", built.name, "--db", sqlite_db_url, "--out", str(out))[0] == 0
    text = out.read_text()
    assert 'id="fig-pareto"' in text and "candidates are non-dominated" in text


def test_loading_sheet_export_and_errors(campaign_db, tmp_path, capsys):
    url, built = campaign_db
    sheet = tmp_path / "sheet.csv"
    code, out, _ = cli(capsys, "report", built.name, "--db", url, "--loading-sheet", "1",
                       "--out", str(sheet), "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["rows"] == 3
    assert sheet.read_text().splitlines()[0].startswith("round,cell_id,candidate_id")
    code, _, err = cli(capsys, "report", built.name, "--db", url, "--loading-sheet", "9")
    assert code == 2 and "has no round 9; its rounds: 0, 1" in err


def test_unknown_campaign_and_unreachable_databases(campaign_db, tmp_path, capsys):
    url, built = campaign_db
    out = tmp_path / "r.html"
    code, _, err = cli(capsys, "report", "nope", "--db", url, "--out", str(out))
    assert code == 2 and "unknown campaign 'nope'" in err and built.name in err
    code, _, err = cli(capsys, "report", built.name, "--db", f"sqlite:///{tmp_path}/none.db")
    assert code == 1 and "no database at" in err
    code, _, err = cli(capsys, "report", built.name, "--db", "postgresql://u@127.0.0.1:9/x")
    assert code == 1 and "cannot open database" in err
    code, _, err = cli(capsys, "report", built.name, "--db", url, "--out",
                       str(tmp_path / "missing" / "r.html"))  # fmt: skip
    assert code == 2 and "does not exist" in err
    code, _, err = cli(capsys, "report", built.name, "--db", url, "--csv", str(tmp_path / "no"))
    assert code == 2 and "--csv folder" in err
    assert not out.exists() and not (tmp_path / "none.db").exists()


def test_rewrite_is_atomic_reads_without_writing_and_leaves_no_temporary_files(
    campaign_db, tmp_path, capsys
):
    url, built = campaign_db
    copy = tmp_path / "copy.db"
    shutil.copyfile(Path(url.removeprefix("sqlite:///")), copy)
    before = copy.read_bytes()
    out = tmp_path / "r.html"
    out.write_text("old")
    code, _, err = cli(capsys, "report", built.name, "--db", f"sqlite:///{copy}", "--out", str(out))
    assert code == 0, err
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert copy.read_bytes() == before  # opened read-only: not a byte changed


def test_full_size_campaign_page_stays_small(tmp_path, capsys):
    """192 experiments × 100 cycles (Attia's 4 × 48): the page stays well under 5 MB."""
    from .large import build_large

    url = f"sqlite:///{tmp_path / 'full.db'}"
    init_database(url)
    name = build_large(url)
    out = tmp_path / "full.html"
    code, stdout, err = cli(capsys, "report", name, "--db", url, "--out", str(out), "--json")
    assert code == 0, err
    size = json.loads(stdout)["bytes"]
    assert size == out.stat().st_size and size < 5_000_000
    report = ReportPage(out.read_text())
    assert len(report.table("experiments")) == 192
    assert len(report.tables["loading"]) == 4


def test_materials_campaign_without_a_parameter_space(sqlite_db_url, tmp_path, capsys):
    """Candidates that are materials (no numeric parameters), two objectives one of
    which the database cannot give: notes, and the pool's label with the formula in
    tables and sheets (the first two materials are labelled; a third is not)."""
    from voltloop.db.engine import write_session
    from voltloop.db.enums import EventLevel
    from voltloop.db.models import Campaign, Event, Material

    objectives = [
        {"metric": "specific_energy", "direction": "maximize"},
        {"metric": "capacity_retention", "direction": "maximize", "threshold": 0.9},
    ]
    built = build_campaign(sqlite_db_url, objectives=objectives)
    db = open_database(sqlite_db_url)
    with write_session(db) as s:
        s.scalar(select(Campaign)).kind = "materials"
        ids = []
        for i, candidate in enumerate(s.scalars(select(Candidate))):
            material = Material(formula=f"LiFe{i}PO4", structure={}, structure_hash=f"h{i}")
            s.add(material)
            s.flush()
            candidate.material_id, candidate.parameters = material.id, {}
            ids.append(material.id)
        campaign = s.scalar(select(Campaign))
        labels = {"material_ids": ids[:2], "labels": ["olivine-0", "olivine-1"]}
        s.add(Event(campaign_id=campaign.id, kind="materials_pool", level=EventLevel.INFO,
                    message="pool", payload=labels))  # fmt: skip
        campaign.spec = {k: v for k, v in campaign.spec.items() if k != "space"}
    db.dispose()
    out = tmp_path / "r.html"
    sheet = tmp_path / "sheet.csv"
    code, _, err = cli(capsys, "report", built.name, "--db", sqlite_db_url, "--out", str(out))
    assert code == 0, err
    text = out.read_text()
    assert "no numeric parameters" in text
    assert "No candidate has values for both specific_energy and capacity_retention" in text
    report = ReportPage(text)
    shown = {row["material"] for row in report.table("candidates")}
    assert shown == {"olivine-0 (LiFe0PO4)", "olivine-1 (LiFe1PO4)"} | {
        f"LiFe{i}PO4" for i in range(2, 6)
    }
    code, _, _ = cli(capsys, "report", built.name, "--db", sqlite_db_url, "--loading-sheet", "0",
                     "--out", str(sheet))  # fmt: skip
    with open(sheet, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert code == 0 and {(r["material"], r["material_label"]) for r in rows} == {
        ("LiFe0PO4", "olivine-0"),
        ("LiFe1PO4", "olivine-1"),
        ("LiFe2PO4", ""),
    }
