"""Running campaigns: ``dry-run``, ``run``, ``resume``, ``report``, ``confirm``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voltloop.orchestrator.cli.common import DbOption, not_available


def register(app: typer.Typer) -> None:
    app.command("dry-run")(dry_run)
    app.command("run")(run)
    app.command("resume")(resume)
    app.command("report")(report)
    app.command("confirm")(confirm)


def dry_run(
    config: Annotated[Path | None, typer.Argument(help="Campaign TOML (default: built-in)")] = None,
    db: DbOption = None,
    faults: Annotated[float, typer.Option(help="Instrument fault rate per command")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
) -> None:
    """Run a campaign against the simulated lab."""
    not_available("dry-run")


def run(config: Annotated[Path, typer.Argument()], db: DbOption = None) -> None:
    """Run a campaign against real instruments."""
    not_available("run")


def resume(campaign: Annotated[str, typer.Argument()], db: DbOption = None) -> None:
    """Continue a campaign from the database after a stop or crash."""
    not_available("resume")


def report(
    campaign: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option("--out")] = Path("report.html"),
    db: DbOption = None,
) -> None:
    """Write a self-contained HTML report of a campaign."""
    not_available("report")


def confirm(
    campaign: Annotated[str, typer.Argument()],
    cells: Annotated[Path | None, typer.Option("--cells")] = None,
    db: DbOption = None,
) -> None:
    """Confirm that the operator loaded this round's cells."""
    not_available("confirm")
