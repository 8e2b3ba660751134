"""An over-temperature trip on the instrument: the experiment ends safety-stopped with
the instrument's reason at the poll that sees it, the partial cycle up to the trip is
stored, and the safe proposer (BoTorch, safe mode on peak temperature) keeps the next
rounds out of the hot region."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from voltloop.campaigns.loading import load_campaign
from voltloop.db.engine import read_session
from voltloop.db.enums import ExperimentStatus
from voltloop.db.migrate import init_database, open_database
from voltloop.db.models import Candidate, Cycle, Event, Experiment, Round
from voltloop.orchestrator.context import EngineContext, EngineSettings
from voltloop.orchestrator.engine import CampaignEngine, register_campaign
from voltloop.orchestrator.proposing import ProtocolProposer
from voltloop.orchestrator.testing import AutoOperator, FakeCycler, StoredLifePredictor

EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "protocol-ci.toml"
LIMIT_C = 45.0  # the campaign's peak-temperature constraint, also the instrument's limit


def life(parameters: dict[str, float]) -> float:
    """Faster first steps last longer here (as in the Attia space, whose optimum is at
    CC1 = 8 C), so the hot corner is attractive and only safe mode keeps BO out of it."""
    return 800.0 + 100.0 * parameters["CC1"] - 30.0 * parameters["CC2"]


def peak_temperature(parameters: dict[str, float]) -> float:
    """The fake cell's peak temperature: hot when both early steps are fast."""
    return 26.0 + 1.6 * parameters["CC1"] + 1.4 * parameters["CC2"]


def test_over_temperature_stops_the_channel_and_the_safe_proposer_avoids_the_region(tmp_path):
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    init_database(url)
    db = open_database(url)
    spec = load_campaign(EXAMPLE).model_copy(update={"rounds": 4})
    assert spec.constraints[0].max == LIMIT_C and spec.constraints[0].safe_mode
    campaign_id = register_campaign(db, spec)
    cycler = FakeCycler(spec.instruments.cyclers[0].url, spec.instruments.cyclers[0].channels)
    predictor = StoredLifePredictor.registered(db)

    def compile_protocol(parameters, run_on):
        protocol = {
            "max_cycles": spec.lifetime.stop_cycle,
            "life": life(parameters),
            "peak_C": peak_temperature(parameters),
        }
        return {"protocol": protocol, "safety": {"max_temperature_C": LIMIT_C}}

    ctx = EngineContext(
        db=db,
        campaign_id=campaign_id,
        campaign_name=spec.name,
        spec=spec,
        cyclers={cycler.url: cycler},
        potentiostat=None,
        proposer=ProtocolProposer(spec),
        predictor=predictor,
        operator=AutoOperator(),
        compile_protocol=compile_protocol,
        settings=EngineSettings(heartbeat_s=0.0),
    )
    engine = CampaignEngine(ctx)
    assert engine.run(poll_interval_s=0.0, max_steps=2000).finished
    with read_session(db) as s:
        rows = s.execute(
            select(Experiment, Candidate, Round.round_index)
            .join(Candidate, Candidate.id == Experiment.candidate_id)
            .join(Round, Round.id == Candidate.round_id)
        ).all()
        tripped_rows = [
            (e, c, r) for e, c, r in rows if e.status == ExperimentStatus.SAFETY_STOPPED
        ]
        assert tripped_rows, "round 0's space-filling batch should reach the hot corner"
        for experiment, candidate, _ in tripped_rows:
            assert peak_temperature(candidate.parameters) > LIMIT_C
            assert experiment.end_reason.startswith("safety_stopped: over-temperature")
            # the poll that saw the trip ended it: the channel was not read again for it
            assert cycler.reads_after_end.get(experiment.id, 0) == 0
            stored_max = s.scalar(
                select(Cycle.temperature_max_c)
                .where(Cycle.experiment_id == experiment.id)
                .order_by(Cycle.cycle_index.desc())
            )
            assert stored_max > LIMIT_C  # the cycle up to the trip is stored, trip included
            kinds = s.scalars(select(Event.kind).where(Event.experiment_id == experiment.id)).all()
            assert "experiment_ended" in kinds
        first_tripped_round = min(r for _, _, r in tripped_rows)
        later = [c for _, c, r in rows if r > first_tripped_round]
        assert later, "there are rounds after the first trip"
        hot = [c.parameters for c in later if peak_temperature(c.parameters) > LIMIT_C]
        assert hot == [], f"safe mode proposed candidates in the hot region: {hot}"
        # the answer is a tested protocol the models believe is within the limit
        payload = s.scalar(select(Event.payload).where(Event.kind == "recommendation"))
        assert payload["rule"].startswith("best posterior mean among tested protocols")
        assert payload["meets_limits"] and payload["probability_feasible"] >= 0.9
        assert peak_temperature(payload["parameters"]) <= LIMIT_C
    db.dispose()
