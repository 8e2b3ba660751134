"""Operator answers checked against a loading sheet: outcomes, unknown cells,
duplicates, blanks and answers that would change a recorded decision."""

from __future__ import annotations

import datetime as dt

import pytest

from voltloop.orchestrator.loading_confirmation import (
    Answer,
    ConfirmationError,
    LoadingSheet,
    SheetCell,
    describe_sheet,
    parse_outcome,
    resolve_answers,
)
from voltloop.orchestrator.operator_desk import OperatorSettings
from voltloop.orchestrator.ports import LoadOutcome

T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)


def sheet(decided: dict[str, LoadOutcome] | None = None) -> LoadingSheet:
    cells = tuple(
        SheetCell(f"exp-{i}", f"camp-r0-00{i}", "socket://lab:5025", i, {"CC1": 4.8, "n": i})
        for i in range(3)
    )
    return LoadingSheet(
        campaign="camp",
        round_index=0,
        issued_at=T0,
        deadline=T0 + dt.timedelta(hours=1),
        reminder_every_s=600.0,
        cells=cells,
        decided=decided or {},
        last_reminder=T0,
    )


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("loaded", LoadOutcome.LOADED),
        (" Loaded ", LoadOutcome.LOADED),
        ("not built", LoadOutcome.NOT_BUILT),
        ("NOT-BUILT", LoadOutcome.NOT_BUILT),
        ("damaged", LoadOutcome.DAMAGED),
        ("", None),
        ("  ", None),
    ],
)
def test_outcomes_are_read_forgivingly(text: str, outcome: LoadOutcome | None) -> None:
    assert parse_outcome(text) == outcome


@pytest.mark.parametrize("text", ["waiting", "broken", "ok", "yes"])
def test_other_outcomes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="loaded, not_built, damaged"):
        parse_outcome(text)


def test_answers_resolve_to_experiments_by_cell_or_experiment_id() -> None:
    answers = [
        Answer("camp-r0-000", "loaded", "line 2"),
        Answer("exp-1", "damaged", "line 3", key="experiment_id"),
        Answer("camp-r0-002", "", "line 4"),  # blank: still waiting
    ]
    assert resolve_answers(sheet(), answers) == {
        "exp-0": LoadOutcome.LOADED,
        "exp-1": LoadOutcome.DAMAGED,
    }


def test_an_unknown_cell_is_named_with_its_place() -> None:
    with pytest.raises(ConfirmationError) as info:
        resolve_answers(sheet(), [Answer("camp-r9-000", "loaded", "cells.csv line 7")])
    message = str(info.value)
    assert "cells.csv line 7" in message and "cell_id = 'camp-r9-000'" in message
    assert "camp-r0-001" in message  # lists the sheet's cells


def test_a_bad_outcome_names_line_field_and_value() -> None:
    with pytest.raises(ConfirmationError, match=r"line 3: outcome = 'brokn'"):
        resolve_answers(
            sheet(),
            [Answer("camp-r0-000", "loaded", "line 2"), Answer("camp-r0-001", "brokn", "line 3")],
        )


def test_a_cell_answered_twice_is_refused() -> None:
    with pytest.raises(ConfirmationError, match="answered twice .first at line 2"):
        resolve_answers(
            sheet(),
            [Answer("camp-r0-000", "loaded", "line 2"), Answer("exp-0", "damaged", "line 5")],
        )


def test_a_recorded_answer_may_be_repeated_but_not_changed() -> None:
    decided = sheet({"exp-0": LoadOutcome.LOADED})
    assert resolve_answers(decided, [Answer("camp-r0-000", "loaded", "row 1")]) == {}
    with pytest.raises(ConfirmationError, match="already recorded as loaded"):
        resolve_answers(decided, [Answer("camp-r0-000", "damaged", "row 1")])


def test_waiting_cells_and_the_printed_sheet() -> None:
    s = sheet({"exp-1": LoadOutcome.NOT_BUILT})
    assert [c.cell_id for c in s.waiting] == ["camp-r0-000", "camp-r0-002"]
    text = describe_sheet(s)
    assert "camp-r0-002  ->  socket://lab:5025 channel 2" in text
    assert "CC1=4.8" in text and "voltloop confirm camp" in text


def test_operator_settings_must_be_positive() -> None:
    with pytest.raises(ConfirmationError, match="must be > 0"):
        OperatorSettings(reminder_every_s=0)
