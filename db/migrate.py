"""Schema migrations through Alembic, configured in code (no alembic.ini).

``init_database`` and ``upgrade_database`` back ``voltloop db init|upgrade``;
``open_database`` is how every other command opens a database: it refuses one
whose revision is not the code's head (docs/decisions/0013-migrations.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.engine import URL

from .engine import make_engine, mask_url, parse_url, sqlite_path
from .errors import AlreadyInitialisedError, DatabaseNotInitialisedError, MigrationMismatchError
from .models import Base

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for voltloop's migrations, optionally bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["target_metadata"] = Base.metadata
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "db/migrations/versions holds no revision"
    return head


def known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The database's Alembic revision, or None if it has never been migrated."""
    return MigrationContext.configure(connection).get_current_revision()


@dataclasses.dataclass(frozen=True)
class MigrationResult:
    url: str  # masked
    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def init_database(url: str | URL) -> MigrationResult:
    """Create the schema on an empty database (upgrade to head).

    A database already at head is left alone (``changed`` is False); one at an
    older revision, or a non-empty database without voltloop's version table, is
    refused with :class:`AlreadyInitialisedError`.
    """
    parsed = parse_url(url)
    path = sqlite_path(parsed) if parsed.get_backend_name() == "sqlite" else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)  # `--db sqlite:///runs/new.db`
    engine = make_engine(parsed)
    masked = mask_url(engine.url)
    head = head_revision()
    try:
        with engine.begin() as connection:
            before = current_revision(connection)
            if before == head:
                return MigrationResult(masked, before, head)
            if before is not None:
                raise AlreadyInitialisedError(
                    f"database {masked} already has a voltloop schema (revision {before}, "
                    f"code head {head}); run `voltloop db upgrade` instead"
                )
            existing = sorted(set(inspect(connection).get_table_names()) - {"alembic_version"})
            if existing:
                raise AlreadyInitialisedError(
                    f"database {masked} is not empty (tables: {', '.join(existing[:8])}"
                    f"{', ...' if len(existing) > 8 else ''}) and has no voltloop schema; "
                    "refusing to initialise it"
                )
            command.upgrade(alembic_config(connection), "head")
        return MigrationResult(masked, None, head)
    finally:
        engine.dispose()


def upgrade_database(url: str | URL) -> MigrationResult:
    """Upgrade an initialised database to the code's head revision."""
    engine = make_engine(url, must_exist=True)
    masked = mask_url(engine.url)
    head = head_revision()
    try:
        with engine.begin() as connection:
            before = current_revision(connection)
            if before is None:
                raise DatabaseNotInitialisedError(
                    f"database {masked} has no voltloop schema; run `voltloop db init`"
                )
            if before not in known_revisions():
                raise MigrationMismatchError(_ahead_message(masked, before, head))
            if before != head:
                command.upgrade(alembic_config(connection), "head")
        return MigrationResult(masked, before, head)
    finally:
        engine.dispose()


def check_revision(engine: Engine, url: str | URL | None = None) -> str:
    """Raise unless the database is at the code's head revision; return the revision.
    Errors name ``url`` (password masked) if given: a read-only engine's own URL is
    SQLite's ``file:...?mode=ro`` form, not what the user typed."""
    masked = mask_url(url if url is not None else engine.url)
    head = head_revision()
    with engine.connect() as connection:
        current = current_revision(connection)
    if current is None:
        raise DatabaseNotInitialisedError(
            f"database {masked} has no voltloop schema; run `voltloop db init`"
        )
    if current == head:
        return current
    if current not in known_revisions():
        raise MigrationMismatchError(_ahead_message(masked, current, head))
    raise MigrationMismatchError(
        f"migration mismatch: database {masked} at {current}, code expects {head}; "
        "run `voltloop db upgrade`"
    )


def open_database(url: str | URL, *, read_only: bool = False) -> Engine:
    """Open an existing, up-to-date voltloop database (the way commands open one)."""
    engine = make_engine(url, read_only=read_only, must_exist=True)
    try:
        check_revision(engine, url)
    except Exception:
        engine.dispose()
        raise
    return engine


def _ahead_message(masked: str, current: str, head: str) -> str:
    return (
        f"migration mismatch: database {masked} at {current}, code expects {head}; "
        f"revision {current} is unknown to this voltloop (made by a newer version?) - "
        "upgrade voltloop, or run `voltloop db upgrade` with the version that made it"
    )


def downgrade_database(url: str | URL, revision: str = "base") -> MigrationResult:
    """Migrate down to ``revision`` ("base" removes every voltloop table). Destructive."""
    engine = make_engine(url, must_exist=True)
    masked = mask_url(engine.url)
    try:
        with engine.begin() as connection:
            before = current_revision(connection)
            command.downgrade(alembic_config(connection), revision)
            after = current_revision(connection)
        return MigrationResult(masked, before, after or "base")
    finally:
        engine.dispose()


def autogenerate_revision(url: str | URL, message: str) -> None:
    """Developer aid: write a new revision file from the models' differences to ``url``.

    ``url`` must be a database at the current head. Review the file before committing.
    """
    engine = make_engine(url, must_exist=True)
    try:
        with engine.begin() as connection:
            command.revision(alembic_config(connection), message=message, autogenerate=True)
    finally:
        engine.dispose()
