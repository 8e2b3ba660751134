"""Fixtures for database tests: an engine on each backend and a stored experiment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from voltloop.db.engine import make_engine, write_session
from voltloop.db.enums import CampaignKind
from voltloop.db.models import Campaign, Candidate, Experiment, Round


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def add_experiment(engine: Engine, campaign: str = "fastcharge", round_index: int = 0) -> str:
    """Store a campaign (if new), a round, a candidate and one experiment; return its id."""
    with write_session(engine) as session:
        stored = session.query(Campaign).filter_by(name=campaign).one_or_none()
        if stored is None:
            stored = Campaign(name=campaign, kind=CampaignKind.PROTOCOL, spec={"rounds": 4})
            session.add(stored)
            session.flush()
        round_ = Round(campaign_id=stored.id, round_index=round_index)
        session.add(round_)
        session.flush()
        candidate = Candidate(
            campaign_id=stored.id, round_id=round_.id, parameters={"CC1": 5.2, "CC2": 4.8}
        )
        session.add(candidate)
        session.flush()
        experiment = Experiment(campaign_id=stored.id, candidate_id=candidate.id, cell_id="c1")
        session.add(experiment)
        session.flush()
        return experiment.id


@pytest.fixture
def experiment_id(engine: Engine) -> str:
    return add_experiment(engine)
