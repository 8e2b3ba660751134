"""The confirmation round (decision 0085): after the last search round the best tested
protocols run again on fresh cells to end of life, and the campaign recommends the one
with the longest mean measured life. Real SQLite database, fake instruments."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voltloop.campaigns.base import LoopMode
from voltloop.campaigns.loading import load_campaign
from voltloop.campaigns.protocol_campaign import ConfirmationSettings
from voltloop.db.engine import read_session
from voltloop.db.enums import CampaignStatus, ExperimentStatus, RoundKind
from voltloop.db.migrate import init_database, open_database
from voltloop.db.models import Campaign, Candidate, Event, Experiment, Prediction, Round
from voltloop.orchestrator.context import EngineContext, EngineSettings
from voltloop.orchestrator.engine import CampaignEngine, SpecMismatchError, register_campaign
from voltloop.orchestrator.testing import (
    AttiaPoolProposer,
    AutoOperator,
    FakeCycler,
    StoredLifePredictor,
    fake_life,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "protocol-ci.toml"
LIFE_SCALE = 0.1  # fake lives of 68-150 cycles
CONFIRM = ConfirmationSettings(protocols=2, cells=2)


def _key(parameters) -> tuple:
    return tuple(sorted((k, float(v)) for k, v in parameters.items()))


class BiasedPredictor(StoredLifePredictor):
    """The fade-line prediction, but 50 % too long for one protocol: the worst of the
    first round. Early predictions then rank it first; only measured lives can tell."""

    def __init__(self):
        super().__init__()
        self.flattered: tuple | None = None

    def predict(self, session, experiment_id, cycles_seen):
        estimate = super().predict(session, experiment_id, cycles_seen)
        experiment = session.get(Experiment, experiment_id)
        parameters = session.get(Candidate, experiment.candidate_id).parameters
        if _key(parameters) != self.flattered:
            return estimate
        row = session.scalar(select(Prediction).where(Prediction.experiment_id == experiment_id))
        row.predicted_life_cycles *= 1.5
        return estimate


@pytest.fixture
def campaign(tmp_path):
    def make(mode: LoopMode = LoopMode.ROUND):
        url = f"sqlite:///{tmp_path / f'{mode.value}.db'}"
        init_database(url)
        db = open_database(url)
        spec = load_campaign(EXAMPLE).model_copy(update={"confirmation": CONFIRM, "mode": mode})
        campaign_id = register_campaign(db, spec)
        cycler = FakeCycler(spec.instruments.cyclers[0].url, spec.instruments.cyclers[0].channels)
        predictor = BiasedPredictor()
        predictor.version_id = StoredLifePredictor.registered(db).version_id
        proposer = AttiaPoolProposer()
        # the worst protocol of the first batch is the one the predictor flatters
        first = proposer.propose(observations=[], pending=[], tested=[], q=4, seed=spec.seed * 1000)
        predictor.flattered = _key(min((p.parameters for p in first.proposals), key=fake_life))

        def compile_protocol(parameters, run_on):
            cycles = spec.lifetime.max_cycles if run_on else spec.lifetime.stop_cycle
            protocol = {"max_cycles": cycles, "life": LIFE_SCALE * fake_life(parameters)}
            return {"protocol": protocol, "safety": {"max_temperature_C": 60.0}}

        def engine(ttl: float = 120.0) -> CampaignEngine:
            ctx = EngineContext(
                db=db, campaign_id=campaign_id, campaign_name=spec.name, spec=spec,
                cyclers={cycler.url: cycler}, potentiostat=None, proposer=proposer,
                predictor=predictor, operator=AutoOperator(), compile_protocol=compile_protocol,
                settings=EngineSettings(lease_ttl_s=ttl, heartbeat_s=0.0),
            )  # fmt: skip
            return CampaignEngine(ctx)

        return db, spec, campaign_id, predictor, engine

    return make


def _check_confirmed(db, spec, campaign_id, predictor) -> dict:
    with read_session(db) as s:
        assert s.get(Campaign, campaign_id).status == CampaignStatus.COMPLETED
        rounds = list(s.scalars(select(Round).order_by(Round.round_index)))
        confirmation = [r for r in rounds if r.kind == RoundKind.CONFIRMATION]
        assert len(confirmation) == 1 and confirmation[0] is rounds[-1]
        confirmation_id = confirmation[0].id
        rows = s.execute(
            select(Candidate.round_id, Candidate.parameters, Experiment).join(
                Experiment, Experiment.candidate_id == Candidate.id
            )
        ).all()
        cells = [(rid, params, e.id, e.status, e.end_reason) for rid, params, e in rows]
        search = [c[1:] for c in cells if c[0] != confirmation_id]
        confirming = [c[1:] for c in cells if c[0] == confirmation_id]
        predictions = dict(
            s.execute(
                select(Prediction.experiment_id, func.count()).group_by(Prediction.experiment_id)
            ).all()
        )
        payload = s.scalars(
            select(Event.payload).where(Event.kind == "recommendation").order_by(Event.id.desc())
        ).first()
    assert len(search) == spec.rounds * spec.batch_size
    assert len(confirming) == CONFIRM.experiments, "a confirmation cell was dispatched twice"
    # every cell, confirming ones included, predicted exactly once
    assert sorted(predictions.values()) == [1] * (len(search) + len(confirming))
    # the confirmed protocols: the best two by early prediction, the flattered one first
    best_predicted = sorted(
        {_key(params): predictions_life(db, eid) for params, eid, _, _ in search}.items(),
        key=lambda kv: kv[1],
        reverse=True,
    )[: CONFIRM.protocols]
    confirmed = {_key(params) for params, _, _, _ in confirming}
    assert confirmed == {k for k, _ in best_predicted}
    assert best_predicted[0][0] == predictor.flattered
    for params, _, status, reason in confirming:  # fresh cells, each to its end of life
        assert status == ExperimentStatus.COMPLETED and reason.startswith("end of life")
        life = int(reason.rsplit(" ", 1)[1])
        assert abs(life - LIFE_SCALE * fake_life(params)) <= 1.0
    assert "confirmed on fresh cells" in payload["rule"]
    assert len(payload["confirmed"]) == CONFIRM.protocols
    # measured lives unmask the flattered protocol: the other one is recommended
    (other,) = confirmed - {predictor.flattered}
    assert _key(payload["parameters"]) == other
    assert len(payload["measured_lives"]) == CONFIRM.cells
    assert payload["objective"] == pytest.approx(sum(payload["measured_lives"]) / CONFIRM.cells)
    return payload


def predictions_life(db, experiment_id) -> float:
    with read_session(db) as s:
        return float(
            s.scalar(
                select(Prediction.predicted_life_cycles).where(
                    Prediction.experiment_id == experiment_id
                )
            )
        )


def test_confirmation_round_measures_the_best_predicted_protocols(campaign):
    db, spec, campaign_id, predictor, engine = campaign()
    assert engine().run(poll_interval_s=0.0, max_steps=2000).finished
    _check_confirmed(db, spec, campaign_id, predictor)


def test_confirmation_after_the_asynchronous_budget(campaign):
    db, spec, campaign_id, predictor, engine = campaign(LoopMode.ASYNC)
    assert engine().run(poll_interval_s=0.0, max_steps=4000).finished
    _check_confirmed(db, spec, campaign_id, predictor)


def test_abandoned_engines_confirm_each_protocol_once(campaign):
    import time

    db, spec, campaign_id, predictor, engine = campaign()
    rng = random.Random(5)
    for _ in range(12):  # abandoned after a random number of steps, as after a crash
        engine(ttl=0.05).run(poll_interval_s=0.0, max_steps=rng.randint(1, 40))
        time.sleep(0.06)  # its leases expire
    assert engine().run(poll_interval_s=0.0, max_steps=4000).finished
    _check_confirmed(db, spec, campaign_id, predictor)


def test_confirmation_needs_early_prediction_and_channels():
    from voltloop.campaigns.loading import CampaignSpecError, validate_campaign_data

    data = load_campaign(EXAMPLE).model_dump(mode="json")
    too_many = {**data, "confirmation": {"protocols": 3, "cells": 2}}
    with pytest.raises(CampaignSpecError) as error:
        validate_campaign_data(too_many, "c.toml")
    assert "confirmation.protocols" in str(error.value) and "4 channels" in str(error.value)
    no_prediction = {
        **data,
        "confirmation": {"protocols": 2},
        "lifetime": {**data["lifetime"], "early_prediction_cycle": None},
    }
    with pytest.raises(CampaignSpecError, match="early_prediction_cycle"):
        validate_campaign_data(no_prediction, "c.toml")


def test_a_spec_stored_before_an_optional_field_existed_still_matches(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    init_database(url)
    db = open_database(url)
    try:
        spec = load_campaign(EXAMPLE)
        campaign_id = register_campaign(db, spec)
        with db.begin() as connection:  # as an older voltloop stored it
            stored = spec.model_dump(mode="json")
            del stored["confirmation"]
            connection.execute(
                Campaign.__table__.update()
                .where(Campaign.__table__.c.id == campaign_id)
                .values(spec=stored)
            )
        assert register_campaign(db, spec) == campaign_id
        changed = spec.model_copy(update={"confirmation": CONFIRM})
        with pytest.raises(SpecMismatchError, match="different spec"):
            register_campaign(db, changed)
    finally:
        db.dispose()


def test_a_confirming_cell_that_outlives_max_cycles_counts_as_a_lower_bound(tmp_path):
    """A cell that runs all of ``max_cycles`` above end of life has no measured end of
    life, but its protocol is not dropped: the cycles it ran are a lower bound."""
    url = f"sqlite:///{tmp_path / 'censored.db'}"
    init_database(url)
    db = open_database(url)
    ci = load_campaign(EXAMPLE)
    spec = ci.model_copy(
        update={
            "confirmation": CONFIRM,
            "lifetime": ci.lifetime.model_copy(update={"max_cycles": 100}),
        }
    )
    campaign_id = register_campaign(db, spec)
    cycler = FakeCycler(spec.instruments.cyclers[0].url, spec.instruments.cyclers[0].channels)
    predictor = StoredLifePredictor.registered(db)

    def compile_protocol(parameters, run_on):
        cycles = spec.lifetime.max_cycles if run_on else spec.lifetime.stop_cycle
        protocol = {"max_cycles": cycles, "life": LIFE_SCALE * fake_life(parameters)}
        return {"protocol": protocol, "safety": {"max_temperature_C": 60.0}}

    ctx = EngineContext(
        db=db, campaign_id=campaign_id, campaign_name=spec.name, spec=spec,
        cyclers={cycler.url: cycler}, potentiostat=None, proposer=AttiaPoolProposer(),
        predictor=predictor, operator=AutoOperator(), compile_protocol=compile_protocol,
        settings=EngineSettings(heartbeat_s=0.0),
    )  # fmt: skip
    assert CampaignEngine(ctx).run(poll_interval_s=0.0, max_steps=2000).finished
    with read_session(db) as s:
        payload = s.scalars(
            select(Event.payload).where(Event.kind == "recommendation").order_by(Event.id.desc())
        ).first()
    db.dispose()
    by_protocol = {_key(c["parameters"]): c for c in payload["confirmed"]}
    for key, c in by_protocol.items():
        life = LIFE_SCALE * fake_life(dict(key))
        if life > spec.lifetime.max_cycles:  # never reached: censored at the last cycle
            assert c["lives"] == [] and c["censored"] == [spec.lifetime.max_cycles - 1] * 2
        else:
            assert c["censored"] == [] and all(abs(x - life) <= 1.0 for x in c["lives"])
    assert any(c["censored"] for c in by_protocol.values()), "no cell outlived max_cycles"
    best = max(by_protocol.values(), key=lambda c: c["mean_life"])
    assert payload["parameters"] == best["parameters"]
    assert payload["objective"] == best["mean_life"]
    if best["censored"]:
        assert "lower bound" in payload["rule"]
