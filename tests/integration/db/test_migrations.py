"""Alembic migrations: the only way the schema is made, and they match the models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from voltloop.db import migrate
from voltloop.db.engine import make_engine
from voltloop.db.errors import (
    AlreadyInitialisedError,
    DatabaseNotInitialisedError,
    MigrationMismatchError,
)
from voltloop.db.models import TABLE_NAMES, Base

pytestmark = pytest.mark.integration


def test_models_and_migration_head_agree(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert diffs == []
    assert set(TABLE_NAMES) | {"alembic_version"} == tables


def test_init_creates_schema_then_reports_up_to_date(empty_db_url: str) -> None:
    first = migrate.init_database(empty_db_url)
    assert first.before is None and first.after == migrate.head_revision() and first.changed
    second = migrate.init_database(empty_db_url)
    assert not second.changed
    engine = migrate.open_database(empty_db_url)
    engine.dispose()


def test_init_refuses_a_foreign_non_empty_database(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE someone_elses (x INTEGER)"))
    engine.dispose()
    with pytest.raises(AlreadyInitialisedError, match="someone_elses"):
        migrate.init_database(empty_db_url)


def test_opening_an_uninitialised_database_says_run_db_init(empty_db_url: str) -> None:
    make_engine(empty_db_url).dispose()  # creates the empty SQLite file
    with pytest.raises(DatabaseNotInitialisedError, match="voltloop db init"):
        migrate.open_database(empty_db_url)


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(DatabaseNotInitialisedError, match="voltloop db init"):
        migrate.open_database(f"sqlite:///{path}")
    assert not path.exists()


def test_unknown_revision_is_a_mismatch(fresh_db_url: str) -> None:
    db_url = fresh_db_url
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(MigrationMismatchError) as error:
        migrate.open_database(db_url)
    assert error.value.exit_code != 0
    assert "database" in str(error.value) and "at 9999" in str(error.value)
    assert f"code expects {migrate.head_revision()}" in str(error.value)


NEXT_REVISION = '''"""Test-only revision on top of the head."""
import sqlalchemy as sa
from alembic import op

revision = "9000"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("note")
'''


def test_database_behind_code_says_run_db_upgrade_and_upgrade_works(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = fresh_db_url
    head = migrate.head_revision()
    newer = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, newer, ignore=shutil.ignore_patterns("__pycache__"))
    (newer / "versions" / "9000_note.py").write_text(NEXT_REVISION.format(head=head))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", newer)

    with pytest.raises(MigrationMismatchError) as error:
        migrate.open_database(db_url)
    assert str(error.value).startswith("migration mismatch: database ")
    assert f"at {head}, code expects 9000; run `voltloop db upgrade`" in str(error.value)
    with pytest.raises(AlreadyInitialisedError, match="voltloop db upgrade"):
        migrate.init_database(db_url)

    result = migrate.upgrade_database(db_url)
    assert (result.before, result.after) == (head, "9000")
    engine = migrate.open_database(db_url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("campaign")}
    finally:
        engine.dispose()
    assert "note" in columns


def test_downgrade_to_base_removes_the_schema_and_init_restores_it(fresh_db_url: str) -> None:
    result = migrate.downgrade_database(fresh_db_url)
    assert (result.before, result.after) == (migrate.head_revision(), "base")
    engine = make_engine(fresh_db_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    assert migrate.init_database(fresh_db_url).changed


def test_init_creates_the_sqlite_directory(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "c1" / "voltloop.db"
    assert migrate.init_database(f"sqlite:///{path}").changed
    assert path.is_file()


def test_upgrade_from_0001_keeps_rounds_as_search_rounds(fresh_db_url: str) -> None:
    """0002 adds ``round.kind``: rounds stored before it are search rounds."""
    migrate.downgrade_database(fresh_db_url, "0001")
    engine = make_engine(fresh_db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO campaign (id, name, kind, spec, status, seed, created_at, "
                    "updated_at) VALUES (1, 'old', 'protocol', '{}', 'running', 0, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO round (id, campaign_id, round_index, status, "
                    "model_version_ids, created_at) VALUES (1, 1, 0, 'completed', '[]', "
                    "CURRENT_TIMESTAMP)"
                )
            )
    finally:
        engine.dispose()
    with pytest.raises(MigrationMismatchError, match="at 0001"):
        migrate.open_database(fresh_db_url)
    result = migrate.upgrade_database(fresh_db_url)
    assert (result.before, result.after) == ("0001", migrate.head_revision())
    engine = migrate.open_database(fresh_db_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT kind FROM round")).scalars().all() == ["search"]
    finally:
        engine.dispose()
