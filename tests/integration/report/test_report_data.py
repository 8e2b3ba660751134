"""gather_report against a campaign database written through the ingest API: the
numbers it returns are the database's."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from voltloop.db.engine import read_session
from voltloop.db.errors import UnknownCampaignError
from voltloop.db.migrate import open_database
from voltloop.db.models import Cycle
from voltloop.orchestrator.report_data import gather_report
from voltloop.orchestrator.report_model import loading_sheet

from .builder import ROUND_PLANS, build_campaign


@pytest.fixture
def built(sqlite_db_url):
    return build_campaign(sqlite_db_url)


def _gather(url, name, **kwargs):
    db = open_database(url, read_only=True)
    try:
        with read_session(db) as session:
            return gather_report(session, name, **kwargs)
    finally:
        db.dispose()


def test_rounds_candidates_experiments_match_the_database(built):
    data = _gather(built.url, built.name)
    assert data.name == built.name and data.status == "completed" and data.kind == "protocol"
    assert [r.index for r in data.rounds] == [0, 1]
    assert [r.candidates for r in data.rounds] == [3, 3]
    assert data.rounds[0].duration_s == pytest.approx(9.5 * 3600)
    assert data.parameter_names == ("CC1", "CC2", "CC3")
    assert data.eol_threshold_ah == pytest.approx(0.88)
    assert len(data.candidates) == 6 and len(data.experiments) == 6
    by_id = {e.id: e for e in data.experiments}
    db = open_database(built.url, read_only=True)
    with read_session(db) as s:
        for r, plans in enumerate(ROUND_PLANS):
            for k, plan in enumerate(plans):
                e = by_id[built.experiment_ids[r][k]]
                assert e.status == plan.status.value and e.end_reason == plan.end_reason
                assert e.cell_id == built.cell_ids[r][k] and e.channel == built.channels[r][k]
                assert e.round_index == r and e.cycler_url == "sim://cycler"
                stored = s.scalar(select(func.count()).where(Cycle.experiment_id == e.id))
                assert e.cycles_stored == stored == plan.cycles
                eol = s.scalar(
                    select(func.min(Cycle.cycle_index)).where(
                        Cycle.experiment_id == e.id,
                        Cycle.cycle_index > 0,
                        Cycle.discharge_capacity_ah < 0.8 * 1.1,
                    )
                )
                assert e.measured_life == eol
                if plan.predicted is None:
                    assert e.prediction is None
                else:  # the latest prediction (most cycles seen) wins
                    assert e.prediction.predicted_life == pytest.approx(plan.predicted)
                    assert e.prediction.cycles_seen == 30
                    assert e.prediction.model == "fade-line v3"
    db.dispose()
    measured = {e.cell_id: e.measured_life for e in data.experiments}
    assert measured[built.cell_ids[0][0]] == 61 and measured[built.cell_ids[1][0]] == 81
    assert by_id[built.experiment_ids[1][1]].peak_temperature_c == pytest.approx(61.0)
    assert data.experiments_by_status()["completed"] == 3
    assert data.experiments_by_status()["safety_stopped"] == 1


def test_observed_life_is_measured_else_predicted(built):
    data = _gather(built.url, built.name)
    observed = {c.id: (c.observed_life, c.observed_source) for c in data.candidates}
    assert observed[built.candidate_ids[0][0]] == (61.0, "measured")
    assert observed[built.candidate_ids[0][1]] == (420.0, "predicted")
    assert observed[built.candidate_ids[0][2]] == (None, None)  # failed: teaches nothing
    assert observed[built.candidate_ids[1][0]] == (81.0, "measured")
    assert data.candidate(built.candidate_ids[1][0]).metrics == {"cycle_life": 81.0}


def test_spectra_events_and_recommendation(built):
    data = _gather(built.url, built.name, event_limit=5, spectra_experiments=2)
    assert data.spectra_total == built.spectra == 9
    assert len(data.spectra) == 2 and all(len(s.spectra) == 3 for s in data.spectra)
    assert [s.cycle_index for s in data.spectra[0].spectra] == [0, 15, 30]
    # the recommended candidate's cell comes first, then one spread over the rest
    assert data.spectra[0].experiment_id == built.experiment_ids[0][1]
    assert data.spectra[1].experiment_id == built.experiment_ids[0][0]
    assert len(data.events) == 5 and data.events_total == 2 + 12 + 2
    assert data.events[-1].kind == "recommendation"  # newest last
    assert [e.id for e in data.events] == sorted(e.id for e in data.events)
    assert data.event_counts["experiment_ended"] == 6
    assert data.event_levels["error"] == 1
    assert data.recommendation.candidate_id == built.recommended_candidate
    assert data.recommendation.objective == 420.0


def test_loading_sheet_per_round(built):
    data = _gather(built.url, built.name)
    sheet = loading_sheet(data, 1)
    assert [row.cell_id for row in sheet] == sorted(built.cell_ids[1])
    assert {row.experiment_id for row in sheet} == set(built.experiment_ids[1])
    row = next(r for r in sheet if r.cell_id == built.cell_ids[1][2])
    assert row.channel == built.channels[1][2] and row.status == "aborted"
    assert row.parameters == ROUND_PLANS[1][2].parameters
    assert loading_sheet(data, 7) == []


def test_empty_campaign_and_unknown_name(sqlite_db_url):
    built = build_campaign(
        sqlite_db_url, predictions=False, eis=False, recommendation=False, cycles=False
    )
    data = _gather(built.url, built.name)
    assert data.traces == {} and data.spectra == () and data.recommendation is None
    assert all(c.observed_life is None for c in data.candidates)
    with pytest.raises(UnknownCampaignError, match="known campaigns: report-test"):
        _gather(built.url, "nope")


def test_gather_on_both_backends(db_url):
    """The same numbers from SQLite and PostgreSQL (read-only sessions on both)."""
    built = build_campaign(db_url)
    data = _gather(db_url, built.name)
    assert [c.observed_life for c in data.candidates] == [61.0, 420.0, None, 81.0, None, None]
    assert data.spectra_total == 9 and data.events_total == 16
    assert sum(e.cycles_stored for e in data.experiments) == 70 + 30 + 12 + 90 + 20


def test_a_campaign_without_rounds_renders_with_notes(sqlite_db_url):
    from voltloop.db.engine import write_session
    from voltloop.db.models import Campaign
    from voltloop.orchestrator.report import render_html

    db = open_database(sqlite_db_url)
    with write_session(db) as s:
        s.add(Campaign(name="fresh", kind="protocol", spec={"objectives": []}, seed=1))
    db.dispose()
    data = _gather(sqlite_db_url, "fresh")
    assert data.rounds == () and data.eol_threshold_ah is None
    page = render_html(data)
    assert "No cycles were stored" in page and "The campaign has no rounds yet" in page
    assert "No rounds yet, so no loading sheets" in page and "No recommendation yet" in page
