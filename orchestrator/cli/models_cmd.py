"""``voltloop models list|show|evaluate``."""

from __future__ import annotations

import typer

from voltloop.orchestrator.cli.common import not_available

models_app = typer.Typer(help="Model versions in the registry.")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.command("list")
def list_models() -> None:
    """List model versions."""
    not_available("models list")
