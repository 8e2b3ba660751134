"""``voltloop status [CAMPAIGN]``: rounds, channel use, experiments by status."""

from __future__ import annotations

from typing import Annotated

import typer

from voltloop.orchestrator.cli.common import DbOption, JsonOption, not_available


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(
    campaign: Annotated[str | None, typer.Argument()] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show campaigns, rounds and experiments by status."""
    not_available("status")
