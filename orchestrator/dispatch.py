"""Loading cells and starting experiments on cycler channels.

Experiment life here: ``proposed`` (waiting for its cell) → ``queued`` (cell
loaded, channel leased) → ``running`` (the instrument confirmed the start).
Starting is idempotent on the experiment UUID, so a dispatch repeated after a
crash never doubles a cell: the cycler answers ``already_running``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from voltloop.db.engine import write_session
from voltloop.db.enums import CandidateStatus, EventLevel, ExperimentStatus
from voltloop.db.errors import LeaseHeldError
from voltloop.db.leases import acquire_lease, channel_key
from voltloop.db.models import Candidate, Channel, Experiment, Instrument
from voltloop.db.types import utcnow
from voltloop.drivers.errors import InstrumentCommunicationError, InstrumentError
from voltloop.orchestrator.context import EngineContext, StepKind, StepResult
from voltloop.orchestrator.ports import LoadingSlot, LoadOutcome


def round_experiments(session: Session, round_id: int) -> list[Experiment]:
    return list(
        session.scalars(
            select(Experiment)
            .join(Candidate, Experiment.candidate_id == Candidate.id)
            .where(Candidate.round_id == round_id)
            .order_by(Experiment.created_at, Experiment.id)
        )
    )


def _busy_channel_ids(session: Session) -> set[int]:
    """Channels holding an experiment that has not ended (any campaign)."""
    active = [s for s in ExperimentStatus if not s.is_terminal]
    return set(
        session.scalars(
            select(Experiment.channel_id).where(
                Experiment.channel_id.is_not(None), Experiment.status.in_(active)
            )
        )
    )


def campaign_channels(session: Session, ctx: EngineContext) -> list[Channel]:
    """The campaign's channels in spec order: first N channels of each cycler."""
    channels: list[Channel] = []
    for cycler in ctx.spec.instruments.cyclers:
        rows = session.scalars(
            select(Channel)
            .join(Instrument)
            .where(Instrument.url == cycler.url)
            .order_by(Channel.channel_index)
            .limit(cycler.channels)
        )
        channels.extend(rows)
    return channels


def free_channels(session: Session, ctx: EngineContext) -> list[Channel]:
    busy = _busy_channel_ids(session)
    return [c for c in campaign_channels(session, ctx) if c.id not in busy]


def _assign_channels(session: Session, ctx: EngineContext, experiments: list[Experiment]) -> None:
    waiting = [
        e for e in experiments if e.status == ExperimentStatus.PROPOSED and e.channel_id is None
    ]
    if not waiting:
        return
    for experiment, channel in zip(waiting, free_channels(session, ctx), strict=False):
        experiment.channel_id = channel.id


def _slot(session: Session, experiment: Experiment, candidate: Candidate) -> LoadingSlot:
    channel = session.get(Channel, experiment.channel_id)
    assert channel is not None
    material = None
    if candidate.material_id is not None:
        from voltloop.db.models import Material

        row = session.get(Material, candidate.material_id)
        material = None if row is None else row.structure
    return LoadingSlot(
        experiment_id=experiment.id,
        cell_id=experiment.cell_id or experiment.id,
        cycler_url=channel.instrument.url,
        channel=channel.channel_index,
        parameters=dict(candidate.parameters),
        material=material,
    )


def loading_sheet(session: Session, round_id: int) -> list[LoadingSlot]:
    """Cell ↔ candidate ↔ channel for the round's experiments that have a channel."""
    sheet = []
    for experiment in round_experiments(session, round_id):
        if experiment.channel_id is None:
            continue
        candidate = session.get(Candidate, experiment.candidate_id)
        assert candidate is not None
        sheet.append(_slot(session, experiment, candidate))
    return sheet


def _load(ctx: EngineContext, round_id: int) -> dict[str, int]:
    """Assign channels, ask the operator to load cells, lease channels of loaded cells."""
    with write_session(ctx.db) as session:
        experiments = round_experiments(session, round_id)
        _assign_channels(session, ctx, experiments)
        waiting = [
            e
            for e in experiments
            if e.status == ExperimentStatus.PROPOSED and e.channel_id is not None
        ]
        slots = [_slot(session, e, session.get(Candidate, e.candidate_id)) for e in waiting]
        slot_channel_ids = {e.id: e.channel_id for e in waiting}
    if not slots:
        return {}
    outcomes = ctx.operator.load(slots)
    counts = {outcome.value: 0 for outcome in LoadOutcome}
    for slot in slots:
        outcome = outcomes.get(slot.experiment_id, LoadOutcome.WAITING)
        counts[outcome.value] += 1
        if outcome == LoadOutcome.WAITING:
            continue
        if outcome == LoadOutcome.LOADED:
            try:  # the lease is taken in its own transaction, before the status changes
                acquire_lease(
                    ctx.db,
                    channel_key(slot_channel_ids[slot.experiment_id]),
                    ctx.holder,
                    ctx.settings.lease_ttl_s,
                    channel_id=slot_channel_ids[slot.experiment_id],
                    experiment_id=slot.experiment_id,
                )
            except LeaseHeldError as exc:
                with write_session(ctx.db) as session:
                    ctx.event(
                        session,
                        "channel_busy",
                        str(exc),
                        level=EventLevel.WARNING,
                        experiment_id=slot.experiment_id,
                    )
                continue
        with write_session(ctx.db) as session:
            experiment = session.get(Experiment, slot.experiment_id)
            if experiment is None or experiment.status != ExperimentStatus.PROPOSED:
                continue
            if outcome == LoadOutcome.LOADED:
                experiment.status = ExperimentStatus.QUEUED
                experiment.queued_at = utcnow()
                ctx.event(
                    session,
                    "cell_loaded",
                    f"cell {slot.cell_id} loaded into {slot.cycler_url} channel {slot.channel}",
                    experiment_id=experiment.id,
                    payload={"channel": slot.channel},
                )
            else:
                ctx.end_experiment(
                    session,
                    experiment,
                    ExperimentStatus.ABORTED,
                    f"operator: cell {outcome.value.replace('_', ' ')}",
                    kind="cell_not_loaded",
                    level=EventLevel.WARNING,
                )
    return counts


def _start(ctx: EngineContext, experiment_id: str) -> str:
    """Start one queued experiment; returns what happened (for the step message)."""
    with write_session(ctx.db) as session:
        experiment = session.get(Experiment, experiment_id)
        assert experiment is not None and experiment.channel_id is not None
        channel = session.get(Channel, experiment.channel_id)
        assert channel is not None
        url, index, compiled = channel.instrument.url, channel.channel_index, experiment.protocol
    cycler = ctx.cyclers[url]
    try:
        outcome = cycler.start(
            index,
            compiled["protocol"],
            experiment_id,
            max_temperature_C=compiled["safety"]["max_temperature_C"],
        )
    except InstrumentError as exc:
        with write_session(ctx.db) as session:
            ctx.end_experiment(
                session,
                session.get(Experiment, experiment_id),
                ExperimentStatus.FAILED,
                f"start refused by {url} channel {index}: {exc}",
                kind="dispatch_failed",
                level=EventLevel.ERROR,
            )
        return "failed"
    except InstrumentCommunicationError as exc:  # timeout, garbled reply, disconnect: retry
        with write_session(ctx.db) as session:
            ctx.event(
                session,
                "dispatch_retry",
                f"{url} channel {index}: {exc}",
                level=EventLevel.WARNING,
                experiment_id=experiment_id,
            )
        return "retry"
    with write_session(ctx.db) as session:
        experiment = session.get(Experiment, experiment_id)
        experiment.status = ExperimentStatus.RUNNING
        experiment.started_at = experiment.started_at or utcnow()
        candidate = session.get(Candidate, experiment.candidate_id)
        if candidate is not None:
            candidate.status = CandidateStatus.RUNNING
        ctx.event(
            session,
            "dispatched",
            f"{url} channel {index}: {outcome.value}",
            experiment_id=experiment_id,
            payload={"outcome": outcome.value},
        )
    return outcome.value


def load_and_dispatch(ctx: EngineContext, round_id: int) -> StepResult:
    """One dispatch step of a round: load what can be loaded, start what is queued."""
    counts = _load(ctx, round_id)
    with write_session(ctx.db) as session:
        queued = [
            e.id
            for e in round_experiments(session, round_id)
            if e.status == ExperimentStatus.QUEUED
        ]
    started: dict[str, int] = {}
    for experiment_id in queued:
        what = _start(ctx, experiment_id)
        started[what] = started.get(what, 0) + 1
    counts.update(started)
    with write_session(ctx.db) as session:
        statuses = [e.status for e in round_experiments(session, round_id)]
    waiting = sum(s in (ExperimentStatus.PROPOSED, ExperimentStatus.QUEUED) for s in statuses)
    progressed = queued or any(n for k, n in counts.items() if k != LoadOutcome.WAITING.value)
    kind = StepKind.DISPATCH if progressed else StepKind.WAIT  # WAIT: the operator is pending
    message = f"{len(queued)} started or checked, {waiting} waiting for a cell or a channel"
    return StepResult(kind, message, counts={**counts, "waiting": waiting})
