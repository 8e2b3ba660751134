"""``voltloop instruments check URL``."""

from __future__ import annotations

from typing import Annotated

import typer

from voltloop.orchestrator.cli.common import not_available

instruments_app = typer.Typer(help="Talk to instruments.")


def register(app: typer.Typer) -> None:
    app.add_typer(instruments_app, name="instruments")


@instruments_app.command("check")
def check(url: Annotated[str, typer.Argument(help="socket://host:port, a pty path or a port")]) -> None:
    """Identify an instrument, run its self-test and print its limits."""
    not_available("instruments check")
