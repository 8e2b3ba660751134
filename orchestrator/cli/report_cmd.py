"""``voltloop report CAMPAIGN --out report.html``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voltloop.orchestrator.cli.common import DbOption, not_available


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    campaign: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option("--out")] = Path("report.html"),
    db: DbOption = None,
) -> None:
    """Write a self-contained HTML report of a campaign."""
    not_available("report")
