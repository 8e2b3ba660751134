"""``voltloop protocol show|export``."""

from __future__ import annotations

import typer

from voltloop.orchestrator.cli.common import not_available

protocol_app = typer.Typer(help="Compile and export cycling protocols.")


def register(app: typer.Typer) -> None:
    app.add_typer(protocol_app, name="protocol")


@protocol_app.command("show")
def show() -> None:
    """Show the protocol a campaign candidate compiles to."""
    not_available("protocol show")
