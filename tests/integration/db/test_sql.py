"""Read-only SQL: reading works, every way of writing is refused, the data stays."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from voltloop.db.engine import make_engine, parse_url, sqlite_path
from voltloop.db.errors import ReadOnlyViolationError, SqlStatementError
from voltloop.db.sql import first_keyword, run_read_only_sql

from .conftest import populate

pytestmark = pytest.mark.integration

WRITES = [
    "DELETE FROM campaign",
    "  -- sneaky comment\n UPDATE campaign SET status = 'aborted'",
    "/* c */ INSERT INTO event (created_at, level, kind, message) VALUES "
    "(CURRENT_TIMESTAMP, 'info', 'x', 'y')",
    "DROP TABLE cycle",
    "CREATE TABLE x (y INTEGER)",
    "ALTER TABLE campaign ADD COLUMN z INTEGER",
    "WITH gone AS (SELECT id FROM campaign) DELETE FROM campaign WHERE id IN (SELECT id FROM gone)",
    "VACUUM",
    "SET default_transaction_read_only = off",
    "BEGIN",
    "COMMIT",
    "TRUNCATE campaign",
    "",
]


def _fingerprint(engine: Engine) -> str:
    digest = hashlib.sha256()
    with engine.connect() as connection:
        for table in ("campaign", "round", "experiment", "cycle", "event"):
            rows = connection.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all()
            digest.update(repr(rows).encode())
        if connection.dialect.name == "sqlite":
            schema = connection.execute(text("SELECT sql FROM sqlite_master ORDER BY 1")).all()
        else:
            schema = connection.execute(
                text("SELECT table_name, column_name FROM information_schema.columns "
                     "WHERE table_schema = 'public' ORDER BY 1, 2")
            ).all()  # fmt: skip
        digest.update(repr(schema).encode())
    return digest.hexdigest()


def test_select_returns_rows(db_url: str, engine: Engine) -> None:
    populate(engine)
    result = run_read_only_sql(db_url, "SELECT name, kind FROM campaign ORDER BY name")
    assert result.columns == ["name", "kind"]
    assert result.rows == [["cathodes", "materials"], ["fastcharge", "protocol"]]
    limited = run_read_only_sql(db_url, "SELECT cycle_id, data FROM cycle_series", max_rows=2)
    assert limited.truncated and len(limited.rows) == 2
    assert limited.rows[0][1].endswith(" bytes>")


def test_writes_are_refused_and_nothing_changes(db_url: str, engine: Engine) -> None:
    populate(engine)
    before = _fingerprint(engine)
    for statement in WRITES:
        with pytest.raises(ReadOnlyViolationError) as error:
            run_read_only_sql(db_url, statement)
        assert error.value.exit_code == 2, statement
        assert "read-only" in str(error.value), statement
    assert _fingerprint(engine) == before


def test_writes_hidden_behind_a_reading_keyword_are_refused(db_url: str, engine: Engine) -> None:
    populate(engine)
    before = _fingerprint(engine)
    sneaky = [
        "WITH gone AS (DELETE FROM event RETURNING id) SELECT count(*) FROM gone",
        "SELECT 1; DELETE FROM campaign",
        "WITH x AS (SELECT 1) DELETE FROM campaign",
    ]
    if engine.dialect.name == "sqlite":
        sneaky += ["PRAGMA query_only = OFF", "PRAGMA journal_mode = DELETE",
                   "PRAGMA user_version = 5"]  # fmt: skip
    else:
        sneaky += ["SELECT nextval('campaign_id_seq')", "SELECT setval('campaign_id_seq', 99)"]
    for statement in sneaky:
        with pytest.raises((ReadOnlyViolationError, SqlStatementError)):
            run_read_only_sql(db_url, statement)
    assert _fingerprint(engine) == before
    assert run_read_only_sql(db_url, "SELECT count(*) FROM campaign").rows == [[2]]


def test_bad_sql_is_a_clear_error(db_url: str) -> None:
    with pytest.raises(SqlStatementError, match="rejected") as error:
        run_read_only_sql(db_url, "SELECT * FROM no_such_table")
    assert error.value.exit_code == 2


def test_runaway_statement_is_stopped(db_url: str) -> None:
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    with pytest.raises(SqlStatementError):
        run_read_only_sql(db_url, endless, timeout_s=0.5)


def test_sqlite_file_is_byte_identical_after_refused_writes(sqlite_db_url: str) -> None:
    path = sqlite_path(parse_url(sqlite_db_url))
    assert path is not None
    engine = make_engine(sqlite_db_url)
    populate(engine)
    engine.dispose()  # checkpoints the WAL into the file
    before = Path(path).read_bytes()
    for statement in WRITES[:7]:
        with pytest.raises(ReadOnlyViolationError):
            run_read_only_sql(sqlite_db_url, statement)
    assert Path(path).read_bytes() == before


def test_first_keyword_skips_comments() -> None:
    assert first_keyword("-- a\n/* b */  select 1") == "select"
    assert first_keyword("   ") == ""
