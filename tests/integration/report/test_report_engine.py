"""The report on what the campaign engine itself leaves in the database: the engine
runs a campaign against in-memory fakes, then `voltloop report` reads it."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from voltloop.campaigns.loading import load_campaign
from voltloop.db.engine import read_session
from voltloop.db.migrate import init_database, open_database
from voltloop.db.models import Event, Experiment
from voltloop.orchestrator.cli import main
from voltloop.orchestrator.context import EngineContext, EngineSettings
from voltloop.orchestrator.engine import CampaignEngine, register_campaign
from voltloop.orchestrator.testing import (
    AttiaPoolProposer,
    AutoOperator,
    FakeCycler,
    StoredLifePredictor,
    fake_life,
)

from .builder import EXAMPLE
from .htmltables import ReportPage


@pytest.fixture(scope="module")
def engine_campaign(tmp_path_factory) -> tuple[str, str]:
    """The CI campaign run to completion by the engine; half the cells run on to end of life
    (fake lives of 68-150 cycles), one cell arrives damaged."""
    url = f"sqlite:///{tmp_path_factory.mktemp('engine') / 'campaign.db'}"
    init_database(url)
    db = open_database(url)
    base = load_campaign(EXAMPLE)
    spec = base.model_copy(
        update={"lifetime": base.lifetime.model_copy(update={"run_to_end_of_life": 0.5})}
    )
    campaign_id = register_campaign(db, spec)
    cycler = FakeCycler(spec.instruments.cyclers[0].url, spec.instruments.cyclers[0].channels)
    predictor = StoredLifePredictor.registered(db)

    def compile_protocol(parameters, run_on):
        cycles = spec.lifetime.max_cycles if run_on else spec.lifetime.stop_cycle
        protocol = {"max_cycles": cycles, "life": 0.1 * fake_life(parameters)}
        return {"protocol": protocol, "safety": {"max_temperature_C": 60.0}}

    ctx = EngineContext(
        db=db, campaign_id=campaign_id, campaign_name=spec.name, spec=spec,
        cyclers={cycler.url: cycler}, potentiostat=None, proposer=AttiaPoolProposer(),
        predictor=predictor, operator=AutoOperator(refuse={3}),
        compile_protocol=compile_protocol,
        settings=EngineSettings(lease_ttl_s=120.0, heartbeat_s=0.0),
    )  # fmt: skip
    assert CampaignEngine(ctx).run(poll_interval_s=0.0, max_steps=1000).finished
    db.dispose()
    return url, spec.name


def test_report_of_an_engine_run(engine_campaign, tmp_path, capsys):
    url, name = engine_campaign
    out = tmp_path / "report.html"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", name, "--db", url, "--out", str(out), "--json"])
    assert exit_info.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out)
    text = out.read_text()
    report = ReportPage(text)
    db = open_database(url, read_only=True)
    with read_session(db) as s:
        experiments = {
            e.cell_id: (e.status.value, e.end_reason) for e in s.scalars(select(Experiment))
        }
        recommended = s.scalar(select(Event).where(Event.kind == "recommendation")).payload
        event_count = len(s.scalars(select(Event)).all())
    db.dispose()
    assert summary["experiments"]["aborted"] == 1
    assert summary["experiments"]["completed"] == len(experiments) - 1
    rows = {row["cell"]: row for row in report.table("experiments")}
    assert set(rows) == set(experiments)
    reached = 0
    for cell, (status, end_reason) in experiments.items():
        assert rows[cell]["status"] == status
        assert rows[cell]["end reason"] == end_reason
        if end_reason.startswith("end of life at cycle "):
            reached += 1  # the engine's reason names the same cycle the report measures
            assert rows[cell]["measured EOL"] == end_reason.rsplit(" ", 1)[1]
    assert reached >= 1
    # cells that ran on were also predicted at cycle 30: the calibration plot is drawn
    assert 'id="fig-calibration"' in text and "within ±2σ" in text
    facts = dict(report.tables["recommendation"][0])
    assert facts["candidate"] == str(recommended["candidate_id"])
    assert f"{event_count} events in all" in text
    sheets = report.tables["loading"]
    assert sum(len(table) - 1 for table in sheets) == len(experiments)
