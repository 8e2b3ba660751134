"""User-facing database errors.

Each carries an integer ``exit_code`` (2 = bad input, 1 = anything else); the
CLI prints the message without a traceback. No URL in a message ever shows a
password (:func:`voltloop.db.engine.mask_url`).
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class of the errors the database layer reports to the user."""

    exit_code = 1


class BadDatabaseUrlError(DatabaseError):
    """A URL that cannot be parsed or names an unsupported backend."""

    exit_code = 2


class DatabaseUnavailableError(DatabaseError):
    """The server is unreachable, the driver is missing or the file cannot be opened."""


class DatabaseNotInitialisedError(DatabaseError):
    """The database has no schema yet: run ``voltloop db init``."""


class MigrationMismatchError(DatabaseError):
    """The database's Alembic revision differs from the code's head."""


class AlreadyInitialisedError(DatabaseError):
    """``db init`` on a database that already has a schema."""


class UnknownCampaignError(DatabaseError):
    """A campaign name that is not in the database."""

    exit_code = 2


class UnknownExperimentError(DatabaseError):
    """An experiment UUID that is not in the database."""

    exit_code = 2


class ReadOnlyViolationError(DatabaseError):
    """A statement given to the read-only SQL runner that would write."""

    exit_code = 2


class SqlStatementError(DatabaseError):
    """A read-only SQL statement the database rejected (syntax, unknown table...)."""

    exit_code = 2


class InvalidRecordError(DatabaseError, ValueError):
    """Data handed to the ingest API that does not fit the schema."""

    exit_code = 2


class BlobFormatError(DatabaseError, ValueError):
    """Bytes that are not a valid voltloop array blob."""


class LeaseHeldError(DatabaseError):
    """A lease that another holder owns and has not let expire."""


class LeaseLostError(DatabaseError):
    """A heartbeat for a lease the holder no longer owns (released or taken over)."""
