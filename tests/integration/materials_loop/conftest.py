"""The CI materials campaign (campaigns/examples/materials-ci.toml) run once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from voltloop.campaigns.materials_campaign import MaterialsCampaign
from voltloop.orchestrator.dry_run import DryRunSummary

EXAMPLE = Path(__file__).resolve().parents[3] / "campaigns" / "examples" / "materials-ci.toml"


@dataclass
class FinishedRun:
    spec: MaterialsCampaign
    url: str
    summary: DryRunSummary


@pytest.fixture(scope="session")
def ci_spec() -> MaterialsCampaign:
    from voltloop.orchestrator.dry_run import load_dry_run_spec

    spec = load_dry_run_spec(EXAMPLE)
    assert isinstance(spec, MaterialsCampaign)
    return spec


@pytest.fixture(scope="session")
def finished_run(ci_spec: MaterialsCampaign, tmp_path_factory: pytest.TempPathFactory):
    """The CI campaign dry-run to the end (in-process, without Prefect)."""
    from voltloop.orchestrator.dry_run import run_dry_run
    from voltloop.orchestrator.materials_proposing import SurrogateSettings

    url = f"sqlite:///{tmp_path_factory.mktemp('materials') / 'campaign.db'}"
    summary = run_dry_run(ci_spec, url, surrogate=SurrogateSettings(members=3, epochs=20))
    return FinishedRun(ci_spec, url, summary)
