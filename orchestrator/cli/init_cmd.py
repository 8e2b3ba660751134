"""``voltloop init DIR --kind protocol|materials``: write example campaign files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voltloop.orchestrator.cli.common import not_available


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the campaign in.")],
    kind: Annotated[str, typer.Option("--kind", help="protocol or materials")] = "protocol",
) -> None:
    """Write a commented example campaign (TOML) into DIR."""
    not_available("init")
