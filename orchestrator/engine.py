"""The campaign engine: ``step()`` reads the database and does the next due thing.

See docs/decisions/0002-campaign-engine.md for the state machine. The engine keeps
no state between steps apart from its lease heartbeat clock; everything else is
read from the database each time, so a new engine on the same database continues
where a crashed one stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select

from voltloop.campaigns.base import CampaignBase, LoopMode
from voltloop.db.engine import read_session, write_session
from voltloop.db.enums import CampaignStatus, EventLevel, InstrumentKind, RoundStatus
from voltloop.db.errors import LeaseHeldError, UnknownCampaignError
from voltloop.db.leases import (
    acquire_lease,
    active_leases,
    campaign_key,
    current_lease,
    release_lease,
    take_over_leases,
)
from voltloop.db.models import Campaign, Channel, Experiment, Instrument, Round
from voltloop.orchestrator.context import EngineContext, StepKind, StepResult, holder_is_dead
from voltloop.orchestrator.dispatch import free_channels, load_and_dispatch
from voltloop.orchestrator.interrupts import interrupts_deferred
from voltloop.orchestrator.polling import poll_sweep, renew_channel_leases
from voltloop.orchestrator.rounds import (
    OPEN_ROUND_STATUSES,
    candidates_proposed,
    close_round_if_done,
    confirmation_due,
    experiment_budget,
    finalise,
    next_round_kind,
    open_round,
    propose,
    rounds_started,
)


class CampaignBusyError(RuntimeError):
    """Another orchestrator holds the campaign."""

    exit_code = 1


class SpecMismatchError(ValueError):
    """A campaign of that name exists with a different spec."""

    exit_code = 2


def register_campaign(db, spec: CampaignBase) -> int:
    """Store the campaign (or find it again) and its instruments and channels.

    Idempotent: a campaign that exists with the same spec is returned as it is, so
    ``dry-run``/``run`` on an existing campaign resumes it. The same name with a
    different spec is refused — a campaign's question cannot change under it.
    """
    spec_json = spec.model_dump(mode="json")
    with write_session(db) as session:
        campaign = session.scalar(select(Campaign).where(Campaign.name == spec.name))
        if campaign is None:
            campaign = Campaign(
                name=spec.name,
                kind=spec.kind.value,
                spec=spec_json,
                status=CampaignStatus.CREATED,
                seed=spec.seed,
            )
            session.add(campaign)
        elif campaign.spec != spec_json and _normalised(campaign.spec) != spec_json:
            raise SpecMismatchError(
                f"campaign {spec.name!r} already exists with a different spec; "
                "choose a new name or resume it with `voltloop resume`"
            )
        for cycler in spec.instruments.cyclers:
            instrument = session.scalar(select(Instrument).where(Instrument.url == cycler.url))
            if instrument is None:
                instrument = Instrument(kind=InstrumentKind.CYCLER, url=cycler.url)
                session.add(instrument)
                session.flush()
            known = set(
                session.scalars(
                    select(Channel.channel_index).where(Channel.instrument_id == instrument.id)
                )
            )
            for index in range(cycler.channels):
                if index not in known:
                    session.add(Channel(instrument_id=instrument.id, channel_index=index))
        session.flush()
        return campaign.id


def _normalised(stored: dict) -> dict | None:
    """A stored spec as the code now writes it (a spec stored before a new optional
    field existed lacks that field's default), or None if it no longer validates."""
    from voltloop.campaigns.loading import CampaignSpecError, validate_campaign_data

    try:
        return validate_campaign_data(dict(stored)).model_dump(mode="json")
    except CampaignSpecError:
        return None


def find_campaign(db, name: str) -> tuple[int, dict]:
    with read_session(db) as session:
        row = session.scalar(select(Campaign).where(Campaign.name == name))
        if row is None:
            known = list(session.scalars(select(Campaign.name).order_by(Campaign.name)))
            raise UnknownCampaignError(
                f"no campaign named {name!r}; "
                + (f"known: {', '.join(known)}" if known else "the database has no campaigns")
            )
        return row.id, dict(row.spec)


class CampaignEngine:
    """Runs one campaign, one due unit of work per :meth:`step`."""

    def __init__(self, ctx: EngineContext, *, clock: Callable[[], float] = time.monotonic):
        self.ctx = ctx
        self._clock = clock
        self._last_heartbeat: float | None = None

    # --- leases -----------------------------------------------------------------------
    def _heartbeat(self) -> None:
        now = self._clock()
        if (
            self._last_heartbeat is not None
            and now - self._last_heartbeat < self.ctx.settings.heartbeat_s
        ):
            return
        key = campaign_key(self.ctx.campaign_name)
        try:
            acquire_lease(self.ctx.db, key, self.ctx.holder, self.ctx.settings.lease_ttl_s)
        except LeaseHeldError as exc:
            if not self._take_over_from_dead_holder(key):
                raise CampaignBusyError(
                    f"campaign {self.ctx.campaign_name!r} is being run by another "
                    f"orchestrator ({exc})"
                ) from exc
        mine = [
            (lease.experiment_id, lease.channel_id)
            for lease in active_leases(self.ctx.db, "channel:")
            if lease.holder == self.ctx.holder
        ]
        renew_channel_leases(self.ctx, mine)
        self._last_heartbeat = now

    def _take_over_from_dead_holder(self, key: str) -> bool:
        """If the campaign's lease belongs to an orchestrator process on this host that
        no longer exists (killed), take over its campaign and channel leases at once
        rather than wait for them to expire."""
        with write_session(self.ctx.db) as session:
            lease = current_lease(session, key)
        if lease is None or not holder_is_dead(lease.holder):
            return False
        moved = take_over_leases(
            self.ctx.db, lease.holder, self.ctx.holder, self.ctx.settings.lease_ttl_s
        )
        with write_session(self.ctx.db) as session:
            self.ctx.event(
                session,
                "lease_taken_over",
                f"took over {moved} lease(s) of {lease.holder}, whose process is gone",
                level=EventLevel.WARNING,
            )
        return True

    def release(self) -> None:
        """Give up the campaign lease (channel leases stay with their running cells)."""
        release_lease(self.ctx.db, campaign_key(self.ctx.campaign_name), self.ctx.holder)
        self._last_heartbeat = None

    # --- the step -------------------------------------------------------------------
    def due(self) -> tuple[StepKind, int | None]:
        """What :meth:`step` would do next, and in which round (reads the database only)."""
        with read_session(self.ctx.db) as session:
            campaign = session.get(Campaign, self.ctx.campaign_id)
            if campaign.status in (
                CampaignStatus.COMPLETED,
                CampaignStatus.ABORTED,
                CampaignStatus.FAILED,
            ):
                return StepKind.FINALISE, None
            current = session.scalar(
                select(Round)
                .where(
                    Round.campaign_id == self.ctx.campaign_id,
                    Round.status.in_(OPEN_ROUND_STATUSES),
                )
                .order_by(Round.round_index)
                .limit(1)
            )
            round_id = None if current is None else current.id
            round_status = None if current is None else current.status
        if self.ctx.spec.mode == LoopMode.ASYNC:
            return self._due_async()
        if round_id is None:
            if rounds_started(self.ctx) < self.ctx.spec.rounds or confirmation_due(self.ctx):
                return StepKind.OPEN_ROUND, None
            return StepKind.FINALISE, None
        if round_status in (RoundStatus.PLANNED, RoundStatus.TRAINING, RoundStatus.PROPOSING):
            return StepKind.PROPOSE, round_id
        if round_status == RoundStatus.DISPATCHING:
            return StepKind.DISPATCH, round_id
        return StepKind.POLL, round_id

    def _due_async(self) -> tuple[StepKind, int | None]:
        """Asynchronous mode: finish proposing or dispatching the open refill first; else
        refill free channels while budget is left; else poll; else finalise."""
        with read_session(self.ctx.db) as session:
            rounds = session.execute(
                select(Round.id, Round.status)
                .where(
                    Round.campaign_id == self.ctx.campaign_id,
                    Round.status.in_(OPEN_ROUND_STATUSES),
                )
                .order_by(Round.round_index)
            ).all()
            for rid, status in rounds:
                if status in (RoundStatus.PLANNED, RoundStatus.TRAINING, RoundStatus.PROPOSING):
                    return StepKind.PROPOSE, rid
                if status == RoundStatus.DISPATCHING:
                    return StepKind.DISPATCH, rid
            budget_left = candidates_proposed(session, self.ctx) < experiment_budget(self.ctx)
            free = len(free_channels(session, self.ctx)) if budget_left else 0
        if free:
            return StepKind.OPEN_ROUND, None
        if rounds:
            return StepKind.POLL, rounds[0][0]
        if confirmation_due(self.ctx):  # the search budget is spent and every cell ended
            return StepKind.OPEN_ROUND, None
        return StepKind.FINALISE, None

    def _close_done_rounds(self) -> StepResult | None:
        """Asynchronous mode: close every running refill whose cells have all ended."""
        with read_session(self.ctx.db) as session:
            running = session.scalars(
                select(Round.id).where(
                    Round.campaign_id == self.ctx.campaign_id,
                    Round.status == RoundStatus.RUNNING,
                )
            ).all()
        closed = None
        for rid in running:
            closed = close_round_if_done(self.ctx, rid) or closed
        return closed

    def step(self) -> StepResult:
        """Do the next due unit of work (see :meth:`due`) and say what it was.

        Ctrl-C during a step takes effect when the step ends (a second one at once):
        see :mod:`voltloop.orchestrator.interrupts`."""
        with interrupts_deferred():
            return self._step()

    def _step(self) -> StepResult:
        self._heartbeat()
        kind, round_id = self.due()
        if kind == StepKind.OPEN_ROUND:
            return open_round(self.ctx, rounds_started(self.ctx), next_round_kind(self.ctx))
        if kind == StepKind.FINALISE:
            return finalise(self.ctx)
        if kind == StepKind.PROPOSE:
            return propose(self.ctx, round_id)
        if kind == StepKind.DISPATCH:
            result = load_and_dispatch(self.ctx, round_id)
            if result.counts.get("waiting", 0) == 0:
                with write_session(self.ctx.db) as session:
                    session.get(Round, round_id).status = RoundStatus.RUNNING
            if result.kind == StepKind.WAIT:  # the operator is pending: keep cells polled
                return poll_sweep(self.ctx)
            return result
        if self.ctx.spec.mode == LoopMode.ASYNC:
            closed = self._close_done_rounds()
        else:
            closed = close_round_if_done(self.ctx, round_id)
        if closed is not None:
            return closed
        return poll_sweep(self.ctx)

    def run(
        self,
        *,
        poll_interval_s: float = 1.0,
        max_steps: int | None = None,
        on_step: Callable[[StepResult], None] | None = None,
    ) -> StepResult:
        """Step until the campaign is finished (or ``max_steps``), sleeping while waiting."""
        steps = 0
        while True:
            result = self.step()
            steps += 1
            if on_step is not None:
                on_step(result)
            if result.finished or (max_steps is not None and steps >= max_steps):
                return result
            if result.kind == StepKind.WAIT:
                time.sleep(poll_interval_s)


def experiments_by_status(db, campaign_id: int) -> dict[str, int]:
    with read_session(db) as session:
        counts: dict[str, int] = {}
        for status in session.scalars(
            select(Experiment.status).where(Experiment.campaign_id == campaign_id)
        ):
            counts[status.value] = counts.get(status.value, 0) + 1
        return counts
