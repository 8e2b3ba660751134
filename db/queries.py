"""Listing what the database holds, with filters: the data behind ``voltloop db query``.

Every filter value travels as a bound parameter, never as SQL text. Rows come
back as plain dicts of JSON-friendly values (ISO timestamps, enum values).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from .cycles import SUMMARY_FIELDS
from .enums import CampaignStatus, ExperimentStatus, RoundStatus
from .errors import InvalidRecordError, UnknownCampaignError
from .models import (
    Campaign,
    Candidate,
    Channel,
    Cycle,
    EisSpectrum,
    Experiment,
    Instrument,
    ModelVersion,
    Round,
)


class QueryKind(enum.StrEnum):
    CAMPAIGNS = "campaigns"
    ROUNDS = "rounds"
    EXPERIMENTS = "experiments"
    CYCLES = "cycles"
    SPECTRA = "spectra"
    MODELS = "models"


@dataclasses.dataclass(frozen=True)
class QueryFilters:
    """Filters of ``voltloop db query``; None means "any"."""

    campaign: str | None = None
    status: str | None = None
    round_index: int | None = None
    since: dt.datetime | None = None  # inclusive
    until: dt.datetime | None = None  # exclusive
    experiment_id: str | None = None
    limit: int | None = 1000


@dataclasses.dataclass(frozen=True)
class QueryResult:
    kind: QueryKind
    columns: list[str]
    rows: list[dict[str, Any]]


#: Which filters each listing understands.
_ACCEPTS: dict[QueryKind, set[str]] = {
    QueryKind.CAMPAIGNS: {"campaign", "status", "since", "until"},
    QueryKind.ROUNDS: {"campaign", "status", "round_index", "since", "until"},
    QueryKind.EXPERIMENTS: {"campaign", "status", "round_index", "since", "until", "experiment_id"},
    QueryKind.CYCLES: {"campaign", "status", "round_index", "experiment_id"},
    QueryKind.SPECTRA: {"campaign", "status", "round_index", "since", "until", "experiment_id"},
    QueryKind.MODELS: {"campaign", "since", "until"},
}
_STATUS_ENUM: dict[QueryKind, type[enum.StrEnum]] = {
    QueryKind.CAMPAIGNS: CampaignStatus,
    QueryKind.ROUNDS: RoundStatus,
    QueryKind.EXPERIMENTS: ExperimentStatus,
    QueryKind.CYCLES: ExperimentStatus,  # of the cycles' experiment
    QueryKind.SPECTRA: ExperimentStatus,
}
_FLAG = {"round_index": "--round", "experiment_id": "--experiment"}


def parse_when(text: str) -> dt.datetime:
    """A ``--since``/``--until`` value: ISO date or date-time; naive means UTC."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRecordError(
            f"bad date {text!r}: use ISO 8601, e.g. 2026-05-01 or 2026-05-01T14:30:00+02:00"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def resolve_campaign(session: Session, name: str) -> Campaign:
    """The campaign called ``name``, or :class:`UnknownCampaignError` listing known names."""
    campaign = session.scalars(select(Campaign).where(Campaign.name == name)).one_or_none()
    if campaign is not None:
        return campaign
    known = session.scalars(select(Campaign.name).order_by(Campaign.name).limit(21)).all()
    if not known:
        raise UnknownCampaignError(f"unknown campaign {name!r}: the database has no campaigns yet")
    listing = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    raise UnknownCampaignError(f"unknown campaign {name!r}; known campaigns: {listing}")


def run_query(session: Session, kind: QueryKind | str, filters: QueryFilters) -> QueryResult:
    """List ``kind`` rows matching ``filters`` (refusing filters that do not apply)."""
    kind = QueryKind(kind)
    given = {f.name for f in dataclasses.fields(filters) if getattr(filters, f.name) is not None}
    given.discard("limit")
    unsupported = sorted(given - _ACCEPTS[kind])
    if unsupported:
        flags = ", ".join(_FLAG.get(name, f"--{name}") for name in unsupported)
        raise InvalidRecordError(f"{flags} does not apply to `db query {kind.value}`")
    if filters.limit is not None and filters.limit < 1:
        raise InvalidRecordError(f"--limit must be >= 1, got {filters.limit}")
    if filters.status is not None:
        allowed = [member.value for member in _STATUS_ENUM[kind]]
        if filters.status not in allowed:
            raise InvalidRecordError(
                f"unknown status {filters.status!r} for {kind.value}; allowed: {', '.join(allowed)}"
            )
    if filters.experiment_id is not None:
        try:
            uuid.UUID(filters.experiment_id)
        except ValueError:
            raise InvalidRecordError(
                f"--experiment {filters.experiment_id!r} is not a UUID"
            ) from None
    campaign_id = None
    if filters.campaign is not None:
        campaign_id = resolve_campaign(session, filters.campaign).id
    builder = _BUILDERS[kind]
    statement, columns = builder(filters, campaign_id)
    if filters.limit is not None:
        statement = statement.limit(filters.limit)
    rows = [
        {name: _plain(value) for name, value in zip(columns, row, strict=True)}
        for row in session.execute(statement)
    ]
    return QueryResult(kind, list(columns), rows)


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _between(statement: Select, column: Any, filters: QueryFilters) -> Select:
    if filters.since is not None:
        statement = statement.where(column >= filters.since)
    if filters.until is not None:
        statement = statement.where(column < filters.until)
    return statement


def _campaigns(filters: QueryFilters, campaign_id: int | None) -> tuple[Select, Sequence[str]]:
    rounds = select(func.count(Round.id)).where(Round.campaign_id == Campaign.id).scalar_subquery()
    experiments = (
        select(func.count(Experiment.id))
        .where(Experiment.campaign_id == Campaign.id)
        .scalar_subquery()
    )
    statement = select(
        Campaign.name,
        Campaign.kind,
        Campaign.status,
        Campaign.seed,
        rounds,
        experiments,
        Campaign.created_at,
        Campaign.updated_at,
    ).order_by(Campaign.created_at, Campaign.id)
    if campaign_id is not None:
        statement = statement.where(Campaign.id == campaign_id)
    if filters.status is not None:
        statement = statement.where(Campaign.status == filters.status)
    statement = _between(statement, Campaign.created_at, filters)
    columns = (
        "name",
        "kind",
        "status",
        "seed",
        "rounds",
        "experiments",
        "created_at",
        "updated_at",
    )
    return statement, columns


def _rounds(filters: QueryFilters, campaign_id: int | None) -> tuple[Select, Sequence[str]]:
    candidates = (
        select(func.count(Candidate.id)).where(Candidate.round_id == Round.id).scalar_subquery()
    )
    statement = (
        select(
            Campaign.name,
            Round.round_index,
            Round.status,
            candidates,
            Round.created_at,
            Round.started_at,
            Round.ended_at,
        )
        .join(Campaign, Campaign.id == Round.campaign_id)
        .order_by(Campaign.name, Round.round_index)
    )
    if campaign_id is not None:
        statement = statement.where(Round.campaign_id == campaign_id)
    if filters.status is not None:
        statement = statement.where(Round.status == filters.status)
    if filters.round_index is not None:
        statement = statement.where(Round.round_index == filters.round_index)
    statement = _between(statement, Round.created_at, filters)
    columns = ("campaign", "round", "status", "candidates", "created_at", "started_at", "ended_at")
    return statement, columns


def _experiment_scope(statement: Select, filters: QueryFilters, campaign_id: int | None) -> Select:
    """Filters shared by experiments, cycles and spectra (joined to experiment)."""
    if campaign_id is not None:
        statement = statement.where(Experiment.campaign_id == campaign_id)
    if filters.status is not None:
        statement = statement.where(Experiment.status == filters.status)
    if filters.experiment_id is not None:
        statement = statement.where(Experiment.id == filters.experiment_id)
    if filters.round_index is not None:
        statement = statement.where(
            Experiment.candidate_id.in_(
                select(Candidate.id)
                .join(Round, Round.id == Candidate.round_id)
                .where(Round.round_index == filters.round_index)
            )
        )
    return statement


def _experiments(filters: QueryFilters, campaign_id: int | None) -> tuple[Select, Sequence[str]]:
    cycles = (
        select(func.count(Cycle.id)).where(Cycle.experiment_id == Experiment.id).scalar_subquery()
    )
    statement = (
        select(
            Experiment.id,
            Campaign.name,
            Round.round_index,
            Experiment.candidate_id,
            Experiment.cell_id,
            Instrument.url,
            Channel.channel_index,
            Experiment.status,
            Experiment.end_reason,
            cycles,
            Experiment.created_at,
            Experiment.started_at,
            Experiment.ended_at,
        )
        .join(Campaign, Campaign.id == Experiment.campaign_id)
        .outerjoin(Candidate, Candidate.id == Experiment.candidate_id)
        .outerjoin(Round, Round.id == Candidate.round_id)
        .outerjoin(Channel, Channel.id == Experiment.channel_id)
        .outerjoin(Instrument, Instrument.id == Channel.instrument_id)
        .order_by(Experiment.created_at, Experiment.id)
    )
    statement = _between(
        _experiment_scope(statement, filters, campaign_id), Experiment.created_at, filters
    )
    columns = (
        "experiment",
        "campaign",
        "round",
        "candidate",
        "cell_id",
        "instrument",
        "channel",
        "status",
        "end_reason",
        "cycles",
        "created_at",
        "started_at",
        "ended_at",
    )
    return statement, columns


def _cycles(filters: QueryFilters, campaign_id: int | None) -> tuple[Select, Sequence[str]]:
    columns = ("experiment_id", "cycle_index", *SUMMARY_FIELDS)
    table = Cycle.__table__
    statement = (
        select(*(table.c[name] for name in columns))
        .join(Experiment, Experiment.id == table.c.experiment_id)
        .order_by(table.c.experiment_id, table.c.cycle_index)
    )
    return _experiment_scope(statement, filters, campaign_id), columns


def _spectra(filters: QueryFilters, campaign_id: int | None) -> tuple[Select, Sequence[str]]:
    statement = (
        select(
            EisSpectrum.experiment_id,
            EisSpectrum.cycle_index,
            EisSpectrum.n_points,
            EisSpectrum.linkk_residual,
            EisSpectrum.circuit,
            EisSpectrum.measured_at,
        )
        .join(Experiment, Experiment.id == EisSpectrum.experiment_id)
        .order_by(EisSpectrum.experiment_id, EisSpectrum.cycle_index)
    )
    statement = _between(
        _experiment_scope(statement, filters, campaign_id), EisSpectrum.measured_at, filters
    )
    columns = (
        "experiment_id",
        "cycle_index",
        "n_points",
        "linkk_residual",
        "circuit",
        "measured_at",
    )
    return statement, columns


def _models(filters: QueryFilters, campaign_id: int | None) -> tuple[Select, Sequence[str]]:
    statement = (
        select(
            ModelVersion.id,
            Campaign.name,
            ModelVersion.kind,
            ModelVersion.name,
            ModelVersion.version,
            ModelVersion.training_set_hash,
            ModelVersion.metrics,
            ModelVersion.artifact_format,
            ModelVersion.created_at,
        )
        .outerjoin(Campaign, Campaign.id == ModelVersion.campaign_id)
        .order_by(ModelVersion.created_at, ModelVersion.id)
    )
    if campaign_id is not None:
        statement = statement.where(ModelVersion.campaign_id == campaign_id)
    statement = _between(statement, ModelVersion.created_at, filters)
    columns = (
        "id",
        "campaign",
        "kind",
        "name",
        "version",
        "training_set_hash",
        "metrics",
        "artifact_format",
        "created_at",
    )
    return statement, columns


_BUILDERS = {
    QueryKind.CAMPAIGNS: _campaigns,
    QueryKind.ROUNDS: _rounds,
    QueryKind.EXPERIMENTS: _experiments,
    QueryKind.CYCLES: _cycles,
    QueryKind.SPECTRA: _spectra,
    QueryKind.MODELS: _models,
}
