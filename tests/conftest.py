"""Shared fixtures: throw-away campaign databases on SQLite and PostgreSQL.

``db_url`` gives each test an empty database at the migration head, once on
SQLite and once on PostgreSQL (marked ``postgres``): a copied SQLite file, or on
PostgreSQL one shared database per session whose rows are deleted before each
test. ``fresh_db_url`` is a brand-new database (for tests that change the
schema), ``empty_db_url`` one without any schema. PostgreSQL comes from
``$VOLTLOOP_TEST_PG_URL`` (a server on which the user may create databases) or
else a private server started once per session from the installed binaries
(voltloop.db.testing). Without PostgreSQL
the ``postgres`` tests skip, except when ``$CI`` is set: then they fail.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL_ENV = "VOLTLOOP_TEST_PG_URL"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
_counter = itertools.count()


def _worker_tag() -> str:
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}".replace("-", "_")


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required when CI is set: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """URL of a PostgreSQL database on a server where the tests may create databases."""
    configured = os.environ.get(PG_URL_ENV)
    if configured:
        yield configured
        return
    from voltloop.db.testing import PostgresServer, PostgresUnavailableError

    try:
        server = PostgresServer().start()
    except PostgresUnavailableError as error:
        _postgres_unavailable(str(error))
    try:
        yield server.admin_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_admin_url: str) -> Iterator[str]:
    """Name of a migrated database that fresh test databases are copied from."""
    from voltloop.db.migrate import init_database
    from voltloop.db.testing import create_database, drop_database

    name = f"voltloop_tpl_{_worker_tag()}"
    init_database(create_database(postgres_admin_url, name))
    yield name
    drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that fresh test databases are copied from."""
    from voltloop.db.migrate import init_database

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    init_database(f"sqlite:///{path}")
    return path


def _fresh_postgres(request: pytest.FixtureRequest, migrated: bool) -> Iterator[str]:
    from voltloop.db.testing import create_database, drop_database

    admin = request.getfixturevalue("postgres_admin_url")
    template = request.getfixturevalue("postgres_template") if migrated else None
    name = f"voltloop_test_{_worker_tag()}_{next(_counter)}"
    yield create_database(admin, name, template=template)
    drop_database(admin, name)


@pytest.fixture(params=BACKENDS)
def db_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def postgres_shared_url(postgres_admin_url: str, postgres_template: str) -> Iterator[str]:
    """One migrated database per session, emptied before each test that uses it."""
    from voltloop.db.testing import create_database, drop_database

    name = f"voltloop_shared_{_worker_tag()}"
    yield create_database(postgres_admin_url, name, template=postgres_template)
    drop_database(postgres_admin_url, name)


def _delete_all_rows(url: str) -> None:
    from sqlalchemy import create_engine

    from voltloop.db.models import Base

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture
def db_url(request: pytest.FixtureRequest, db_backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty database at the migration head, on each backend (do not alter its schema)."""
    if db_backend == "sqlite":
        path = tmp_path / "voltloop.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_shared_url")
        _delete_all_rows(url)
        yield url


@pytest.fixture
def fresh_db_url(request: pytest.FixtureRequest, db_backend: str, tmp_path: Path) -> Iterator[str]:
    """A brand-new database at the migration head, on each backend (may change the schema)."""
    if db_backend == "sqlite":
        path = tmp_path / "voltloop.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        yield from _fresh_postgres(request, migrated=True)


@pytest.fixture
def empty_db_url(request: pytest.FixtureRequest, db_backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database without any schema, on each backend."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        yield from _fresh_postgres(request, migrated=False)


@pytest.fixture
def sqlite_db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh SQLite database at the migration head (SQLite-only tests)."""
    path = tmp_path / "voltloop.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"
