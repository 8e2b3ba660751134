"""Read-only SQL for ``voltloop db sql``: one statement, and nothing can write.

Three locks, any one of which suffices on its own: the statement must start
with a reading keyword; the connection is read-only (SQLite ``mode=ro`` +
``query_only`` + an authorizer; PostgreSQL ``default_transaction_read_only``
and a ``READ ONLY`` session); and it runs in a transaction that is rolled back.
Multiple statements are refused (sqlite3 runs one; on PostgreSQL the statement
goes through a server-side prepare, which accepts exactly one).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import re
import sqlite3
import time
import uuid
from typing import Any

from sqlalchemy.engine import URL

from .engine import make_engine
from .errors import ReadOnlyViolationError, SqlStatementError

#: First keywords of statements that only read.
READING_KEYWORDS = ("select", "with", "explain", "values", "pragma", "show", "table")
_LEADING_NOISE = re.compile(r"^(\s+|--[^\n]*(\n|$)|/\*.*?\*/)+", re.S)
#: PostgreSQL SQLSTATE for "cannot execute ... in a read-only transaction".
_PG_READ_ONLY = "25006"


@dataclasses.dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool  # more rows existed than max_rows


def first_keyword(statement: str) -> str:
    """The statement's first word, lower-case, after comments and whitespace."""
    body = _LEADING_NOISE.sub("", statement)
    match = re.match(r"[A-Za-z]+", body)
    return match.group(0).lower() if match else ""


def run_read_only_sql(
    url: str | URL, statement: str, *, max_rows: int = 10_000, timeout_s: float = 60.0
) -> SqlResult:
    """Run one reading statement and return up to ``max_rows`` rows.

    Raises :class:`ReadOnlyViolationError` (exit code 2) for anything that would
    write, :class:`SqlStatementError` for statements the database rejects.
    """
    keyword = first_keyword(statement)
    if keyword not in READING_KEYWORDS:
        shown = keyword.upper() or "an empty statement"
        raise ReadOnlyViolationError(
            f"refused: `db sql` is read-only and runs one reading statement "
            f"({', '.join(k.upper() for k in READING_KEYWORDS)}); got {shown}"
        )
    engine = make_engine(url, read_only=True, must_exist=True)
    try:
        raw = engine.raw_connection()
        try:
            driver = raw.driver_connection
            if engine.dialect.name == "sqlite":
                return _run_sqlite(driver, statement, max_rows, timeout_s)
            return _run_postgresql(driver, statement, max_rows, timeout_s)
        finally:
            raw.close()
    finally:
        engine.dispose()


def _run_sqlite(connection: Any, statement: str, max_rows: int, timeout_s: float) -> SqlResult:
    deadline = time.monotonic() + timeout_s
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    cursor = connection.cursor()
    try:
        cursor.execute("BEGIN")
        try:
            cursor.execute(statement)
            return _collect(cursor, max_rows)
        finally:
            connection.rollback()
    except sqlite3.Error as error:
        message = str(error)
        if "interrupted" in message:
            raise SqlStatementError(f"statement stopped after the {timeout_s:g} s limit") from None
        if any(
            text in message
            for text in ("not authorized", "readonly database", "query_only", "prohibited")
        ):
            raise ReadOnlyViolationError(
                f"refused: `db sql` is read-only and the statement tried to write ({message})"
            ) from None
        raise SqlStatementError(f"the database rejected the statement: {message}") from None
    finally:
        connection.set_progress_handler(None, 0)
        cursor.close()


def _run_postgresql(connection: Any, statement: str, max_rows: int, timeout_s: float) -> SqlResult:
    import psycopg

    connection.rollback()
    cursor = connection.cursor()
    try:
        cursor.execute("SET TRANSACTION READ ONLY")
        cursor.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
        cursor.execute(statement, prepare=True)
        return _collect(cursor, max_rows)
    except psycopg.Error as error:
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if getattr(error, "sqlstate", None) == _PG_READ_ONLY:
            raise ReadOnlyViolationError(
                f"refused: `db sql` is read-only and the statement tried to write ({message})"
            ) from None
        if "multiple commands" in message:
            raise SqlStatementError("`db sql` runs exactly one statement") from None
        raise SqlStatementError(f"the database rejected the statement: {message}") from None
    finally:
        connection.rollback()
        cursor.close()


def _collect(cursor: Any, max_rows: int) -> SqlResult:
    if cursor.description is None:
        return SqlResult([], [], False)
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchmany(max_rows + 1)
    truncated = len(rows) > max_rows
    return SqlResult(columns, [[_plain(v) for v in row] for row in rows[:max_rows]], truncated)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
