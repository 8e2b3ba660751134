"""The campaign engine's bookkeeping on a real SQLite database with fake instruments:
every candidate tested once, every cycle stored once, resume after an abandoned
engine, one orchestrator per campaign."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import func, select

from voltloop.campaigns.loading import load_campaign
from voltloop.db.engine import read_session
from voltloop.db.enums import CampaignStatus, ExperimentStatus
from voltloop.db.migrate import init_database, open_database
from voltloop.db.models import (
    Campaign,
    Candidate,
    Cycle,
    EisSpectrum,
    Event,
    Experiment,
    Prediction,
)
from voltloop.orchestrator.context import EngineContext, EngineSettings, StepKind
from voltloop.orchestrator.engine import CampaignBusyError, CampaignEngine, register_campaign
from voltloop.orchestrator.ports import HealthAction
from voltloop.orchestrator.testing import (
    AttiaPoolProposer,
    AutoOperator,
    FakeCycler,
    FakePotentiostat,
    ScriptedHealthMonitor,
    StoredLifePredictor,
    fake_life,
)

EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "protocol-ci.toml"


@pytest.fixture
def setup(tmp_path):
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    init_database(url)
    db = open_database(url)
    spec = load_campaign(EXAMPLE)
    campaign_id = register_campaign(db, spec)
    cycler = FakeCycler(spec.instruments.cyclers[0].url, spec.instruments.cyclers[0].channels)
    predictor = StoredLifePredictor.registered(db)

    def make_engine(
        *,
        operator=None,
        ttl=120.0,
        holder=None,
        spec=spec,
        life_scale=1.0,
        potentiostat=None,
        health=None,
    ):
        def compile_protocol(parameters, run_on):
            cycles = spec.lifetime.max_cycles if run_on else spec.lifetime.stop_cycle
            protocol = {"max_cycles": cycles, "life": life_scale * fake_life(parameters)}
            return {"protocol": protocol, "safety": {"max_temperature_C": 60.0}}

        ctx = EngineContext(
            db=db,
            campaign_id=campaign_id,
            campaign_name=spec.name,
            spec=spec,
            cyclers={cycler.url: cycler},
            potentiostat=potentiostat,
            eis_spec="fake sweep" if potentiostat is not None else None,
            health=health,
            proposer=AttiaPoolProposer(),
            predictor=predictor,
            operator=operator or AutoOperator(),
            compile_protocol=compile_protocol,
            settings=EngineSettings(lease_ttl_s=ttl, heartbeat_s=0.0),
        )
        if holder:
            ctx.holder = holder
        return CampaignEngine(ctx)

    yield db, spec, campaign_id, cycler, make_engine
    db.dispose()


def _stored_cycles(db, experiment_id):
    with read_session(db) as s:
        return s.scalar(
            select(func.count()).select_from(Cycle).where(Cycle.experiment_id == experiment_id)
        )


def _check_complete(db, spec, campaign_id, cycler):
    with read_session(db) as s:
        assert s.get(Campaign, campaign_id).status == CampaignStatus.COMPLETED
        experiments = [(e.id, e.status, e.records_ingested) for e in s.scalars(select(Experiment))]
        keys = [tuple(sorted(c.parameters.items())) for c in s.scalars(select(Candidate))]
        events = [e.kind for e in s.scalars(select(Event))]
    assert len(keys) == spec.rounds * spec.batch_size
    assert len(set(keys)) == len(keys), "a candidate was proposed twice"
    assert all(status == ExperimentStatus.COMPLETED for _, status, _ in experiments)
    assert "recommendation" in events
    checked = 0
    for experiment_id, _, records_ingested in experiments:
        stored = _stored_cycles(db, experiment_id)
        assert stored >= spec.lifetime.early_prediction_cycle
        # channels are reused by later rounds; the last experiment's records are still there
        for ch in cycler.channels:
            if ch.experiment_id == experiment_id:
                assert stored == int(ch.records["cycle"][-1]) + 1
                assert records_ingested == len(ch.records)
                checked += 1
    assert checked == len(cycler.channels)


def test_campaign_runs_to_completion(setup):
    db, spec, campaign_id, cycler, make_engine = setup
    engine = make_engine()
    kinds = []
    result = engine.run(poll_interval_s=0.0, max_steps=500, on_step=lambda r: kinds.append(r.kind))
    assert result.finished
    assert kinds.count(StepKind.OPEN_ROUND) == spec.rounds
    assert kinds.count(StepKind.PROPOSE) == spec.rounds
    _check_complete(db, spec, campaign_id, cycler)
    assert all(ch.starts == spec.rounds for ch in cycler.channels)
    with read_session(db) as s:
        reasons = {e.end_reason for e in s.scalars(select(Experiment))}
    assert "stopped after early prediction" in reasons
    assert reasons <= {"stopped after early prediction"} | {
        r for r in reasons if r.startswith("end of life")
    }


def test_abandoned_engine_is_resumed_without_doubles(setup):
    db, spec, campaign_id, cycler, make_engine = setup
    rng = random.Random(3)
    for _ in range(6):  # each engine is abandoned after a random number of steps
        engine = make_engine(ttl=0.05)
        engine.run(poll_interval_s=0.0, max_steps=rng.randint(1, 9))
        import time

        time.sleep(0.06)  # its leases expire, as after a crash
    result = make_engine().run(poll_interval_s=0.0, max_steps=500)
    assert result.finished
    _check_complete(db, spec, campaign_id, cycler)
    assert all(ch.starts == spec.rounds for ch in cycler.channels), "a cell was started twice"


def test_second_orchestrator_is_refused(setup):
    _, _, _, _, make_engine = setup
    first = make_engine(holder="first")
    first.step()
    second = make_engine(holder="second")
    with pytest.raises(CampaignBusyError, match="another orchestrator"):
        second.step()
    first.release()
    second.step()


def test_share_of_cells_runs_to_end_of_life(setup):
    db, spec, campaign_id, cycler, make_engine = setup
    lifetime = spec.lifetime.model_copy(update={"run_to_end_of_life": 0.5})
    run_on_spec = spec.model_copy(update={"lifetime": lifetime})
    engine = make_engine(spec=run_on_spec, life_scale=0.1)  # lives of 68-150 cycles
    assert engine.run(poll_interval_s=0.0, max_steps=1000).finished
    with read_session(db) as s:
        ended = [
            (e.end_reason, s.get(Candidate, e.candidate_id).parameters)
            for e in s.scalars(select(Experiment))
        ]
    eol = [(reason, params) for reason, params in ended if reason.startswith("end of life")]
    early = [reason for reason, _ in ended if reason == "stopped after early prediction"]
    assert eol and early and len(eol) + len(early) == len(ended)
    for reason, params in eol:  # fake capacity crosses 80 % at its life (float32 capacities)
        assert abs(int(reason.rsplit(" ", 1)[1]) - 0.1 * fake_life(params)) <= 1.0


def test_a_cell_that_runs_on_is_predicted_once(setup):
    """EarlyLifeModel stores a prediction under the index of the last cycle it read
    (cycles_seen - 1); a cell that runs on past that cycle is not predicted again at
    every poll."""
    db, spec, campaign_id, cycler, make_engine = setup
    lifetime = spec.lifetime.model_copy(update={"run_to_end_of_life": 1.0})
    engine = make_engine(spec=spec.model_copy(update={"lifetime": lifetime}), life_scale=0.2)
    predictor = engine.ctx.predictor
    calls = []
    plain = predictor.predict

    def predict_by_index(session, experiment_id, cycles_seen):
        calls.append(experiment_id)
        estimate = plain(session, experiment_id, cycles_seen)
        row = session.scalar(select(Prediction).where(Prediction.experiment_id == experiment_id))
        row.cycles_seen = cycles_seen - 1
        return estimate

    predictor.predict = predict_by_index
    assert engine.run(poll_interval_s=0.0, max_steps=1000).finished
    with read_session(db) as s:
        reasons = [e.end_reason for e in s.scalars(select(Experiment))]
        rows = s.scalar(select(func.count()).select_from(Prediction))
    assert all(r.startswith("end of life") for r in reasons), reasons
    assert sorted(calls) == sorted(set(calls)) and rows == len(reasons)


def test_damaged_cell_is_skipped_and_the_round_goes_on(setup):
    db, spec, campaign_id, cycler, make_engine = setup
    engine = make_engine(operator=AutoOperator(refuse={2}))
    assert engine.run(poll_interval_s=0.0, max_steps=500).finished
    with read_session(db) as s:
        statuses = [e.status for e in s.scalars(select(Experiment))]
        events = [e.kind for e in s.scalars(select(Event))]
    assert statuses.count(ExperimentStatus.ABORTED) == 1
    assert statuses.count(ExperimentStatus.COMPLETED) == spec.rounds * spec.batch_size - 1
    assert "cell_not_loaded" in events


def test_health_verdicts_flag_or_stop_cells_after_checkpoints(setup):
    db, spec, campaign_id, cycler, make_engine = setup
    cycler.eis_every = spec.eis.every_cycles  # a checkpoint after cycle 15 (index 14)
    potentiostat = FakePotentiostat()
    monitor = ScriptedHealthMonitor({1: HealthAction.REVIEW, 2: HealthAction.STOP})
    engine = make_engine(potentiostat=potentiostat, health=monitor)
    assert engine.run(poll_interval_s=0.0, max_steps=800).finished
    with read_session(db) as s:
        experiments = {e.id: (e.status, e.end_reason) for e in s.scalars(select(Experiment))}
        review = [e.experiment_id for e in s.scalars(select(Event)) if e.kind == "health_review"]
        spectra = s.scalar(select(func.count()).select_from(EisSpectrum))
    flagged, stopped = monitor.seen[0], monitor.seen[1]
    status, reason = experiments[stopped]
    assert status == ExperimentStatus.ABORTED
    assert reason.startswith("cell health at cycle 14: stopped") and "failure score +1.00" in reason
    assert experiments[flagged][0] == ExperimentStatus.COMPLETED
    assert review and review == [flagged] * len(review)
    others = [v for k, v in experiments.items() if k != stopped]
    assert all(status == ExperimentStatus.COMPLETED for status, _ in others)
    # one checkpoint per cell before its early stop at cycle 30, each measured and stored
    assert spectra == potentiostat.sweeps == len(experiments)


def test_a_killed_orchestrators_leases_are_taken_over_at_once(setup):
    import subprocess
    import sys

    from voltloop.db.leases import acquire_lease, campaign_key
    from voltloop.orchestrator.context import holder_is_dead

    db, spec, campaign_id, cycler, make_engine = setup
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = f"{__import__('socket').gethostname()}:{gone.pid}:0a1b2c3d"
    assert holder_is_dead(dead) and not holder_is_dead(make_engine().ctx.holder)
    acquire_lease(db, campaign_key(spec.name), dead, 3600)
    engine = make_engine()
    assert engine.run(poll_interval_s=0.0, max_steps=500).finished
    with read_session(db) as s:
        kinds = list(s.scalars(select(Event.kind)))
    assert kinds.count("lease_taken_over") == 1
    engine.release()
    # a live holder on this host (pid 1) is not taken over
    acquire_lease(db, campaign_key(spec.name), f"{dead.split(':')[0]}:1:feed", 3600)
    with pytest.raises(CampaignBusyError):
        make_engine().step()


def test_async_mode_refills_free_channels_with_in_flight_cells_pending(tmp_path):
    from voltloop.campaigns.base import LoopMode

    url = f"sqlite:///{tmp_path / 'async.db'}"
    init_database(url)
    db = open_database(url)
    spec = load_campaign(EXAMPLE).model_copy(update={"mode": LoopMode.ASYNC, "rounds": 3})
    campaign_id = register_campaign(db, spec)
    channels = spec.instruments.cyclers[0].channels
    cycler = FakeCycler(spec.instruments.cyclers[0].url, channels, speeds=[1, 3, 5, 8])
    proposer = AttiaPoolProposer()

    def compile_protocol(parameters, run_on):
        protocol = {"max_cycles": spec.lifetime.stop_cycle, "life": fake_life(parameters)}
        return {"protocol": protocol, "safety": {"max_temperature_C": 60.0}}

    ctx = EngineContext(
        db=db, campaign_id=campaign_id, campaign_name=spec.name, spec=spec,
        cyclers={cycler.url: cycler}, potentiostat=None, proposer=proposer, predictor=None,
        operator=AutoOperator(), compile_protocol=compile_protocol,
        settings=EngineSettings(heartbeat_s=0.0),
    )  # fmt: skip
    assert CampaignEngine(ctx).run(poll_interval_s=0.0, max_steps=2000).finished
    budget = spec.rounds * spec.batch_size
    with read_session(db) as s:
        candidates = [tuple(sorted(c.parameters.items())) for c in s.scalars(select(Candidate))]
        statuses = [e.status for e in s.scalars(select(Experiment))]
        order = [(e.kind, e.payload) for e in s.scalars(select(Event).order_by(Event.id))]
    # the budget is spent exactly, every candidate once, every cell completed
    assert len(candidates) == len(set(candidates)) == budget
    assert statuses == [ExperimentStatus.COMPLETED] * budget
    # refills: more, smaller proposals than the round mode's three, after the first
    assert proposer.calls[0]["q"] == channels and len(proposer.calls) > spec.rounds
    assert sum(call["q"] for call in proposer.calls) == budget
    # a channel was refilled while other cells were still cycling: they were pending
    assert any(call["pending"] > 0 for call in proposer.calls[1:])
    open_rounds, overlapped = set(), False
    for kind, payload in order:
        if kind == "round_opened":
            overlapped |= bool(open_rounds)
            open_rounds.add(payload["round"])
        elif kind == "round_completed":
            open_rounds.discard(payload["round"])
    assert overlapped
    db.dispose()
