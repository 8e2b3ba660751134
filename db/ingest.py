"""Writing measurements: cycles in bulk, EIS spectra, predictions, events.

Every function works inside the caller's Session transaction and does not
commit; use :func:`voltloop.db.engine.write_session` (or commit yourself) so
that, e.g., a batch of cycles and the experiment's ingest position are stored
together or not at all. Re-sending data never duplicates it: cycles are unique
on (experiment, cycle index), spectra on (experiment, cycle index), predictions
on (experiment, model version, cycles seen); the functions say how many rows
were new.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sqlalchemy import Connection, Table, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .blobs import Codec, encode_arrays
from .cycles import CycleData
from .enums import EventLevel
from .errors import InvalidRecordError, UnknownExperimentError
from .models import Cycle, CycleSeries, EisSpectrum, Event, Experiment, Prediction
from .types import utcnow

#: How raw series are compressed (docs/decisions/0011-array-blob-format.md).
SERIES_CODEC = Codec.ZLIB
SERIES_LEVEL = 1
SERIES_SHUFFLE = True


def _insert_ignoring_conflicts(session: Session, table: Table, keys: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING`` for the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys)
    raise InvalidRecordError(f"unsupported database dialect {dialect}")  # pragma: no cover


def _execute_counting_new(
    connection: Connection, statement: Any, rows: list[dict[str, Any]], key: Any
) -> int:
    """Run an insert-ignoring-conflicts over ``rows``; return how many rows it inserted.

    sqlite3 sums executemany row counts exactly; psycopg reports -1, so on
    PostgreSQL the inserted keys come back through RETURNING (SQLAlchemy's
    batched "insertmanyvalues").
    """
    if connection.dialect.name == "sqlite":
        return connection.execute(statement, rows).rowcount
    return len(connection.execute(statement.returning(key), rows).all())


def _require_experiment(session: Session, experiment_id: str) -> Experiment:
    """The experiment, after flushing the session's pending objects (the Core
    statements below do not autoflush, and may refer to rows added just before)."""
    session.flush()
    experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise UnknownExperimentError(f"no experiment {experiment_id!r} in the database")
    return experiment


def append_cycles(
    session: Session,
    experiment_id: str,
    cycles: Iterable[CycleData],
    *,
    records_ingested: int | None = None,
) -> int:
    """Append cycles (summary + raw series) to an experiment; return how many were new.

    Idempotent on (experiment, cycle index): cycles already stored, or repeated
    within ``cycles``, are skipped (the first copy wins) and never duplicated,
    also when two writers race (``ON CONFLICT DO NOTHING``). Rows go in with one
    executemany. ``records_ingested``, if given, advances the experiment's ingest
    position (never moves it back) in the same transaction.
    """
    stored_experiment = _require_experiment(session, experiment_id)
    batch: dict[int, CycleData] = {}
    for cycle in cycles:
        batch.setdefault(int(cycle.cycle_index), cycle)
    new = 0
    if batch:
        table = Cycle.__table__
        connection = session.connection()
        stored = set(
            connection.execute(
                select(table.c.cycle_index).where(
                    table.c.experiment_id == experiment_id,
                    table.c.cycle_index.between(min(batch), max(batch)),
                )
            ).scalars()
        )
        rows = []
        for index, cycle in batch.items():
            if index in stored:
                continue
            row = cycle.summary.as_row()
            row["experiment_id"] = experiment_id
            row["cycle_index"] = index
            rows.append(row)
        if rows:
            statement = _insert_ignoring_conflicts(
                session, table, ["experiment_id", "cycle_index"]
            ).returning(table.c.id, table.c.cycle_index)
            inserted = connection.execute(statement, rows).all()
            new = len(inserted)
            series_rows = [
                {
                    "cycle_id": cycle_id,
                    "data": encode_arrays(
                        series, codec=SERIES_CODEC, level=SERIES_LEVEL, shuffle=SERIES_SHUFFLE
                    ),
                }
                for cycle_id, index in inserted
                if (series := batch[index].series) is not None
            ]
            if series_rows:
                connection.execute(insert(CycleSeries.__table__), series_rows)
    if records_ingested is not None:
        if records_ingested < 0:
            raise InvalidRecordError(f"records_ingested must be >= 0, got {records_ingested}")
        experiment = Experiment.__table__
        session.connection().execute(
            update(experiment)
            .where(
                experiment.c.id == experiment_id, experiment.c.records_ingested < records_ingested
            )
            .values(records_ingested=records_ingested, updated_at=utcnow())
        )
        session.expire(stored_experiment, ["records_ingested", "updated_at"])
    return new


def store_eis_spectrum(
    session: Session,
    experiment_id: str,
    cycle_index: int,
    frequency_Hz: np.ndarray,
    impedance_ohm: np.ndarray,
    *,
    linkk_residual: float | None = None,
    circuit: str | None = None,
    circuit_parameters: Mapping[str, Any] | None = None,
    measured_at: dt.datetime | None = None,
) -> bool:
    """Store one spectrum (shapes ``(n,)``: frequencies in Hz, complex Z in ohm).

    Returns False, storing nothing, if the experiment already has a spectrum at
    that cycle index.
    """
    _require_experiment(session, experiment_id)
    frequency = np.asarray(frequency_Hz, dtype=np.float64)
    impedance = np.asarray(impedance_ohm, dtype=np.complex128)
    if frequency.ndim != 1 or impedance.shape != frequency.shape:
        raise InvalidRecordError(
            f"EIS spectrum needs 1-D frequency and impedance of equal length, got "
            f"{frequency.shape} and {impedance.shape}"
        )
    if not (np.all(np.isfinite(frequency)) and np.all(frequency > 0)):
        raise InvalidRecordError("EIS frequencies must be finite and > 0 Hz")
    blob = encode_arrays(
        {"frequency_Hz": frequency, "z_real_ohm": impedance.real, "z_imag_ohm": impedance.imag}
    )
    row = {
        "experiment_id": experiment_id,
        "cycle_index": int(cycle_index),
        "n_points": int(frequency.shape[0]),
        "linkk_residual": None if linkk_residual is None else float(linkk_residual),
        "circuit": circuit,
        "circuit_parameters": None if circuit_parameters is None else dict(circuit_parameters),
        "measured_at": measured_at or utcnow(),
        "data": blob,
    }
    table = EisSpectrum.__table__
    statement = _insert_ignoring_conflicts(session, table, ["experiment_id", "cycle_index"])
    return _execute_counting_new(session.connection(), statement, [row], table.c.id) == 1


def store_prediction(
    session: Session,
    experiment_id: str,
    model_version_id: int,
    cycles_seen: int,
    predicted_life_cycles: float,
    predicted_life_std: float | None = None,
) -> bool:
    """Store a lifetime prediction; False if this (model, cycles seen) one exists."""
    _require_experiment(session, experiment_id)
    for name, value in (("predicted_life_cycles", predicted_life_cycles),
                        ("predicted_life_std", predicted_life_std)):  # fmt: skip
        if value is not None and not math.isfinite(value):
            raise InvalidRecordError(f"{name} must be finite, got {value!r}")
    table = Prediction.__table__
    statement = _insert_ignoring_conflicts(
        session, table, ["experiment_id", "model_version_id", "cycles_seen"]
    )
    row = {
        "experiment_id": experiment_id,
        "model_version_id": int(model_version_id),
        "cycles_seen": int(cycles_seen),
        "predicted_life_cycles": float(predicted_life_cycles),
        "predicted_life_std": None if predicted_life_std is None else float(predicted_life_std),
        "created_at": utcnow(),
    }
    return _execute_counting_new(session.connection(), statement, [row], table.c.id) == 1


def record_event(
    session: Session,
    level: EventLevel | str,
    kind: str,
    message: str,
    *,
    campaign_id: int | None = None,
    experiment_id: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> int:
    """Append an audit-trail event; returns its id."""
    event = Event(
        level=EventLevel(level),
        kind=kind,
        message=message,
        campaign_id=campaign_id,
        experiment_id=experiment_id,
        payload=None if payload is None else dict(payload),
    )
    session.add(event)
    session.flush()
    return event.id


def count_cycles(session: Session, experiment_id: str) -> int:
    """How many cycles an experiment has stored."""
    table = Cycle.__table__
    return int(
        session.connection()
        .execute(select(func.count()).where(table.c.experiment_id == experiment_id))
        .scalar_one()
    )
