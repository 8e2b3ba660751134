"""What ``voltloop status`` shows: campaigns, rounds, experiments by status, channels in use.

The orchestrator extends the picture later; the data gathering lives here so any
front end (CLI, report, Prefect UI) reads the same numbers.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .enums import ExperimentStatus
from .leases import active_leases
from .models import Campaign, Candidate, Channel, Experiment, Round
from .queries import resolve_campaign
from .types import utcnow

#: Experiment statuses during which the cell occupies a channel.
ON_CHANNEL = (ExperimentStatus.RUNNING, ExperimentStatus.EARLY_PREDICTED)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _experiments_by_status(session: Session, *conditions: Any) -> dict[str, int]:
    rows = session.execute(
        select(Experiment.status, func.count(Experiment.id))
        .where(*conditions)
        .group_by(Experiment.status)
    ).all()
    counts = {status.value: 0 for status in ExperimentStatus}
    for status, count in rows:
        counts[ExperimentStatus(status).value] = int(count)
    return counts


def _channels_in_use(session: Session, *conditions: Any) -> int:
    return int(
        session.scalar(
            select(func.count(func.distinct(Experiment.channel_id))).where(
                Experiment.channel_id.is_not(None), Experiment.status.in_(ON_CHANNEL), *conditions
            )
        )
        or 0
    )


def _campaign_row(session: Session, campaign: Campaign) -> dict[str, Any]:
    rounds = session.execute(
        select(Round.round_index, Round.status)
        .where(Round.campaign_id == campaign.id)
        .order_by(Round.round_index)
    ).all()
    return {
        "name": campaign.name,
        "kind": campaign.kind.value,
        "status": campaign.status.value,
        "rounds": len(rounds),
        "current_round": rounds[-1][0] if rounds else None,
        "current_round_status": rounds[-1][1].value if rounds else None,
        "experiments": _experiments_by_status(session, Experiment.campaign_id == campaign.id),
        "channels_in_use": _channels_in_use(session, Experiment.campaign_id == campaign.id),
        "created_at": _iso(campaign.created_at),
        "updated_at": _iso(campaign.updated_at),
    }


def campaign_overview(
    session: Session, campaign: str | None = None, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    """A JSON-friendly status picture of every campaign, or of one in detail.

    Without ``campaign``: ``{"campaigns": [...], "channels": {...}}``. With a name:
    ``{"campaign": {...}, "rounds": [...], "channels": {...}}`` where each round
    lists its experiments by status. Unknown names raise UnknownCampaignError.
    """
    now = now or utcnow()
    channel_states = dict(
        session.execute(select(Channel.state, func.count(Channel.id)).group_by(Channel.state)).all()
    )
    channels = {
        "total": int(sum(channel_states.values())),
        "by_state": {state.value: int(count) for state, count in channel_states.items()},
        "leased": len(active_leases(session, "channel:", now=now)),
        "in_use": _channels_in_use(session),
    }
    if campaign is None:
        campaigns = session.scalars(select(Campaign).order_by(Campaign.created_at, Campaign.id))
        return {
            "campaigns": [_campaign_row(session, c) for c in campaigns],
            "channels": channels,
        }
    stored = resolve_campaign(session, campaign)
    rounds = []
    for round_ in session.scalars(
        select(Round).where(Round.campaign_id == stored.id).order_by(Round.round_index)
    ):
        in_round = Experiment.candidate_id.in_(
            select(Candidate.id).where(Candidate.round_id == round_.id)
        )
        rounds.append(
            {
                "round": round_.round_index,
                "kind": round_.kind.value,
                "status": round_.status.value,
                "started_at": _iso(round_.started_at),
                "ended_at": _iso(round_.ended_at),
                "experiments": _experiments_by_status(session, in_round),
            }
        )
    return {"campaign": _campaign_row(session, stored), "rounds": rounds, "channels": channels}
