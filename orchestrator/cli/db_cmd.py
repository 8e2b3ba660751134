"""``voltloop db init|upgrade|query|sql|export``."""

from __future__ import annotations

import typer

from voltloop.orchestrator.cli.common import DbOption, not_available

db_app = typer.Typer(help="Create, migrate, query and export the campaign database.")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


@db_app.command("init")
def db_init(db: DbOption = None) -> None:
    """Create the schema (Alembic upgrade to head)."""
    not_available("db init")
