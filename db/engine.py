"""Engines and sessions: one rule set for SQLite and PostgreSQL URLs.

* SQLite (the embedded default): every connection gets WAL journaling,
  ``foreign_keys=ON``, a busy timeout and ``synchronous=NORMAL``. The driver's own
  transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself, so
  savepoints and transactional DDL work; :func:`write_session` begins with
  ``BEGIN IMMEDIATE`` so concurrent writers wait for each other (busy timeout)
  instead of failing on a stale read snapshot (docs/decisions/0012).
* PostgreSQL: ``postgresql://`` and ``postgres://`` URLs use psycopg 3
  (``postgresql+psycopg://``); connects time out after ``connect_timeout_s``.
* ``read_only=True``: SQLite is opened through a ``file:`` URI with ``mode=ro``,
  ``query_only`` and an authorizer that denies every write; PostgreSQL sessions
  default to read-only transactions.
"""

from __future__ import annotations

import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from .errors import BadDatabaseUrlError, DatabaseNotInitialisedError, DatabaseUnavailableError

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
_BEGIN_OPTION = "voltloop_sqlite_begin"


def parse_url(url: str | URL) -> URL:
    """Parse and normalise a database URL (``postgresql://`` -> psycopg 3)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (exc.ArgumentError, ValueError) as error:
        raise BadDatabaseUrlError(
            f"cannot parse database URL {_mask_text(str(url))!r}: {error}"
        ) from None
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise BadDatabaseUrlError(
            f"unsupported database {mask_url(parsed)!r}: voltloop supports "
            "sqlite:///PATH and postgresql://USER@HOST/DB URLs"
        )
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (exc.ArgumentError, ValueError):
            return _mask_text(url)
    return url.render_as_string(hide_password=True)


def _mask_text(text: str) -> str:
    """Best-effort masking of ``scheme://user:password@host`` in unparseable text."""
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest:
        return text
    credentials, at, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else text


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for an in-memory database."""
    database = url.database or ""
    if database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return Path(urllib.parse.unquote(database[5:].split("?", 1)[0]))
    return Path(database)


def make_engine(
    url: str | URL,
    *,
    read_only: bool = False,
    must_exist: bool = False,
    busy_timeout_s: float = 30.0,
    connect_timeout_s: float = 10.0,
    check_connection: bool = True,
) -> Engine:
    """An Engine for ``url`` with voltloop's connection rules (module docstring).

    ``must_exist`` refuses a SQLite file that does not exist yet (instead of
    creating an empty one). ``check_connection`` opens one connection now, so an
    unreachable server or a missing driver is reported here, naming the URL.
    """
    parsed = parse_url(url)
    masked = mask_url(parsed)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed, masked, read_only, must_exist, busy_timeout_s)
    else:
        engine = _postgresql_engine(parsed, masked, read_only, connect_timeout_s)
    if check_connection:
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except exc.DBAPIError as error:
            engine.dispose()
            raise DatabaseUnavailableError(
                f"cannot open database {masked}: {describe_dbapi_error(error)}"
            ) from None
    return engine


def describe_dbapi_error(error: exc.DBAPIError) -> str:
    """The driver's own message, first line only (no SQL, no parameters)."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


def _sqlite_engine(
    url: URL, masked: str, read_only: bool, must_exist: bool, busy_timeout_s: float
) -> Engine:
    path = sqlite_path(url)
    if path is None:
        if read_only:
            raise BadDatabaseUrlError("an in-memory SQLite database cannot be opened read-only")
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_s},
        )
    else:
        if (must_exist or read_only) and not path.exists():
            raise DatabaseNotInitialisedError(
                f"no database at {path} ({masked}); create it with `voltloop db init`"
            )
        if read_only:
            quoted = urllib.parse.quote(str(path.resolve()))
            url = url.set(database=f"file:{quoted}", query={"mode": "ro", "uri": "true"})
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

    busy_ms = int(busy_timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
            else:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()
        if read_only:
            dbapi_connection.set_authorizer(_read_only_authorizer)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _postgresql_engine(url: URL, masked: str, read_only: bool, connect_timeout_s: float) -> Engine:
    connect_args: dict[str, Any] = {
        "connect_timeout": max(1, int(round(connect_timeout_s))),
        "application_name": "voltloop",
    }
    if read_only:
        connect_args["options"] = "-c default_transaction_read_only=on"
    try:
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except ImportError as error:
        raise DatabaseUnavailableError(
            f"cannot open database {masked}: driver {url.drivername!r} is not installed "
            f"({error}); install psycopg 3 with `pip install 'voltloop[postgres]'`"
        ) from None
    except exc.NoSuchModuleError as error:
        raise BadDatabaseUrlError(f"cannot open database {masked}: {error}") from None

    if read_only:

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            finally:
                cursor.close()
            dbapi_connection.commit()

    return engine


#: sqlite3 authorizer action codes a read-only connection may perform.
_READ_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
        sqlite3.SQLITE_RECURSIVE,
    }
)
#: PRAGMAs that only report, whatever their argument (a table or index name).
_REPORTING_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "database_list",
        "collation_list",
        "function_list",
        "pragma_list",
        "compile_options",
    }
)
#: PRAGMAs that set a value when given an argument; allowed only to read it.
_SETTING_PRAGMAS = frozenset(
    {
        "user_version",
        "schema_version",
        "page_count",
        "page_size",
        "freelist_count",
        "journal_mode",
        "encoding",
        "busy_timeout",
        "query_only",
        "foreign_keys",
    }
)


def _read_only_authorizer(
    action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None
) -> int:
    """Deny anything a read-only SQL session should not do (writes, ATTACH, setting PRAGMAs)."""
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA:
        pragma = (arg1 or "").lower()
        if pragma in _REPORTING_PRAGMAS or (pragma in _SETTING_PRAGMAS and arg2 is None):
            return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A Session in one write transaction, committed on success, rolled back on error.

    On SQLite the transaction begins with ``BEGIN IMMEDIATE`` (takes the write lock
    up front, waiting up to the busy timeout), so a read-modify-write never fails
    half-way on a stale snapshot.
    """
    bind = engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
    with Session(bind, expire_on_commit=False) as session, session.begin():
        yield session


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A Session for reading; its transaction is rolled back at the end."""
    with Session(engine) as session:
        try:
            yield session
        finally:
            session.rollback()
