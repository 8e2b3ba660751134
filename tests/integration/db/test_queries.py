"""Queries and status: filters, bound parameters, unknown names."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, func, select

from voltloop.db.engine import read_session
from voltloop.db.errors import InvalidRecordError, UnknownCampaignError
from voltloop.db.models import Campaign
from voltloop.db.queries import QueryFilters, parse_when, run_query
from voltloop.db.status import campaign_overview

from .conftest import populate

pytestmark = pytest.mark.integration

HOSTILE = [
    "x'; DROP TABLE campaign; --",
    "' OR '1'='1",
    'fastcharge" OR 1=1 --',
    "%",
    "fastcharge'--",
]


def _query(engine: Engine, kind: str, **filters: object):
    with read_session(engine) as session:
        return run_query(session, kind, QueryFilters(**filters))


def test_listings_with_filters(engine: Engine) -> None:
    ids = populate(engine)
    campaigns = _query(engine, "campaigns")
    assert [r["name"] for r in campaigns.rows] == ["fastcharge", "cathodes"]
    assert campaigns.rows[0]["rounds"] == 2 and campaigns.rows[0]["experiments"] == 4
    assert [r["round"] for r in _query(engine, "rounds", campaign="fastcharge").rows] == [0, 1]
    assert [r["status"] for r in _query(engine, "rounds", status="running").rows] == ["running"] * 2
    round1 = _query(engine, "experiments", campaign="fastcharge", round_index=1)
    assert sorted(r["status"] for r in round1.rows) == ["queued", "running"]
    running = _query(engine, "experiments", status="running").rows
    assert running[0]["instrument"] == "socket://127.0.0.1:5025" and running[0]["channel"] == 0
    completed = _query(engine, "experiments", status="completed")
    assert {r["experiment"] for r in completed.rows} == set(ids["fastcharge"][:2])
    cycles = _query(engine, "cycles", experiment_id=ids["fastcharge"][0])
    assert [r["cycle_index"] for r in cycles.rows] == [0, 1, 2]
    assert cycles.rows[0]["discharge_capacity_ah"] > 0
    assert len(_query(engine, "cycles", campaign="cathodes").rows) == 0
    assert _query(engine, "spectra", campaign="fastcharge").rows[0]["n_points"] == 9
    assert _query(engine, "models").rows[0]["metrics"] == {"mape": 0.09}
    assert len(_query(engine, "experiments", limit=2).rows) == 2


def test_date_filters(engine: Engine) -> None:
    populate(engine)
    tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert _query(engine, "campaigns", since=tomorrow).rows == []
    assert len(_query(engine, "campaigns", until=tomorrow).rows) == 2
    assert len(_query(engine, "experiments", since=parse_when("2000-01-01")).rows) == 5
    with pytest.raises(InvalidRecordError, match="bad date"):
        parse_when("yesterday")


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_stay_strings(engine: Engine, hostile: str) -> None:
    populate(engine)
    with pytest.raises(UnknownCampaignError) as error:
        _query(engine, "experiments", campaign=hostile)
    assert repr(hostile) in str(error.value) and "fastcharge" in str(error.value)
    with pytest.raises(InvalidRecordError, match="unknown status"):
        _query(engine, "experiments", status=hostile)
    with pytest.raises(InvalidRecordError, match="not a UUID"):
        _query(engine, "cycles", experiment_id=hostile)
    with read_session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 2


def test_a_campaign_named_like_an_injection_is_found_verbatim(engine: Engine) -> None:
    from voltloop.db.engine import write_session
    from voltloop.db.enums import CampaignKind

    with write_session(engine) as session:
        session.add(Campaign(name=HOSTILE[0], kind=CampaignKind.PROTOCOL, spec={}))
        session.add(Campaign(name="other", kind=CampaignKind.PROTOCOL, spec={}))
    rows = _query(engine, "campaigns", campaign=HOSTILE[0]).rows
    assert [r["name"] for r in rows] == [HOSTILE[0]]


def test_unknown_campaign_with_empty_database(engine: Engine) -> None:
    with pytest.raises(UnknownCampaignError, match="no campaigns yet") as error:
        _query(engine, "rounds", campaign="nope")
    assert error.value.exit_code == 2


def test_filters_that_do_not_apply_are_refused(engine: Engine) -> None:
    with pytest.raises(InvalidRecordError, match="--round does not apply to `db query models`"):
        _query(engine, "models", round_index=1)
    with pytest.raises(InvalidRecordError, match="--limit"):
        _query(engine, "campaigns", limit=0)


def test_status_overview(engine: Engine) -> None:
    ids = populate(engine)
    with read_session(engine) as session:
        everything = campaign_overview(session)
        one = campaign_overview(session, "fastcharge")
        with pytest.raises(UnknownCampaignError, match="known campaigns: cathodes, fastcharge"):
            campaign_overview(session, "fastcharg")
    fast = everything["campaigns"][0]
    assert fast["name"] == "fastcharge" and fast["current_round"] == 1
    assert fast["experiments"]["completed"] == 2 and fast["experiments"]["queued"] == 1
    assert fast["channels_in_use"] == 1
    assert everything["channels"]["in_use"] == 2 and everything["channels"]["total"] == 3
    assert [r["round"] for r in one["rounds"]] == [0, 1]
    assert one["rounds"][1]["experiments"]["running"] == 1
    assert one["rounds"][0]["experiments"]["completed"] == 2
    assert len(ids["cathodes"]) == 1
