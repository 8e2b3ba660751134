"""A poll sweep: for every experiment on a channel, fetch what is new and act on it.

Per experiment, in order: channel status → fetch records from the stored ingest
position → store complete cycles and the new position in one transaction → EIS
checkpoint if the channel waits for one → early prediction once enough cycles are
stored → stop the cell (or let it run on to end of life) → finish the experiment
when its channel has ended and every record is stored. Instrument I/O happens
outside database transactions; each database write is idempotent, so a crash
anywhere is repaired by the next sweep.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select

from voltloop.db.engine import read_session, write_session
from voltloop.db.enums import CandidateStatus, EventLevel, ExperimentStatus
from voltloop.db.errors import LeaseLostError
from voltloop.db.ingest import append_cycles, store_eis_spectrum
from voltloop.db.leases import channel_key, release_lease, renew_lease
from voltloop.db.models import (
    Candidate,
    Channel,
    Cycle,
    Event,
    Experiment,
    Instrument,
    Prediction,
)
from voltloop.drivers.cycle_summary import SummaryOptions, checkpoint_steps, step_kinds
from voltloop.drivers.errors import InstrumentCommunicationError, InstrumentError
from voltloop.drivers.interfaces import ChannelState, CyclerChannelStatus, RecordBatch
from voltloop.orchestrator.context import EngineContext, StepKind, StepResult, runs_to_end_of_life
from voltloop.orchestrator.cycle_assembly import assemble_cycles
from voltloop.orchestrator.observations import end_of_life_cycle, in_confirmation_round
from voltloop.orchestrator.ports import HealthAction

#: Event kind of a cell stopped on the cell-health models' verdict
HEALTH_STOP = "health_stop"

_ON_CHANNEL = (ExperimentStatus.RUNNING, ExperimentStatus.EARLY_PREDICTED)
_END_STATUS = {
    ChannelState.SAFETY_STOPPED: ExperimentStatus.SAFETY_STOPPED,
    ChannelState.FAULT: ExperimentStatus.FAILED,
}


def _stored_cycles(session, experiment_id: str) -> int:
    last = session.scalar(
        select(func.max(Cycle.cycle_index)).where(Cycle.experiment_id == experiment_id)
    )
    return 0 if last is None else int(last) + 1


@dataclass(frozen=True)
class _Place:
    """Where an experiment runs and how far its records are stored."""

    url: str  # the cycler's URL
    index: int  # channel index
    since: int  # records stored (the next record index to fetch)


def _locate(session, experiment_ids: list[str]) -> dict[str, _Place]:
    """The place of each experiment (those on a channel), in one query."""
    rows = session.execute(
        select(Experiment.id, Instrument.url, Channel.channel_index, Experiment.records_ingested)
        .join(Channel, Channel.id == Experiment.channel_id)
        .join(Instrument, Instrument.id == Channel.instrument_id)
        .where(Experiment.id.in_(experiment_ids))
    )
    return {e: _Place(url, index, since) for e, url, index, since in rows}


@dataclass(frozen=True)
class _Ingested:
    """What an ingest stored, and the experiment's stored state after it."""

    new: int  # cycles added
    cycles: int  # cycles stored in all
    records_ingested: int
    end_of_life: int | None  # first stored cycle below the end-of-life capacity


def _step_info(ctx: EngineContext, experiment_id: str) -> tuple:
    """(step kinds, checkpoint steps) of the experiment's compiled protocol, read and
    parsed once per experiment (a dispatched protocol never changes)."""
    info = ctx.step_info.get(experiment_id)
    if info is None:
        with read_session(ctx.db) as session:
            compiled = session.get(Experiment, experiment_id).protocol or {}
        protocol = compiled.get("protocol") or {}
        info = (
            (step_kinds(protocol), checkpoint_steps(protocol))
            if "method" in protocol
            else (None, None)
        )
        ctx.step_info[experiment_id] = info
    return info


def _ingest(
    ctx: EngineContext,
    experiment_id: str,
    place: _Place,
    status: CyclerChannelStatus,
    batch: RecordBatch | None = None,
) -> _Ingested:
    """Store the complete cycles among the records from ``place.since`` (``batch`` if
    they were fetched already, with the sweep's other channels), in one transaction
    that also reads back the experiment's stored cycles and end of life."""
    cycler = ctx.cyclers[place.url]
    since = place.since
    if batch is None or batch.since != since:
        batch = cycler.fetch(
            place.index, since, experiment_id=experiment_id, limit=ctx.settings.fetch_limit
        )
    final = status.state.is_final and batch.next_index >= status.record_count
    kinds, checkpoint = _step_info(ctx, experiment_id)
    assembled = assemble_cycles(
        batch.records,
        since,
        final=final,
        kinds=kinds,
        checkpoint=checkpoint,
        options=SummaryOptions.for_capacity(ctx.spec.cell.nominal_capacity_Ah),
    )
    with write_session(ctx.db) as session:
        new = append_cycles(
            session, experiment_id, assembled.cycles, records_ingested=assembled.next_record
        )
        return _Ingested(
            new=new,
            cycles=_stored_cycles(session, experiment_id),
            records_ingested=max(since, assembled.next_record),
            end_of_life=end_of_life_cycle(session, experiment_id, ctx.eol_threshold_ah),
        )


def _eis_checkpoint(
    ctx: EngineContext, experiment_id: str, status: CyclerChannelStatus, url: str, index: int
) -> str:
    cycler = ctx.cyclers[url]
    if ctx.potentiostat is None or ctx.eis_spec is None:
        passed = _resume(ctx, cycler, index)
        with write_session(ctx.db) as session:
            ctx.event(
                session,
                "eis_skipped",
                f"EIS checkpoint at cycle {status.cycle} skipped: no potentiostat configured"
                + ("" if passed else "; the instrument had already moved on"),
                level=EventLevel.WARNING,
                experiment_id=experiment_id,
            )
        return "eis_skipped"
    ctx.operator.attach_potentiostat(url, index)
    spectrum = ctx.potentiostat.eis(ctx.eis_spec)
    residual = spectrum.linkk.max_residual if spectrum.linkk is not None else None
    fit = spectrum.fit
    with write_session(ctx.db) as session:
        store_eis_spectrum(
            session,
            experiment_id,
            status.cycle,
            spectrum.frequencies,
            spectrum.impedance,
            linkk_residual=residual,
            circuit=fit.circuit if fit is not None else None,
            circuit_parameters={p.name: p.value for p in fit.parameters}
            if fit is not None
            else None,
        )
    stop = _health_check(ctx, experiment_id, status.cycle)
    if stop:
        cycler.stop(index)
        return "health_stopped"
    if not _resume(ctx, cycler, index):
        with write_session(ctx.db) as session:
            ctx.event(
                session,
                "eis_late",
                f"EIS at cycle {status.cycle} finished after the instrument's checkpoint timeout",
                level=EventLevel.WARNING,
                experiment_id=experiment_id,
            )
    return "eis_measured"


def _health_check(ctx: EngineContext, experiment_id: str, cycle: int) -> bool:
    """Ask the cell-health models about the cell's new spectrum; True: stop the cell."""
    monitor = ctx.health_monitor
    if monitor is None:
        return False
    with write_session(ctx.db) as session:
        verdict = monitor.assess(session, experiment_id)
        if verdict is None or verdict.action == HealthAction.CONTINUE:
            return False
        failure = (
            f"failure score {verdict.failure_score:+.2f}"
            if math.isfinite(verdict.failure_score)
            else "no failure classifier"
        )
        scores = (
            f"{failure}, anomaly score {verdict.anomaly_score:+.2f} "
            f"(model version {verdict.model_version_id})"
        )
        stop = verdict.action == HealthAction.STOP
        ctx.event(
            session,
            HEALTH_STOP if stop else "health_review",
            f"cell health at cycle {cycle}: "
            + ("stopped" if stop else "flagged for review")
            + f"; {scores}",
            level=EventLevel.WARNING,
            experiment_id=experiment_id,
            payload={
                "action": verdict.action.value,
                "failure_score": verdict.failure_score
                if math.isfinite(verdict.failure_score)
                else None,
                "anomaly_score": verdict.anomaly_score,
                "model_version_id": verdict.model_version_id,
            },
        )
    return stop


def _resume(ctx: EngineContext, cycler, index: int) -> bool:
    """Resume after a checkpoint; False if the channel was no longer waiting (the
    instrument's own checkpoint timeout had already let the protocol go on)."""
    try:
        cycler.resume(index)
        return True
    except InstrumentError:
        if cycler.status(index).state == ChannelState.WAITING_EIS:
            raise
        return False


def _predict_if_due(ctx: EngineContext, experiment_id: str, cycles: int) -> bool:
    """Early prediction at the configured cycle; returns True if the cell should stop."""
    due_cycle = ctx.spec.lifetime.early_prediction_cycle
    if ctx.predictor is None or due_cycle is None or cycles < due_cycle:
        return False
    known = ctx.run_on.get(experiment_id)
    if known is not None:  # predicted (here or before a restart) and decided
        return not known
    with write_session(ctx.db) as session:
        # once per cell: a predictor may store the index of the last cycle it read
        # (EarlyLifeModel: due_cycle - 1) rather than the count, so any row counts
        done = session.scalar(
            select(func.count())
            .select_from(Prediction)
            .where(Prediction.experiment_id == experiment_id)
        )
        estimate = None
        if not done:
            estimate = ctx.predictor.predict(session, experiment_id, due_cycle)  # stores it
        row = session.get(Experiment, experiment_id)
        run_on = _runs_on(ctx, session, row)
        if row.status == ExperimentStatus.RUNNING:
            row.status = ExperimentStatus.EARLY_PREDICTED
            candidate = session.get(Candidate, row.candidate_id)
            if candidate is not None:
                candidate.status = CandidateStatus.OBSERVED
            note = ""
            if estimate is not None and estimate.extrapolated:
                note = f"; extrapolated ({estimate.note}), interval widened"
            ctx.event(
                session,
                "early_prediction",
                f"predicted at cycle {due_cycle}; "
                + ("runs on to end of life" if run_on else "cell stopped")
                + note,
                experiment_id=experiment_id,
                payload={
                    "run_on": run_on,
                    "extrapolated": bool(estimate is not None and estimate.extrapolated),
                },
            )
    ctx.run_on[experiment_id] = run_on
    return not run_on


def _runs_on(ctx: EngineContext, session, experiment: Experiment) -> bool:
    """Does this cell run on past its early prediction to end of life? A seeded share of
    the cells (``lifetime.run_to_end_of_life``), and every cell of a confirmation round."""
    return runs_to_end_of_life(
        ctx.spec.seed, experiment.id, ctx.spec.lifetime.run_to_end_of_life
    ) or in_confirmation_round(session, experiment.candidate_id)


def _finish(ctx: EngineContext, experiment_id: str, status: CyclerChannelStatus) -> str:
    with write_session(ctx.db) as session:
        experiment = session.get(Experiment, experiment_id)
        life = end_of_life_cycle(session, experiment_id, ctx.eol_threshold_ah)
        if status.state in _END_STATUS:
            target = _END_STATUS[status.state]
            reason = f"{status.state.value}: {status.reason or 'no reason given'}"
        elif (
            status.state == ChannelState.STOPPED
            and experiment.status == ExperimentStatus.RUNNING
            and life is None
        ):
            target, reason = ExperimentStatus.ABORTED, "channel stopped outside voltloop"
        else:
            target = ExperimentStatus.COMPLETED
            if life is not None:
                reason = f"end of life at cycle {life}"
            elif experiment.status == ExperimentStatus.EARLY_PREDICTED and not _runs_on(
                ctx, session, experiment
            ):
                reason = "stopped after early prediction"
            else:
                reason = f"protocol finished ({status.state.value})"
        if status.state == ChannelState.STOPPED and life is None:
            health_stop = session.scalars(
                select(Event.message)
                .where(Event.experiment_id == experiment_id, Event.kind == HEALTH_STOP)
                .order_by(Event.id.desc())
            ).first()
            if health_stop is not None:  # the engine stopped it on the health models' verdict
                reason = health_stop
        level = EventLevel.INFO if target == ExperimentStatus.COMPLETED else EventLevel.WARNING
        observed = target == ExperimentStatus.COMPLETED or life is not None
        ctx.end_experiment(
            session,
            experiment,
            target,
            reason,
            kind="experiment_ended",
            level=level,
            observed=observed,
        )
        channel_id = experiment.channel_id
    release_lease(ctx.db, channel_key(channel_id), ctx.holder)
    return target.value


@dataclass
class _Read:
    """What one sweep read from an experiment's channel before handling it."""

    status: CyclerChannelStatus
    place: _Place
    batch: RecordBatch | None = None  # its new records, if fetched with other channels


def _read_channels(ctx: EngineContext, experiment_ids: list[str]) -> dict[str, _Read]:
    """Each experiment's channel status, then the new records of all of a cycler's
    channels in one request where the driver offers ``fetch_many`` (one round trip in
    place of one per channel). Anything that fails here is simply read again, channel by
    channel, by :func:`_poll_one`, which reports it."""
    with write_session(ctx.db) as session:
        where = _locate(session, experiment_ids)
    read: dict[str, _Read] = {}
    for experiment_id, place in where.items():
        try:
            read[experiment_id] = _Read(ctx.cyclers[place.url].status(place.index), place)
        except InstrumentError:
            continue
    by_cycler: dict[str, dict[str, tuple[int, int]]] = {}
    for experiment_id, r in read.items():
        place = r.place
        if r.status.experiment_id is not None and str(r.status.experiment_id) == experiment_id:
            by_cycler.setdefault(place.url, {})[experiment_id] = (place.index, place.since)
    for url, channels in by_cycler.items():
        fetch_many = getattr(ctx.cyclers[url], "fetch_many", None)
        if fetch_many is None or ctx.settings.fetch_limit is not None or len(channels) < 2:
            continue
        try:
            batches = fetch_many(
                {index: since for index, since in channels.values()},
                experiment_ids={index: e for e, (index, _) in channels.items()},
            )
        except InstrumentError:
            continue
        for experiment_id, (index, _) in channels.items():
            read[experiment_id].batch = batches.get(index)
    return read


def _poll_one(ctx: EngineContext, experiment_id: str, read: _Read | None = None) -> list[str]:
    if read is not None:
        place = read.place
    else:
        with write_session(ctx.db) as session:
            place = _locate(session, [experiment_id])[experiment_id]
    url, index = place.url, place.index
    cycler = ctx.cyclers[url]
    status = read.status if read is not None else cycler.status(index)
    if status.experiment_id is None or str(status.experiment_id) != experiment_id:
        with write_session(ctx.db) as session:
            ctx.event(
                session,
                "experiment_lost",
                f"{url} channel {index} reports {status.state.value} with experiment "
                f"{status.experiment_id}; expected {experiment_id}",
                level=EventLevel.ERROR,
                experiment_id=experiment_id,
            )
        return [
            _finish(
                ctx,
                experiment_id,
                status.model_copy(
                    update={"state": ChannelState.FAULT, "reason": "instrument lost the experiment"}
                ),
            )
        ]
    did = []
    batch = read.batch if read is not None else None
    stored = _ingest(ctx, experiment_id, place, status, batch)
    if stored.new:
        did.append("ingested")
    stop = _predict_if_due(ctx, experiment_id, stored.cycles)
    if status.state.is_final:
        if stored.records_ingested >= status.record_count:
            did.append(_finish(ctx, experiment_id, status))
        return did
    if status.state == ChannelState.WAITING_EIS:
        did.append(_eis_checkpoint(ctx, experiment_id, status, url, index))
        if did[-1] == "health_stopped":
            return did
    if stop or stored.end_of_life is not None:
        cycler.stop(index)
        did.append("stopped")
    return did


def renew_channel_leases(ctx: EngineContext, experiment_ids: list[tuple[str, int]]) -> None:
    for experiment_id, channel_id in experiment_ids:
        try:
            renew_lease(ctx.db, channel_key(channel_id), ctx.holder, ctx.settings.lease_ttl_s)
        except LeaseLostError:
            with write_session(ctx.db) as session:
                ctx.event(
                    session,
                    "lease_lost",
                    f"channel lease {channel_id} was lost",
                    level=EventLevel.ERROR,
                    experiment_id=experiment_id,
                )


def poll_sweep(ctx: EngineContext) -> StepResult:
    """Poll every experiment of the campaign that is on a channel."""
    with write_session(ctx.db) as session:
        on_channel = [
            (e.id, e.channel_id)
            for e in session.scalars(
                select(Experiment).where(
                    Experiment.campaign_id == ctx.campaign_id, Experiment.status.in_(_ON_CHANNEL)
                )
            )
        ]
    tally: Counter[str] = Counter()
    read = _read_channels(ctx, [experiment_id for experiment_id, _ in on_channel])
    for experiment_id, _ in on_channel:
        try:
            tally.update(_poll_one(ctx, experiment_id, read.get(experiment_id)))
        except InstrumentCommunicationError as exc:
            tally["retry"] += 1
            with write_session(ctx.db) as session:
                ctx.event(
                    session,
                    "poll_retry",
                    str(exc),
                    level=EventLevel.WARNING,
                    experiment_id=experiment_id,
                )
    kind = StepKind.POLL if tally else StepKind.WAIT
    return StepResult(kind, f"{len(on_channel)} experiments polled", counts=dict(tally))
