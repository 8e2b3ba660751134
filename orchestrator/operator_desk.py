"""The operator's desk of a real run: loading sheets out, confirmations in, all as events.

In a real lab people build the cells and put them into channels. When the engine
asks to load a round's slots, :class:`LoadingDesk` (an ``orchestrator.ports.Operator``)
issues the round's loading sheet once — a ``loading_sheet`` event holding the sheet,
a CSV file (the report's loading-sheet columns plus an empty ``outcome`` column) and
a printed list — then answers ``WAITING`` until the operator's answer is stored.
Answers come from ``voltloop confirm`` (every cell loaded, or a cells file saying per
cell ``loaded`` / ``not_built`` / ``damaged``) or from the Prefect input form
(orchestrator/flows.py); both are stored by :func:`store_confirmation` as one
``loading_confirmed`` event. While cells wait, a ``loading_reminder`` event and a log
line come every ``reminder_every_s``; after ``timeout_s`` the cells still unanswered
count as not built (a ``loading_timeout`` event). The database is the only memory:
a resumed run reads the sheet, its deadline and every answer back from the events.
See docs/real-runs.md and docs/decisions/0003-operator-step-as-events.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from voltloop.db.engine import read_session, write_session
from voltloop.db.enums import EventLevel
from voltloop.db.ingest import record_event
from voltloop.db.models import Campaign, Candidate, Event, Experiment, Round
from voltloop.db.types import utcnow
from voltloop.orchestrator.ports import LoadingSlot, LoadOutcome

log = logging.getLogger("voltloop.operator")

#: Defaults (docs/real-runs.md): a reminder every 15 minutes; cells still unanswered a
#: day after their sheet was issued count as not built.
DEFAULT_REMINDER_EVERY_S = 15 * 60.0
DEFAULT_LOADING_TIMEOUT_S = 24 * 3600.0

SHEET_EVENT = "loading_sheet"
CONFIRMED_EVENT = "loading_confirmed"
REMINDER_EVENT = "loading_reminder"
TIMEOUT_EVENT = "loading_timeout"
ANSWERS = (LoadOutcome.LOADED, LoadOutcome.NOT_BUILT, LoadOutcome.DAMAGED)


class ConfirmationError(ValueError):
    """A confirmation that cannot be stored (bad cells file, nothing waiting, ...)."""

    exit_code = 2


@dataclass(frozen=True)
class OperatorSettings:
    reminder_every_s: float = DEFAULT_REMINDER_EVERY_S
    timeout_s: float = DEFAULT_LOADING_TIMEOUT_S
    sheet_dir: Path | None = None  # where sheet CSVs are written (None: not written)

    def __post_init__(self) -> None:
        if self.reminder_every_s <= 0 or self.timeout_s <= 0:
            raise ConfirmationError(
                f"reminder interval and loading timeout must be > 0 s, got "
                f"{self.reminder_every_s:g} s and {self.timeout_s:g} s"
            )


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


def _iso(at: dt.datetime) -> str:
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


# --- the desk -----------------------------------------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def sheet_csv(session: Session, campaign: str, round_index: int) -> str:
    """The report's loading-sheet CSV (docs/decisions/0082) plus an empty ``outcome``
    column for the operator to fill in and pass to ``voltloop confirm --cells``."""
    from voltloop.orchestrator.report import loading_sheet_csv
    from voltloop.orchestrator.report_data import gather_report

    data = gather_report(session, campaign, event_limit=0, spectra_experiments=0)
    rows = list(csv.reader(io.StringIO(loading_sheet_csv(data, round_index))))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*rows[0], "outcome"])
    for row in rows[1:]:
        writer.writerow([*row, ""])
    return out.getvalue()


class LoadingDesk:
    """Implements ``orchestrator.ports.Operator`` for a lab run by people.

    ``announce`` receives each human-facing line (default: the log);
    ``potentiostat_router(cycler_url, channel)`` connects the potentiostat to a channel
    before an EIS checkpoint (an EIS switch); without one, the potentiostat is
    assumed to be wired to the right cell and the request is only logged.
    ``now`` is the clock (UTC, timezone-aware)."""

    def __init__(
        self,
        db: Engine,
        campaign_id: int,
        campaign_name: str,
        settings: OperatorSettings | None = None,
        *,
        announce: Callable[[str], None] | None = None,
        potentiostat_router: Callable[[str, int], None] | None = None,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.campaign_id = campaign_id
        self.campaign_name = campaign_name
        self.settings = settings or OperatorSettings()
        self.announce = announce or log.info
        self.router = potentiostat_router
        self.now = now

    def pending(self) -> LoadingSheet | None:
        """The latest sheet if some of its cells still wait for an answer."""
        with read_session(self.db) as session:
            sheet = issued_sheet(session, self.campaign_id)
        return sheet if sheet is not None and sheet.waiting else None

    def load(self, slots: Sequence[LoadingSlot]) -> dict[str, LoadOutcome]:
        if not slots:
            return {}
        round_index = self._round_of(slots[0].experiment_id)
        with read_session(self.db) as session:
            sheet = issued_sheet(session, self.campaign_id, round_index)
        if sheet is None:
            sheet = self._issue(round_index, slots)
        outcomes = {
            s.experiment_id: sheet.decided.get(s.experiment_id, LoadOutcome.WAITING) for s in slots
        }
        waiting = [s for s in slots if outcomes[s.experiment_id] == LoadOutcome.WAITING]
        if not waiting:
            return outcomes
        now = self.now()
        if now >= sheet.deadline:
            for slot in waiting:
                outcomes[slot.experiment_id] = LoadOutcome.NOT_BUILT
            self._record(
                TIMEOUT_EVENT,
                f"round {round_index}: no answer for {len(waiting)} cell(s) by the loading "
                f"deadline {_iso(sheet.deadline)}; they count as not built: "
                + ", ".join(s.cell_id for s in waiting),
                {
                    "round": round_index,
                    "outcomes": {s.experiment_id: LoadOutcome.NOT_BUILT.value for s in waiting},
                },
                EventLevel.WARNING,
            )
        elif (now - sheet.last_reminder).total_seconds() >= sheet.reminder_every_s:
            left = (sheet.deadline - now).total_seconds() / 3600.0
            self._record(
                REMINDER_EVENT,
                f"round {round_index}: {len(waiting)} cell(s) wait to be loaded "
                f"({', '.join(s.cell_id for s in waiting[:8])}"
                f"{' ...' if len(waiting) > 8 else ''}); {left:.1f} h left before they count "
                f"as not built. Confirm with: voltloop confirm {self.campaign_name} "
                "[--cells FILE]",
                {"round": round_index, "at": _iso(now), "waiting": len(waiting)},
                EventLevel.WARNING,
            )
        return outcomes

    def attach_potentiostat(self, cycler_url: str, channel: int) -> None:
        if self.router is not None:
            self.router(cycler_url, channel)
        else:
            log.info("EIS: potentiostat assumed on %s channel %d", cycler_url, channel)

    # --- helpers -------------------------------------------------------------------------
    def _round_of(self, experiment_id: str) -> int:
        with read_session(self.db) as session:
            return int(
                session.scalar(
                    select(Round.round_index)
                    .join(Candidate, Candidate.round_id == Round.id)
                    .join(Experiment, Experiment.candidate_id == Candidate.id)
                    .where(Experiment.id == experiment_id)
                )
            )

    def _record(self, kind: str, message: str, payload: dict[str, Any], level: EventLevel) -> None:
        with write_session(self.db) as session:
            record_event(
                session, level, kind, message, campaign_id=self.campaign_id, payload=payload
            )
        self.announce(message)

    def _issue(self, round_index: int, slots: Sequence[LoadingSlot]) -> LoadingSheet:
        """Record the round's sheet (once), write its CSV and announce it."""
        now = self.now()
        deadline = now + dt.timedelta(seconds=self.settings.timeout_s)
        path = None
        with write_session(self.db) as session:
            if issued_sheet(session, self.campaign_id, round_index) is None:
                if self.settings.sheet_dir is not None:
                    target = Path(self.settings.sheet_dir)
                    target.mkdir(parents=True, exist_ok=True)
                    path = target / f"{self.campaign_name}-loading-sheet-round-{round_index}.csv"
                    _atomic_write(path, sheet_csv(session, self.campaign_name, round_index))
                cells = [
                    {
                        "experiment_id": s.experiment_id,
                        "cell_id": s.cell_id,
                        "cycler_url": s.cycler_url,
                        "channel": s.channel,
                        "parameters": dict(s.parameters),
                    }
                    for s in slots
                ]
                record_event(
                    session,
                    EventLevel.INFO,
                    SHEET_EVENT,
                    f"round {round_index}: loading sheet issued for {len(cells)} cell(s); "
                    f"answers due by {_iso(deadline)}",
                    campaign_id=self.campaign_id,
                    payload={
                        "round": round_index,
                        "issued_at": _iso(now),
                        "deadline": _iso(deadline),
                        "reminder_every_s": self.settings.reminder_every_s,
                        "path": None if path is None else str(path),
                        "cells": cells,
                    },
                )
            sheet = issued_sheet(session, self.campaign_id, round_index)
        assert sheet is not None
        self.announce(describe_sheet(sheet))
        return sheet


def describe_sheet(sheet: LoadingSheet) -> str:
    """The sheet as text for a terminal or log: one line per cell."""
    lines = [
        f"Loading sheet, campaign {sheet.campaign} round {sheet.round_index}: "
        f"{len(sheet.cells)} cell(s), answers due by {_iso(sheet.deadline)}"
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
