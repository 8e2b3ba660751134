"""``voltloop status [CAMPAIGN]``: rounds, channel use, experiments by status."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from voltloop.orchestrator.cli.common import (
    DbOption,
    JsonOption,
    print_json,
    resolve_db_url,
    stdout,
)


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(
    campaign: Annotated[str | None, typer.Argument(help="One campaign in detail.")] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show campaigns, rounds and experiments by status, and channels in use."""
    from voltloop.db.engine import read_session
    from voltloop.db.migrate import open_database
    from voltloop.db.status import campaign_overview

    engine = open_database(resolve_db_url(db), read_only=True)
    try:
        with read_session(engine) as session:
            overview = campaign_overview(session, campaign)
    finally:
        engine.dispose()
    if json_out:
        print_json(overview)
        return
    if campaign is None:
        _print_campaigns(overview)
    else:
        _print_campaign(overview)
    channels = overview["channels"]
    stdout.print(
        f"channels: {channels['in_use']} in use, {channels['leased']} leased, "
        f"{channels['total']} known",
        highlight=False,
    )


def _by_status(counts: dict[str, int]) -> str:
    shown = [f"{status} {n}" for status, n in counts.items() if n]
    return ", ".join(shown) or "none"


def _print_campaigns(overview: dict[str, Any]) -> None:
    if not overview["campaigns"]:
        stdout.print("no campaigns yet (start one with `voltloop run` or `voltloop dry-run`)")
        return
    table = Table(
        "campaign", "kind", "status", "rounds", "experiments", "channels", title="campaigns"
    )
    for row in overview["campaigns"]:
        table.add_row(
            row["name"],
            row["kind"],
            row["status"],
            str(row["rounds"]),
            _by_status(row["experiments"]),
            str(row["channels_in_use"]),
        )
    stdout.print(table)


def _minute(iso: str | None) -> str:
    """An ISO timestamp as month-day hour:minute, as the table shows it (--json has it
    whole)."""
    return iso[5:16].replace("T", " ") if iso else ""


def _print_campaign(overview: dict[str, Any]) -> None:
    row = overview["campaign"]
    stdout.print(
        f"[bold]{row['name']}[/] ({row['kind']}): {row['status']}, {row['rounds']} rounds, "
        f"{row['channels_in_use']} channels in use"
    )
    table = Table(title="rounds")
    table.add_column("round", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("experiments")
    table.add_column("started", no_wrap=True)
    table.add_column("ended", no_wrap=True)
    for round_ in overview["rounds"]:
        table.add_row(
            str(round_["round"]) + (" (confirmation)" if round_["kind"] == "confirmation" else ""),
            round_["status"],
            _by_status(round_["experiments"]),
            _minute(round_["started_at"]),
            _minute(round_["ended_at"]),
        )
    stdout.print(table)
    stdout.print(f"experiments: {_by_status(row['experiments'])}", highlight=False)
