"""``voltloop sim serve``: start a simulated cycler and potentiostat."""

from __future__ import annotations

import typer

from voltloop.orchestrator.cli.common import not_available

sim_app = typer.Typer(help="The simulated lab.")


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")


@sim_app.command("serve")
def serve() -> None:
    """Serve a simulated cycler and potentiostat and print their URLs."""
    not_available("sim serve")
