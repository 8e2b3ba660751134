"""Database URL rules: driver mapping, password masking, clear errors."""

from __future__ import annotations

import pytest

from voltloop.db.engine import mask_url, parse_url, sqlite_path
from voltloop.db.errors import BadDatabaseUrlError


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:p@h/db", "postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"],
)
def test_postgresql_urls_use_psycopg3(url: str) -> None:
    assert parse_url(url).drivername == "postgresql+psycopg"


def test_explicit_other_driver_is_kept() -> None:
    assert parse_url("postgresql+psycopg2://h/db").drivername == "postgresql+psycopg2"


def test_sqlite_url_is_kept_and_has_a_path() -> None:
    url = parse_url("sqlite:///runs/voltloop.db")
    assert url.drivername == "sqlite"
    assert str(sqlite_path(url)) == "runs/voltloop.db"
    assert sqlite_path(parse_url("sqlite://")) is None


def test_mask_hides_the_password() -> None:
    masked = mask_url("postgresql://alice:s3cret@db.lab:5432/voltloop")
    assert "s3cret" not in masked
    assert "alice:***@db.lab:5432/voltloop" in masked


def test_mask_of_unparseable_text_still_hides_the_password() -> None:
    assert "s3cret" not in mask_url("postgresql://alice:s3cret@[::bad")


@pytest.mark.parametrize("url", ["not a url", "://nothing", ""])
def test_unparseable_url_is_bad_input(url: str) -> None:
    with pytest.raises(BadDatabaseUrlError) as error:
        parse_url(url)
    assert error.value.exit_code == 2


def test_unsupported_backend_names_the_masked_url() -> None:
    with pytest.raises(BadDatabaseUrlError, match=r"mysql://root:\*\*\*@h/db") as error:
        parse_url("mysql://root:pw@h/db")
    assert "pw@" not in str(error.value)
