"""Fixtures of the real-run tests: a campaign database with fake instruments and a
loading desk on a hand-driven clock."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from voltloop.campaigns.loading import load_campaign
from voltloop.db.migrate import open_database
from voltloop.orchestrator.context import EngineContext, EngineSettings
from voltloop.orchestrator.engine import CampaignEngine, register_campaign
from voltloop.orchestrator.operator_desk import LoadingDesk, OperatorSettings
from voltloop.orchestrator.testing import AttiaPoolProposer, FakeCycler, fake_life

EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "protocol-ci.toml"


class HandClock:
    """UTC time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class DeskCampaign:
    """protocol-ci (2 rounds x 4 cells) on a fake cycler, operated through a desk."""

    def __init__(self, url: str, sheets: Path) -> None:
        self.url = url
        self.db = open_database(url)
        self.spec = load_campaign(EXAMPLE).model_copy(update={"eis": None})
        self.campaign_id = register_campaign(self.db, self.spec)
        cfg = self.spec.instruments.cyclers[0]
        self.cycler = FakeCycler(cfg.url, cfg.channels)
        self.clock = HandClock()
        self.announced: list[str] = []
        self.settings = OperatorSettings(reminder_every_s=600, timeout_s=3600, sheet_dir=sheets)

    def desk(self) -> LoadingDesk:
        return LoadingDesk(
            self.db,
            self.campaign_id,
            self.spec.name,
            self.settings,
            announce=self.announced.append,
            now=self.clock,
        )

    def engine(self) -> CampaignEngine:
        spec = self.spec

        def compile_protocol(parameters, run_on):
            cycles = spec.lifetime.max_cycles if run_on else spec.lifetime.stop_cycle
            protocol = {"max_cycles": cycles, "life": fake_life(parameters)}
            return {"protocol": protocol, "safety": {"max_temperature_C": 60.0}}

        ctx = EngineContext(
            db=self.db,
            campaign_id=self.campaign_id,
            campaign_name=spec.name,
            spec=spec,
            cyclers={self.cycler.url: self.cycler},
            potentiostat=None,
            proposer=AttiaPoolProposer(),
            predictor=None,
            operator=self.desk(),
            compile_protocol=compile_protocol,
            settings=EngineSettings(heartbeat_s=0.0),
        )
        return CampaignEngine(ctx)


@pytest.fixture
def desk_campaign(sqlite_db_url: str, tmp_path: Path):
    campaign = DeskCampaign(sqlite_db_url, tmp_path / "sheets")
    yield campaign
    campaign.db.dispose()
