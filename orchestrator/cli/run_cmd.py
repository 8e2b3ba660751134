"""Campaigns on real instruments: ``run`` and ``confirm`` (the operator's answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voltloop.orchestrator.cli.common import DbOption, not_available


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("confirm")(confirm)


def run(config: Annotated[Path, typer.Argument()], db: DbOption = None) -> None:
    """Run a campaign against real instruments."""
    not_available("run")


def confirm(
    campaign: Annotated[str, typer.Argument()],
    cells: Annotated[Path | None, typer.Option("--cells")] = None,
    db: DbOption = None,
) -> None:
    """Confirm that the operator loaded this round's cells."""
    not_available("confirm")
