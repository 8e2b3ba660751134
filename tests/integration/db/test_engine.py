"""Engines: SQLite pragmas, read-only mode on both engines, clear connection errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import exc, select, text

from voltloop.db.engine import make_engine, read_session, write_session
from voltloop.db.enums import CampaignKind, CampaignStatus
from voltloop.db.errors import (
    BadDatabaseUrlError,
    DatabaseNotInitialisedError,
    DatabaseUnavailableError,
)
from voltloop.db.models import Campaign
from voltloop.db.testing import free_port

pytestmark = pytest.mark.integration


def test_sqlite_connections_get_the_pragmas(sqlite_db_url: str) -> None:
    engine = make_engine(sqlite_db_url, busy_timeout_s=7)
    try:
        with engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()
    assert pragma == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 7000,
        "synchronous": 1,
    }


def test_foreign_keys_are_enforced(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with pytest.raises(exc.IntegrityError), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO round (campaign_id, round_index, status, model_version_ids,"
                    " created_at) VALUES (424242, 0, 'planned', '[]', :now)"
                ),
                {"now": dt.datetime.now(dt.UTC)},
            )
    finally:
        engine.dispose()


def test_timestamps_come_back_aware_utc_and_naive_ones_are_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    local = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    try:
        with write_session(engine) as session:
            session.add(Campaign(name="tz", kind=CampaignKind.PROTOCOL, spec={}, created_at=local))
        with read_session(engine) as session:
            stored = session.scalars(select(Campaign.created_at)).one()
        assert stored == local and stored.tzinfo == dt.UTC and stored.hour == 10
        with pytest.raises(exc.StatementError, match="naive datetime"), write_session(engine) as s:
            s.add(
                Campaign(name="naive", kind="protocol", spec={}, created_at=dt.datetime(2026, 1, 1))
            )
    finally:
        engine.dispose()


WRITES = [
    "INSERT INTO campaign (name, kind, spec, status, seed, created_at, updated_at) "
    "VALUES ('intruder', 'protocol', '{}', 'created', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    "UPDATE campaign SET name = 'renamed'",
    "DELETE FROM campaign",
    "DROP TABLE campaign",
    "CREATE TABLE sneaky (x INTEGER)",
    "ALTER TABLE campaign ADD COLUMN sneaky INTEGER",
]


def _seed_campaign(url: str) -> None:
    engine = make_engine(url)
    with write_session(engine) as session:
        session.add(Campaign(name="keep", kind=CampaignKind.PROTOCOL, spec={"rounds": 4}))
    engine.dispose()


@pytest.mark.parametrize("statement", WRITES)
def test_read_only_engine_refuses_writes(db_url: str, statement: str) -> None:
    _seed_campaign(db_url)
    reader = make_engine(db_url, read_only=True)
    try:
        with pytest.raises(exc.DBAPIError), reader.begin() as connection:
            connection.execute(text(statement))
        with reader.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM campaign")).scalar() == 1
    finally:
        reader.dispose()
    writer = make_engine(db_url)
    try:
        with read_session(writer) as session:
            campaign = session.scalars(select(Campaign)).one()
            assert (campaign.name, campaign.status) == ("keep", CampaignStatus.CREATED)
    finally:
        writer.dispose()


def test_read_only_sqlite_refuses_attach_and_pragma_changes(
    sqlite_db_url: str, tmp_path: Path
) -> None:
    reader = make_engine(sqlite_db_url, read_only=True)
    try:
        with reader.connect() as connection:
            for statement in (
                f"ATTACH DATABASE '{tmp_path / 'other.db'}' AS other",
                "PRAGMA query_only=OFF",
                "PRAGMA journal_mode=DELETE",
            ):
                with pytest.raises(exc.DBAPIError):
                    connection.exec_driver_sql(statement)
            assert connection.exec_driver_sql("PRAGMA table_info(campaign)").fetchall()
    finally:
        reader.dispose()
    assert not (tmp_path / "other.db").exists()


def test_read_only_sqlite_with_spaces_in_path(tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "a dir #1 é" / "my db.db"
    path.parent.mkdir()
    path.write_bytes(sqlite_template.read_bytes())
    reader = make_engine(f"sqlite:///{path}", read_only=True)
    try:
        with reader.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM campaign")).scalar() == 0
    finally:
        reader.dispose()


def test_read_only_open_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(DatabaseNotInitialisedError):
        make_engine(f"sqlite:///{tmp_path / 'none.db'}", read_only=True)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_names_masked_url_and_cause() -> None:
    url = f"postgresql://alice:s3cret@127.0.0.1:{free_port()}/voltloop"
    with pytest.raises(DatabaseUnavailableError) as error:
        make_engine(url, connect_timeout_s=2)
    message = str(error.value)
    assert "s3cret" not in message
    assert "alice:***@127.0.0.1" in message
    assert "refused" in message.lower() or "failed" in message.lower()
    assert error.value.exit_code == 1


def test_missing_driver_is_a_clear_error() -> None:
    with pytest.raises((DatabaseUnavailableError, BadDatabaseUrlError)) as error:
        make_engine("postgresql+pg8000://bob:pw@127.0.0.1/db")
    assert "pg8000" in str(error.value) and "pw@" not in str(error.value)


def test_unopenable_sqlite_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailableError, match="cannot open database sqlite:///"):
        make_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
