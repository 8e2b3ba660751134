"""Loading sheets and the operator's answers, as stored in the event table.

A round's issued sheet (``loading_sheet`` event) and every answer about its cells
(``loading_confirmed`` from ``voltloop confirm`` or the Prefect form,
``loading_timeout`` from the desk) are read back by :func:`issued_sheet`; answers are
checked against the sheet and stored by :func:`store_confirmation` — one event in
one transaction, or nothing (docs/decisions/0003-operator-step-as-events.md). The
desk that issues sheets is orchestrator/operator_desk.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from voltloop.db.engine import write_session
from voltloop.db.enums import EventLevel
from voltloop.db.ingest import record_event
from voltloop.db.models import Campaign, Event
from voltloop.orchestrator.ports import LoadOutcome

SHEET_EVENT = "loading_sheet"
CONFIRMED_EVENT = "loading_confirmed"
REMINDER_EVENT = "loading_reminder"
TIMEOUT_EVENT = "loading_timeout"
ANSWERS = (LoadOutcome.LOADED, LoadOutcome.NOT_BUILT, LoadOutcome.DAMAGED)


class ConfirmationError(ValueError):
    """A confirmation that cannot be stored (bad cells file, nothing waiting, ...)."""

    exit_code = 2


@dataclass(frozen=True)
class SheetCell:
    experiment_id: str
    cell_id: str
    cycler_url: str
    channel: int
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadingSheet:
    """A round's issued sheet, and what has been decided about its cells so far."""

    campaign: str
    round_index: int
    issued_at: dt.datetime
    deadline: dt.datetime
    reminder_every_s: float
    cells: tuple[SheetCell, ...]
    decided: Mapping[str, LoadOutcome]  # by experiment id
    last_reminder: dt.datetime
    path: str | None = None

    @property
    def waiting(self) -> list[SheetCell]:
        return [c for c in self.cells if c.experiment_id not in self.decided]

    def by_cell_id(self) -> dict[str, SheetCell]:
        return {c.cell_id: c for c in self.cells}


def iso_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat()


def _time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _events(session: Session, campaign_id: int, *kinds: str) -> list[Event]:
    return list(
        session.scalars(
            select(Event)
            .where(Event.campaign_id == campaign_id, Event.kind.in_(kinds))
            .order_by(Event.id)
        )
    )


def decisions(session: Session, campaign_id: int) -> dict[str, LoadOutcome]:
    """Every stored answer (confirmations and timeouts), by experiment id; first wins."""
    decided: dict[str, LoadOutcome] = {}
    for event in _events(session, campaign_id, CONFIRMED_EVENT, TIMEOUT_EVENT):
        for experiment_id, outcome in (event.payload or {}).get("outcomes", {}).items():
            decided.setdefault(experiment_id, LoadOutcome(outcome))
    return decided


def issued_sheet(
    session: Session, campaign_id: int, round_index: int | None = None
) -> LoadingSheet | None:
    """The sheet of ``round_index`` (default: the latest issued), or None."""
    sheets = _events(session, campaign_id, SHEET_EVENT)
    if round_index is not None:
        sheets = [e for e in sheets if (e.payload or {}).get("round") == round_index]
    if not sheets:
        return None
    payload = sheets[-1].payload or {}
    index = int(payload["round"])
    reminders = [
        _time(e.payload["at"])
        for e in _events(session, campaign_id, REMINDER_EVENT)
        if (e.payload or {}).get("round") == index
    ]
    issued = _time(payload["issued_at"])
    campaign = session.get(Campaign, campaign_id)
    return LoadingSheet(
        campaign=campaign.name if campaign else str(campaign_id),
        round_index=index,
        issued_at=issued,
        deadline=_time(payload["deadline"]),
        reminder_every_s=float(payload["reminder_every_s"]),
        cells=tuple(SheetCell(**c) for c in payload["cells"]),
        decided=decisions(session, campaign_id),
        last_reminder=max(reminders, default=issued),
        path=payload.get("path"),
    )


# --- answers: from a cells file, a form, or "all loaded" -------------------------------


def parse_outcome(text: str) -> LoadOutcome | None:
    """``loaded`` / ``not_built`` / ``damaged`` (case, spaces and dashes forgiven);
    None for a blank answer; ValueError otherwise."""
    norm = text.strip().lower().replace(" ", "_").replace("-", "_")
    if not norm:
        return None
    try:
        outcome = LoadOutcome(norm)
    except ValueError:
        outcome = None
    if outcome not in ANSWERS:
        raise ValueError(
            f"must be one of {', '.join(a.value for a in ANSWERS)} (or blank to leave "
            "the cell waiting)"
        )
    return outcome


@dataclass(frozen=True)
class Answer:
    """One operator answer: ``where`` says where it came from (file and line, form row)."""

    cell_id: str
    outcome: str
    where: str
    key: str = "cell_id"  # the field that named the cell


def resolve_answers(sheet: LoadingSheet, answers: Iterable[Answer]) -> dict[str, LoadOutcome]:
    """Check answers against the sheet; outcome per experiment id of the cells answered.

    Raises ConfirmationError naming the place, field and value of the first bad
    answer. Blank outcomes are skipped; repeating a stored answer is harmless;
    changing one is refused.
    """
    cells = sheet.by_cell_id()
    by_experiment = {c.experiment_id: c for c in sheet.cells}
    seen: dict[str, str] = {}
    resolved: dict[str, LoadOutcome] = {}
    for answer in answers:
        cell = cells.get(answer.cell_id) or by_experiment.get(answer.cell_id)
        if cell is None:
            listing = ", ".join(sorted(cells)[:12]) + (" ..." if len(cells) > 12 else "")
            raise ConfirmationError(
                f"{answer.where}: {answer.key} = {answer.cell_id!r}: not on the loading "
                f"sheet of {sheet.campaign!r} round {sheet.round_index} (its cells: {listing})"
            )
        if cell.cell_id in seen:
            raise ConfirmationError(
                f"{answer.where}: {answer.key} = {answer.cell_id!r}: answered twice "
                f"(first at {seen[cell.cell_id]})"
            )
        seen[cell.cell_id] = answer.where
        try:
            outcome = parse_outcome(answer.outcome)
        except ValueError as exc:
            raise ConfirmationError(f"{answer.where}: outcome = {answer.outcome!r}: {exc}") from exc
        if outcome is None:
            continue
        stored = sheet.decided.get(cell.experiment_id)
        if stored is not None and stored != outcome:
            raise ConfirmationError(
                f"{answer.where}: outcome = {answer.outcome!r}: cell {cell.cell_id} was "
                f"already recorded as {stored.value}; a recorded answer cannot change"
            )
        if stored is None:
            resolved[cell.experiment_id] = outcome
    return resolved


def read_cells_file(path: Path) -> list[Answer]:
    """Rows of a cells file (CSV with ``cell_id`` or ``experiment_id``, and ``outcome``;
    other columns, such as the rest of the exported loading sheet, are ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfirmationError(f"cells file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfirmationError(f"cells file {path}: not UTF-8 text ({exc.reason})") from exc
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    key = "cell_id" if "cell_id" in columns else "experiment_id"
    missing = [c for c in (key, "outcome") if c not in columns]
    if missing:
        raise ConfirmationError(
            f"cells file {path}: no {' or '.join(map(repr, missing))} column "
            f"(columns: {', '.join(columns) or 'none'}); expected cell_id,outcome"
        )
    answers = []
    try:
        for row in reader:
            name = (row.get(key) or "").strip()
            outcome = row.get("outcome") or ""
            if not name and not outcome.strip():
                continue  # an empty line
            where = f"cells file {path} line {reader.line_num}"
            if not name:
                raise ConfirmationError(f"{where}: {key} = '': a cell must be named")
            answers.append(Answer(name, outcome, where, key))
    except csv.Error as exc:
        raise ConfirmationError(f"cells file {path} line {reader.line_num}: {exc}") from exc
    return answers


@dataclass(frozen=True)
class Confirmation:
    """What a stored (or refused-as-empty) confirmation did."""

    campaign: str
    round_index: int
    stored: dict[str, str]  # cell id -> outcome, newly recorded
    waiting: list[str]  # cell ids still unanswered
    event_id: int | None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def store_confirmation(
    db: Engine,
    campaign_id: int,
    answers: Sequence[Answer] | None,
    *,
    source: str,
    round_index: int | None = None,
) -> Confirmation:
    """Check ``answers`` (None: every waiting cell loaded) against the round's sheet and
    store them as one ``loading_confirmed`` event, in one transaction; nothing is
    written if any answer is bad (ConfirmationError)."""
    with write_session(db) as session:
        sheet = issued_sheet(session, campaign_id, round_index)
        name = session.get(Campaign, campaign_id).name
        if sheet is None:
            raise ConfirmationError(
                f"campaign {name!r} has not issued a loading sheet"
                + ("" if round_index is None else f" for round {round_index}")
                + "; nothing waits for a confirmation"
            )
        if answers is None:
            if not sheet.waiting:
                raise ConfirmationError(
                    f"every cell of {name!r} round {sheet.round_index} is already answered"
                )
            outcomes = {c.experiment_id: LoadOutcome.LOADED for c in sheet.waiting}
        else:
            outcomes = resolve_answers(sheet, answers)
        cells = {c.experiment_id: c.cell_id for c in sheet.cells}
        stored = {cells[e]: o.value for e, o in outcomes.items()}
        waiting = [c.cell_id for c in sheet.waiting if c.experiment_id not in outcomes]
        event_id = None
        if outcomes:
            counts = {a.value: sum(o == a for o in outcomes.values()) for a in ANSWERS}
            event_id = record_event(
                session,
                EventLevel.INFO,
                CONFIRMED_EVENT,
                f"round {sheet.round_index}: operator answered for {len(outcomes)} cell(s) "
                f"via {source}: " + ", ".join(f"{n} {k}" for k, n in counts.items() if n),
                campaign_id=campaign_id,
                payload={
                    "round": sheet.round_index,
                    "source": source,
                    "outcomes": {e: o.value for e, o in outcomes.items()},
                    "cells": stored,
                },
            )
    return Confirmation(name, sheet.round_index, stored, waiting, event_id)


def confirm_campaign(
    db_url: str, campaign: str, cells_file: Path | None = None, round_index: int | None = None
) -> Confirmation:
    """``voltloop confirm``: all waiting cells loaded, or the answers of ``cells_file``."""
    from voltloop.db.migrate import open_database
    from voltloop.orchestrator.engine import find_campaign

    answers = read_cells_file(cells_file) if cells_file is not None else None
    db = open_database(db_url)
    try:
        campaign_id, _ = find_campaign(db, campaign)
        confirmation = store_confirmation(
            db,
            campaign_id,
            answers,
            source="voltloop confirm" + (f" --cells {cells_file}" if cells_file else ""),
            round_index=round_index,
        )
    finally:
        db.dispose()
    if answers is not None and not confirmation.stored:
        raise ConfirmationError(
            f"cells file {cells_file} answers no waiting cell (every outcome blank or "
            "already recorded); nothing was stored"
        )
    return confirmation


def describe_sheet(sheet: LoadingSheet) -> str:
    """The sheet as text for a terminal or log: one line per cell."""
    lines = [
        f"Loading sheet, campaign {sheet.campaign} round {sheet.round_index}: "
        f"{len(sheet.cells)} cell(s), answers due by {iso_time(sheet.deadline)}"
        + (f" (CSV: {sheet.path})" if sheet.path else "")
    ]
    for c in sheet.cells:
        params = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.parameters.items()
        )
        lines.append(f"  {c.cell_id}  ->  {c.cycler_url} channel {c.channel}   [{params}]")
    lines.append(
        f"When loaded: voltloop confirm {sheet.campaign}   (or --cells FILE with "
        "cell_id,outcome rows: loaded / not_built / damaged)"
    )
    return "\n".join(lines)
