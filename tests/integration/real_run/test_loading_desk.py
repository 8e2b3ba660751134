"""The operator step of a real run on a real SQLite database with a fake cycler: the
loading sheet is issued once (event, CSV, printed), cells wait until the operator's
answer is stored, reminders come on time, the timeout counts silent cells as not
built, a damaged cell is carried around, and bad answers write nothing."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from voltloop.db.engine import read_session
from voltloop.db.models import Event, Experiment
from voltloop.orchestrator.loading_confirmation import ConfirmationError, confirm_campaign
from voltloop.orchestrator.real_run import step_is_idle

pytestmark = pytest.mark.timeout(60)


def events(campaign, kind: str | None = None) -> list[SimpleNamespace]:
    with read_session(campaign.db) as session:
        query = select(Event).where(Event.campaign_id == campaign.campaign_id)
        if kind is not None:
            query = query.where(Event.kind == kind)
        return [
            SimpleNamespace(kind=e.kind, message=e.message, payload=e.payload)
            for e in session.scalars(query.order_by(Event.id))
        ]


def event_count(campaign) -> int:
    with read_session(campaign.db) as session:
        return session.scalar(select(func.count()).select_from(Event))


def statuses(campaign) -> dict[str, str]:
    with read_session(campaign.db) as session:
        return {
            e.cell_id: e.status.value
            for e in session.scalars(
                select(Experiment).where(Experiment.campaign_id == campaign.campaign_id)
            )
        }


def until_sheet(engine, limit: int = 20):
    """Step until the desk has a sheet waiting; returns it."""
    for _ in range(limit):
        engine.step()
        sheet = engine.ctx.operator.pending()
        if sheet is not None:
            return sheet
    raise AssertionError("no loading sheet was issued")


def finish(engine, url: str, max_steps: int = 3000):
    """Step to the end, confirming every later sheet as all loaded."""
    for _ in range(max_steps):
        result = engine.step()
        if result.finished:
            return result
        if engine.ctx.operator.pending() is not None:
            confirm_campaign(url, engine.ctx.campaign_name)
    raise AssertionError(f"campaign not finished after {max_steps} steps")


def write_cells(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_sheet_wait_reminders_and_a_damaged_cell(desk_campaign, tmp_path) -> None:
    engine = desk_campaign.engine()
    sheet = until_sheet(engine)
    assert sheet.round_index == 0 and len(sheet.waiting) == 4
    # the CSV: the report's loading-sheet columns plus an empty outcome column
    rows = list(csv.DictReader(io.StringIO(Path(sheet.path).read_text())))
    assert [r["cell_id"] for r in rows] == [c.cell_id for c in sheet.cells]
    assert rows[0]["channel"] == "0" and rows[0]["status"] == "proposed"
    assert all(r["outcome"] == "" for r in rows) and "CC1" in rows[0]
    assert any("Loading sheet, campaign attia-ci round 0" in a for a in desk_campaign.announced)

    # waiting: nothing starts, the steps are idle, the sheet is issued only once
    for _ in range(3):
        assert step_is_idle(engine.step())
    assert set(statuses(desk_campaign).values()) == {"proposed"}
    assert len(events(desk_campaign, "loading_sheet")) == 1
    assert desk_campaign.cycler.channels[0].starts == 0

    # reminders every 600 s (the hand clock), one per interval however often it steps
    desk_campaign.clock.advance(599)
    engine.step()
    assert events(desk_campaign, "loading_reminder") == []
    desk_campaign.clock.advance(2)
    engine.step()
    engine.step()
    reminders = events(desk_campaign, "loading_reminder")
    assert len(reminders) == 1 and "4 cell(s) wait to be loaded" in reminders[0].message
    assert "voltloop confirm attia-ci" in reminders[0].message

    # the operator: three loaded, one damaged
    cells = [{"cell_id": c.cell_id, "outcome": "loaded"} for c in sheet.cells]
    cells[2]["outcome"] = "damaged"
    result = confirm_campaign(desk_campaign.url, "attia-ci", write_cells(tmp_path / "c.csv", cells))
    assert result.round_index == 0 and result.waiting == []
    assert sorted(result.stored.values()) == ["damaged", "loaded", "loaded", "loaded"]

    assert finish(engine, desk_campaign.url).finished
    by_cell = statuses(desk_campaign)
    damaged = sheet.cells[2].cell_id
    assert by_cell.pop(damaged) == "aborted"
    assert set(by_cell.values()) == {"completed"} and len(by_cell) == 7  # both rounds
    kinds = [e.kind for e in events(desk_campaign)]
    assert kinds.count("loading_sheet") == 2 and kinds.count("loading_confirmed") == 2
    not_loaded = events(desk_campaign, "cell_not_loaded")
    assert len(not_loaded) == 1 and "damaged" in not_loaded[0].message
    confirmed = events(desk_campaign, "loading_confirmed")[0].payload
    assert confirmed["cells"][damaged] == "damaged" and "voltloop confirm" in confirmed["source"]


def test_timeout_counts_silent_cells_as_not_built(desk_campaign) -> None:
    engine = desk_campaign.engine()
    sheet = until_sheet(engine)
    # one cell answered in time, the rest never
    first = sheet.cells[0].cell_id
    path = desk_campaign.settings.sheet_dir / "one.csv"
    write_cells(path, [{"cell_id": first, "outcome": "loaded"}])
    assert confirm_campaign(desk_campaign.url, "attia-ci", path).waiting == [
        c.cell_id for c in sheet.cells[1:]
    ]
    desk_campaign.clock.advance(3600)  # the deadline
    engine.step()
    timeout = events(desk_campaign, "loading_timeout")
    assert len(timeout) == 1 and "count as not built" in timeout[0].message
    assert len(timeout[0].payload["outcomes"]) == 3
    by_cell = statuses(desk_campaign)
    assert by_cell[first] in ("queued", "running", "early_predicted", "completed")
    assert [by_cell[c.cell_id] for c in sheet.cells[1:]] == ["aborted"] * 3
    # an answer after the timeout cannot change the recorded decision
    late = desk_campaign.settings.sheet_dir / "late.csv"
    write_cells(late, [{"cell_id": sheet.cells[1].cell_id, "outcome": "loaded"}])
    with pytest.raises(ConfirmationError, match="already recorded as not_built"):
        confirm_campaign(desk_campaign.url, "attia-ci", late, round_index=0)


def test_a_new_orchestrator_reads_the_sheet_back(desk_campaign) -> None:
    engine = desk_campaign.engine()
    sheet = until_sheet(engine)
    engine.release()
    desk_campaign.clock.advance(1800)
    again = desk_campaign.engine()  # a fresh engine and desk on the same database
    assert again.ctx.operator.pending().deadline == sheet.deadline
    for _ in range(3):
        again.step()
    assert len(events(desk_campaign, "loading_sheet")) == 1
    confirm_campaign(desk_campaign.url, "attia-ci")  # everything loaded
    assert finish(again, desk_campaign.url).finished
    assert set(statuses(desk_campaign).values()) == {"completed"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cell_id,outcome\nCELL0,loaded\nCELL1,brokn\n", "line 3: outcome = 'brokn': must be"),
        ("cell_id,outcome\nCELL0,loaded\nnobody,loaded\n", "line 3: cell_id = 'nobody': not on"),
        ("cell_id,state\nCELL0,loaded\n", "no 'outcome' column (columns: cell_id, state)"),
        ("cell_id,outcome\nCELL0,loaded\nCELL0,damaged\n", "line 3: cell_id = 'attia-ci-r0-000'"),
        ("cell_id,outcome\nCELL0,\nCELL1,  \n", "answers no waiting cell"),
        ("outcome,cell_id\nloaded,\n", "line 2: cell_id = '': a cell must be named"),
    ],
)
def test_a_bad_cells_file_writes_nothing(desk_campaign, tmp_path, text, expected) -> None:
    engine = desk_campaign.engine()
    sheet = until_sheet(engine)
    text = text.replace("CELL0", sheet.cells[0].cell_id).replace("CELL1", sheet.cells[1].cell_id)
    path = tmp_path / "cells.csv"
    path.write_text(text)
    before = event_count(desk_campaign)
    with pytest.raises(ConfirmationError) as info:
        confirm_campaign(desk_campaign.url, "attia-ci", path)
    assert expected in str(info.value) and str(path) in str(info.value)
    assert info.value.exit_code == 2
    assert event_count(desk_campaign) == before
    assert desk_campaign.engine().ctx.operator.pending().waiting == sheet.waiting


def test_a_cell_that_gets_its_channel_late_amends_the_sheet(desk_campaign) -> None:
    """A slot not on the issued sheet (its channel was busy with another campaign when
    the sheet went out) amends it; answers already stored stay."""
    from voltloop.orchestrator.loading_confirmation import Answer, store_confirmation
    from voltloop.orchestrator.ports import LoadingSlot, LoadOutcome

    engine = desk_campaign.engine()
    sheet = until_sheet(engine)
    store_confirmation(
        desk_campaign.db,
        desk_campaign.campaign_id,
        [Answer(sheet.cells[0].cell_id, "damaged", "test")],
        source="test",
    )
    desk = engine.ctx.operator
    first = sheet.cells[0]
    slots = [
        LoadingSlot(first.experiment_id, first.cell_id, first.cycler_url, first.channel, {}),
        LoadingSlot("late-exp", "attia-ci-r0-late", first.cycler_url, 3, {"CC1": 4.0}),
    ]
    desk_campaign.clock.advance(60)
    outcomes = desk.load(slots)
    assert outcomes == {first.experiment_id: LoadOutcome.DAMAGED, "late-exp": LoadOutcome.WAITING}
    amended = desk.pending()
    assert len(amended.cells) == 5 and amended.cells[-1].cell_id == "attia-ci-r0-late"
    assert amended.deadline > sheet.deadline
    sheets = events(desk_campaign, "loading_sheet")
    assert len(sheets) == 2 and "amended with 1 cell(s)" in sheets[1].message
    desk.load(slots)  # nothing new: no third sheet
    assert len(events(desk_campaign, "loading_sheet")) == 2


def test_nothing_to_confirm_before_a_sheet(desk_campaign, tmp_path) -> None:
    with pytest.raises(ConfirmationError, match="has not issued a loading sheet"):
        confirm_campaign(desk_campaign.url, "attia-ci")
    with pytest.raises(ConfirmationError, match="cells file .*missing.csv"):
        confirm_campaign(desk_campaign.url, "attia-ci", tmp_path / "missing.csv")
