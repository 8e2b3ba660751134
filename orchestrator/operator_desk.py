"""The operator's desk of a real run: loading sheets out, confirmations in, all as events.

In a real lab people build the cells and put them into channels. When the engine
asks to load a round's slots, :class:`LoadingDesk` (an ``orchestrator.ports.Operator``)
issues the round's loading sheet once — a ``loading_sheet`` event holding the sheet,
a CSV file (the report's loading-sheet columns plus an empty ``outcome`` column) and
a printed list; for a materials campaign each cell names the material to build it
from (pool label and formula, docs/decisions/0083) — then answers ``WAITING`` until
the operator's answer is stored. Answers come from ``voltloop confirm`` (every cell
loaded, or a cells file saying per cell ``loaded`` / ``not_built`` / ``damaged``) or
from the Prefect input form (orchestrator/flows.py); both are stored by
:func:`store_confirmation` as one ``loading_confirmed`` event. While cells wait, a
``loading_reminder`` event and a log line come every ``reminder_every_s``; after
``timeout_s`` the cells still unanswered count as not built (a ``loading_timeout``
event). The database is the only memory: a resumed run reads the sheet, its deadline
and every answer back from the events (orchestrator/loading_confirmation.py reads and
stores them).
See docs/real-runs.md and docs/decisions/0003-operator-step-as-events.md.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from voltloop.db.engine import read_session, write_session
from voltloop.db.enums import EventLevel
from voltloop.db.ingest import record_event
from voltloop.db.models import Campaign, Candidate, Experiment, Round
from voltloop.db.types import utcnow
from voltloop.orchestrator.loading_confirmation import (
    REMINDER_EVENT,
    SHEET_EVENT,
    TIMEOUT_EVENT,
    ConfirmationError,
    LoadingSheet,
    describe_sheet,
    iso_time,
    issued_sheet,
)
from voltloop.orchestrator.materials_run import SheetMaterial, sheet_materials
from voltloop.orchestrator.ports import LoadingSlot, LoadOutcome

log = logging.getLogger("voltloop.operator")

#: Defaults (docs/real-runs.md): a reminder every 15 minutes; cells still unanswered a
#: day after their sheet was issued count as not built.
DEFAULT_REMINDER_EVERY_S = 15 * 60.0
DEFAULT_LOADING_TIMEOUT_S = 24 * 3600.0


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
    column for the operator to fill in and pass to ``voltloop confirm --cells``.

    Materials campaigns get a ``material_label`` column after ``material`` (the
    formula): the pool label of the material to build each cell from (docs/decisions/0083).
    """
    from voltloop.orchestrator.report import loading_sheet_csv
    from voltloop.orchestrator.report_data import gather_report

    data = gather_report(session, campaign, event_limit=0, spectra_experiments=0)
    rows = list(csv.reader(io.StringIO(loading_sheet_csv(data, round_index))))
    header = rows[0]
    experiment = header.index("experiment_id")
    campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == campaign))
    materials = sheet_materials(session, campaign_id, [r[experiment] for r in rows[1:]])
    at = header.index("material") + 1 if materials else None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_with_label(header, at, "material_label") + ["outcome"])
    for row in rows[1:]:
        found = materials.get(row[experiment])
        writer.writerow(_with_label(row, at, found.label if found else "") + [""])
    return out.getvalue()


def _with_label(row: list[str], at: int | None, label: str) -> list[str]:
    return row if at is None else [*row[:at], label, *row[at:]]


def sheet_parameters(slot: LoadingSlot, material: SheetMaterial | None) -> dict[str, Any]:
    """What a sheet cell says about its candidate: the material to build it from
    (``material_label``, ``formula``) first, for materials campaigns, then the
    candidate's parameters."""
    if material is None:
        return dict(slot.parameters)
    return {"material_label": material.label, "formula": material.formula, **slot.parameters}


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
        on_sheet = set() if sheet is None else {c.experiment_id for c in sheet.cells}
        if sheet is None or any(s.experiment_id not in on_sheet for s in slots):
            sheet = self._issue(round_index, slots)  # new, or amended: a cell got a channel late
        elif sheet.path is not None and not Path(sheet.path).exists():
            self._write_csv(Path(sheet.path), round_index)  # stopped before it was written
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
                f"deadline {iso_time(sheet.deadline)}; they count as not built: "
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
                {"round": round_index, "at": iso_time(now), "waiting": len(waiting)},
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
        """Record the round's sheet, write its CSV and announce it — once, or again as an
        amended sheet (with a fresh deadline) when cells not on it ask to be loaded."""
        now = self.now()
        deadline = now + dt.timedelta(seconds=self.settings.timeout_s)
        path = None
        with write_session(self.db) as session:
            current = issued_sheet(session, self.campaign_id, round_index)
            known = [] if current is None else [dataclasses.asdict(c) for c in current.cells]
            late = [s for s in slots if s.experiment_id not in {c["experiment_id"] for c in known}]
            if late:
                materials = sheet_materials(
                    session, self.campaign_id, [s.experiment_id for s in late]
                )
                if self.settings.sheet_dir is not None:
                    target = Path(self.settings.sheet_dir)
                    target.mkdir(parents=True, exist_ok=True)
                    path = target / f"{self.campaign_name}-loading-sheet-round-{round_index}.csv"
                cells = known + [
                    {
                        "experiment_id": s.experiment_id,
                        "cell_id": s.cell_id,
                        "cycler_url": s.cycler_url,
                        "channel": s.channel,
                        "parameters": sheet_parameters(s, materials.get(s.experiment_id)),
                    }
                    for s in late
                ]
                record_event(
                    session,
                    EventLevel.INFO,
                    SHEET_EVENT,
                    f"round {round_index}: loading sheet "
                    + ("issued" if current is None else f"amended with {len(late)} cell(s)")
                    + f" for {len(cells)} cell(s); answers due by {iso_time(deadline)}",
                    campaign_id=self.campaign_id,
                    payload={
                        "round": round_index,
                        "issued_at": iso_time(now),
                        "deadline": iso_time(deadline),
                        "reminder_every_s": self.settings.reminder_every_s,
                        "path": None if path is None else str(path),
                        "cells": cells,
                    },
                )
            sheet = issued_sheet(session, self.campaign_id, round_index)
        assert sheet is not None
        if path is not None:
            self._write_csv(path, round_index)
        self.announce(describe_sheet(sheet))
        return sheet

    def _write_csv(self, path: Path, round_index: int) -> None:
        """The sheet's CSV, written only once its event is committed: a sheet on disk
        is always one that ``voltloop confirm`` can answer."""
        with read_session(self.db) as session:
            _atomic_write(path, sheet_csv(session, self.campaign_name, round_index))
