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


def populate(engine: Engine) -> dict[str, list[str]]:
    """Two campaigns with rounds, experiments in several states, cycles, a spectrum,
    a model and a prediction, an instrument with channels; returns experiment ids."""
    import numpy as np

    from voltloop.db.cycles import CycleData
    from voltloop.db.enums import ChannelState, ExperimentStatus, InstrumentKind, RoundStatus
    from voltloop.db.ingest import append_cycles, store_eis_spectrum, store_prediction
    from voltloop.db.models import Channel, Instrument, ModelVersion
    from voltloop.db.testing import synthetic_cycle_series

    ids: dict[str, list[str]] = {"fastcharge": [], "cathodes": []}
    with write_session(engine) as session:
        cycler = Instrument(kind=InstrumentKind.CYCLER, url="socket://127.0.0.1:5025")
        session.add(cycler)
        session.flush()
        channels = [
            Channel(instrument_id=cycler.id, channel_index=i, state=ChannelState.RUNNING)
            for i in range(3)
        ]
        session.add_all(channels)
        fast = Campaign(name="fastcharge", kind=CampaignKind.PROTOCOL, spec={"rounds": 2})
        mats = Campaign(name="cathodes", kind=CampaignKind.MATERIALS, spec={}, seed=7)
        session.add_all([fast, mats])
        session.flush()
        plan = [
            (fast, 0, RoundStatus.COMPLETED, [ExperimentStatus.COMPLETED] * 2),
            (fast, 1, RoundStatus.RUNNING, [ExperimentStatus.RUNNING, ExperimentStatus.QUEUED]),
            (mats, 0, RoundStatus.RUNNING, [ExperimentStatus.EARLY_PREDICTED]),
        ]
        channel_iter = iter(channels)
        for campaign, index, round_status, statuses in plan:
            round_ = Round(campaign_id=campaign.id, round_index=index, status=round_status)
            session.add(round_)
            session.flush()
            for status in statuses:
                candidate = Candidate(campaign_id=campaign.id, round_id=round_.id,
                                      parameters={"CC1": 4.8})  # fmt: skip
                session.add(candidate)
                session.flush()
                on_channel = status in (ExperimentStatus.RUNNING, ExperimentStatus.EARLY_PREDICTED)
                experiment = Experiment(
                    campaign_id=campaign.id,
                    candidate_id=candidate.id,
                    status=status,
                    cell_id=f"cell-{len(ids[campaign.name])}",
                    channel_id=next(channel_iter).id if on_channel else None,
                )
                session.add(experiment)
                session.flush()
                ids[campaign.name].append(experiment.id)
        first = ids["fastcharge"][0]
        append_cycles(session, first, [
            CycleData.from_series(i, synthetic_cycle_series(i, n_samples=40)) for i in range(3)
        ])  # fmt: skip
        frequency = np.logspace(3, -1, 9)
        store_eis_spectrum(session, first, 0, frequency, 0.02 - 0.01j / np.sqrt(frequency))
        model = ModelVersion(campaign_id=fast.id, kind="lifetime", name="elasticnet", version=1,
                             training_set_hash="abc", metrics={"mape": 0.09})  # fmt: skip
        session.add(model)
        session.flush()
        store_prediction(session, first, model.id, 100, 870.0, 110.0)
    return ids
