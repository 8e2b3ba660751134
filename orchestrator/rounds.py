"""Round life: open → propose (retrain + acquisition + compile) → dispatching →
running → completed, and the campaign's final recommendation.

In ``round`` mode a round is a batch of ``batch_size`` and the next opens when it has
completed (Attia et al.). In ``async`` mode a round opens whenever channels are free
and the budget (``rounds`` × ``batch_size`` candidates) is not spent: it proposes for
the free channels only, with every experiment still in flight as a pending point, so
channels never idle while a slow cell finishes.

What the campaign has learned is read by ``observations.gather`` (cycle lives of
protocol campaigns), unless the proposer defines its own ``gather(session,
campaign_id)`` and ``recommend(session, campaign_id)`` — materials campaigns do
(orchestrator/materials_proposing.py): their metrics come from the fixed test.
"""

from __future__ import annotations

import math
import uuid

from sqlalchemy import func, select

from voltloop.campaigns.base import LoopMode
from voltloop.db.engine import write_session
from voltloop.db.enums import (
    CampaignStatus,
    CandidateStatus,
    EventLevel,
    ExperimentStatus,
    RoundKind,
    RoundStatus,
)
from voltloop.db.models import Campaign, Candidate, Experiment, Round
from voltloop.db.types import utcnow
from voltloop.orchestrator.context import (
    EngineContext,
    StepKind,
    StepResult,
    runs_to_end_of_life,
)
from voltloop.orchestrator.dispatch import free_channels, round_experiments
from voltloop.orchestrator.observations import (
    CampaignKnowledge,
    confirmed_recommendation,
    gather,
)

OPEN_ROUND_STATUSES = (
    RoundStatus.PLANNED,
    RoundStatus.TRAINING,
    RoundStatus.PROPOSING,
    RoundStatus.DISPATCHING,
    RoundStatus.RUNNING,
)


def open_round(ctx: EngineContext, index: int, kind: RoundKind = RoundKind.SEARCH) -> StepResult:
    what = "confirmation round" if kind == RoundKind.CONFIRMATION else "round"
    with write_session(ctx.db) as session:
        session.add(
            Round(
                campaign_id=ctx.campaign_id,
                round_index=index,
                kind=kind,
                status=RoundStatus.PROPOSING,
                started_at=utcnow(),
            )
        )
        campaign = session.get(Campaign, ctx.campaign_id)
        campaign.status = CampaignStatus.RUNNING
        ctx.event(
            session,
            "round_opened",
            f"{what} {index} opened",
            payload={"round": index, "kind": kind.value},
        )
    return StepResult(StepKind.OPEN_ROUND, f"{what} {index} opened")


def confirmation_due(ctx: EngineContext) -> bool:
    """Does the campaign confirm its best protocols, and has it not started to yet?"""
    if getattr(ctx.spec, "confirmation", None) is None:
        return False
    with write_session(ctx.db) as session:
        opened = session.scalar(
            select(func.count())
            .select_from(Round)
            .where(Round.campaign_id == ctx.campaign_id, Round.kind == RoundKind.CONFIRMATION)
        )
    return not opened


def next_round_kind(ctx: EngineContext) -> RoundKind:
    """A search round while the search budget lasts, then the confirmation round."""
    if ctx.spec.mode == LoopMode.ASYNC:
        with write_session(ctx.db) as session:
            searching = candidates_proposed(session, ctx) < experiment_budget(ctx)
    else:
        searching = rounds_started(ctx) < ctx.spec.rounds
    return RoundKind.SEARCH if searching else RoundKind.CONFIRMATION


def knowledge_of(ctx: EngineContext, session) -> CampaignKnowledge:
    """Observations, pending and tested candidates, read the proposer's way if it has one."""
    own = getattr(ctx.proposer, "gather", None)
    if callable(own):
        return own(session, ctx.campaign_id)
    return gather(session, ctx.campaign_id, ctx.eol_threshold_ah)


def propose(ctx: EngineContext, round_id: int) -> StepResult:
    """Retrain on everything so far, propose a batch, compile each candidate's protocol.

    Candidates whose protocol fails validation are stored as ``rejected`` with the
    reason; the others get an experiment each. All in one transaction with the move
    to ``dispatching``, so a crash never leaves half a batch.
    """
    with write_session(ctx.db) as session:
        confirming = session.get(Round, round_id).kind == RoundKind.CONFIRMATION
    if confirming:
        return propose_confirmation(ctx, round_id)
    if ctx.predictor is not None:
        with write_session(ctx.db) as session:
            note = ctx.predictor.prepare(session, ctx.campaign_id)
            ctx.event(session, "lifetime_retrained", note)
    with write_session(ctx.db) as session:
        rnd = session.get(Round, round_id)
        knowledge = knowledge_of(ctx, session)
        q = min(ctx.spec.batch_size, len(free_channels(session, ctx)))
        if ctx.spec.mode == LoopMode.ASYNC:  # a refill: the free channels, within the budget
            q = min(q, experiment_budget(ctx) - candidates_proposed(session, ctx))
    if q == 0:
        return StepResult(StepKind.WAIT, "no free channel to propose for")
    batch = ctx.proposer.propose(
        observations=knowledge.observations,
        pending=knowledge.pending,
        tested=knowledge.tested,
        q=q,
        seed=ctx.spec.seed * 1000 + rnd.round_index,
    )
    rejected = 0
    with write_session(ctx.db) as session:
        rnd = session.get(Round, round_id)
        for number, proposal in enumerate(batch.proposals):
            candidate = Candidate(
                campaign_id=ctx.campaign_id,
                round_id=round_id,
                parameters=proposal.parameters,
                material_id=proposal.material_id,
                acquisition_value=_finite(proposal.acquisition_value),
                predicted_mean=_finite(proposal.predicted_mean),
                predicted_std=_finite(proposal.predicted_std),
                status=CandidateStatus.SCHEDULED,
            )
            session.add(candidate)
            session.flush()
            experiment_id = str(uuid.uuid4())
            run_on = runs_to_end_of_life(
                ctx.spec.seed, experiment_id, ctx.spec.lifetime.run_to_end_of_life
            )
            cell_id = f"{ctx.campaign_name}-r{rnd.round_index}-{number:03d}"
            if not _add_experiment(ctx, session, candidate, experiment_id, cell_id, run_on):
                rejected += 1
        rnd.status = RoundStatus.DISPATCHING
        rnd.model_version_ids = list(batch.model_version_ids)
        ctx.event(
            session,
            "proposed",
            f"round {rnd.round_index}: {len(batch.proposals)} candidates"
            + (f", {rejected} rejected" if rejected else "")
            + (f" ({batch.reason})" if batch.reason else ""),
            payload={"round": rnd.round_index, "q": q, "reason": batch.reason},
        )
    return StepResult(
        StepKind.PROPOSE,
        f"{len(batch.proposals)} candidates proposed",
        counts={"proposed": len(batch.proposals), "rejected": rejected},
    )


def _add_experiment(
    ctx: EngineContext,
    session,
    candidate: Candidate,
    experiment_id: str,
    cell_id: str,
    run_on: bool,
) -> bool:
    """Compile ``candidate``'s protocol and add its experiment; False if the protocol
    fails validation: the candidate is then rejected, with the reason (the step and the
    limit) as an event."""
    try:
        protocol = ctx.compile_protocol(candidate.parameters, run_on)
    except ValueError as exc:
        candidate.status = CandidateStatus.REJECTED
        ctx.event(
            session,
            "candidate_rejected",
            str(exc),
            level=EventLevel.WARNING,
            payload={"candidate_id": candidate.id},
        )
        return False
    session.add(
        Experiment(
            id=experiment_id,
            campaign_id=ctx.campaign_id,
            candidate_id=candidate.id,
            cell_id=cell_id,
            protocol=protocol,
            status=ExperimentStatus.PROPOSED,
        )
    )
    return True


def propose_confirmation(ctx: EngineContext, round_id: int) -> StepResult:
    """The confirmation round's batch: the best tested protocols by posterior mean
    (``ProtocolProposer.confirmation_choice``), ``confirmation.cells`` fresh cells each,
    every one compiled to run to end of life. Chosen and stored in one transaction
    with the move to ``dispatching``, so a resumed run confirms the same protocols."""
    settings = ctx.spec.confirmation
    with write_session(ctx.db) as session:
        observations = knowledge_of(ctx, session).observations
    chosen = ctx.proposer.confirmation_choice(observations, settings.protocols)
    created = rejected = 0
    with write_session(ctx.db) as session:
        rnd = session.get(Round, round_id)
        for number, proposal in enumerate(p for p in chosen for _ in range(settings.cells)):
            candidate = Candidate(
                campaign_id=ctx.campaign_id,
                round_id=round_id,
                parameters=proposal.parameters,
                predicted_mean=_finite(proposal.predicted_mean),
                predicted_std=_finite(proposal.predicted_std),
                status=CandidateStatus.SCHEDULED,
            )
            session.add(candidate)
            session.flush()
            cell_id = f"{ctx.campaign_name}-c{rnd.round_index}-{number:03d}"
            if _add_experiment(ctx, session, candidate, str(uuid.uuid4()), cell_id, True):
                created += 1
            else:
                rejected += 1
        rnd.status = RoundStatus.DISPATCHING if created else RoundStatus.COMPLETED
        if not created:
            rnd.ended_at = utcnow()
        ctx.event(
            session,
            "confirmation_proposed",
            f"round {rnd.round_index}: confirming {len(chosen)} protocol(s) on "
            f"{settings.cells} fresh cell(s) each, run to end of life"
            + (f", {rejected} rejected" if rejected else "")
            + ("" if chosen else " (nothing tested to confirm)"),
            payload={
                "round": rnd.round_index,
                "cells": settings.cells,
                "protocols": [
                    {
                        "parameters": p.parameters,
                        "predicted_mean": _finite(p.predicted_mean),
                        "predicted_std": _finite(p.predicted_std),
                    }
                    for p in chosen
                ],
            },
        )
    return StepResult(
        StepKind.PROPOSE,
        f"{len(chosen)} protocols to confirm",
        counts={"proposed": created, "rejected": rejected},
    )


def close_round_if_done(ctx: EngineContext, round_id: int) -> StepResult | None:
    with write_session(ctx.db) as session:
        experiments = round_experiments(session, round_id)
        if any(not e.status.is_terminal for e in experiments):
            return None
        rnd = session.get(Round, round_id)
        rnd.status = RoundStatus.COMPLETED
        rnd.ended_at = utcnow()
        by_status: dict[str, int] = {}
        for e in experiments:
            by_status[e.status.value] = by_status.get(e.status.value, 0) + 1
        ctx.event(
            session,
            "round_completed",
            f"round {rnd.round_index} completed",
            payload={"round": rnd.round_index, "experiments": by_status},
        )
    return StepResult(StepKind.CLOSE_ROUND, f"round {rnd.round_index} completed", counts=by_status)


def experiment_budget(ctx: EngineContext) -> int:
    """Candidates the campaign may test: ``rounds`` × ``batch_size``. Asynchronous
    campaigns spend it a few channels at a time, each refill a round of its own."""
    return ctx.spec.rounds * ctx.spec.batch_size


def candidates_proposed(session, ctx: EngineContext) -> int:
    mine = Candidate.campaign_id == ctx.campaign_id
    return int(session.scalar(select(func.count()).select_from(Candidate).where(mine)) or 0)


def rounds_started(ctx: EngineContext) -> int:
    with write_session(ctx.db) as session:
        return int(
            session.scalar(
                select(func.count()).select_from(Round).where(Round.campaign_id == ctx.campaign_id)
            )
            or 0
        )


def finalise(ctx: EngineContext) -> StepResult:
    """Mark the campaign completed and record the recommended candidate."""
    with write_session(ctx.db) as session:
        campaign = session.get(Campaign, ctx.campaign_id)
        if campaign.status in (CampaignStatus.ABORTED, CampaignStatus.FAILED):
            return StepResult(StepKind.FINALISE, f"campaign {campaign.status.value}", finished=True)
        if campaign.status != CampaignStatus.COMPLETED:
            campaign.status = CampaignStatus.COMPLETED
            payload = recommendation(ctx, session)
            if payload is not None:
                ctx.event(
                    session,
                    "recommendation",
                    f"best candidate {payload['candidate_id']}: "
                    f"{payload.get('label') or payload['parameters']} "
                    f"(objective {payload['objective']:.4g})",
                    payload=payload,
                )
            else:
                ctx.event(
                    session, "recommendation", "no candidate was observed", level=EventLevel.WARNING
                )
    return StepResult(StepKind.FINALISE, "campaign completed", finished=True)


def recommendation(ctx: EngineContext, session) -> dict | None:
    """The recommended candidate: the proposer's choice if it makes one, else the
    observed candidate with the largest objective (cycle life)."""
    own = getattr(ctx.proposer, "recommend", None)
    if callable(own):
        return own(session, ctx.campaign_id)
    if getattr(ctx.spec, "confirmation", None) is not None:
        confirmed = confirmed_recommendation(ctx.spec, session, ctx.campaign_id)
        if confirmed is not None:
            return confirmed
    finite = [o for o in knowledge_of(ctx, session).observations if math.isfinite(o.objective)]
    if not finite:
        return None
    best = max(finite, key=lambda o: o.objective)
    return {
        "candidate_id": best.candidate_id,
        "parameters": best.parameters,
        "objective": best.objective,
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
