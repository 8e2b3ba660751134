"""What every command shares: the database URL rule, consoles, JSON output, errors."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

DEFAULT_DB_URL = "sqlite:///voltloop.db"
DB_ENV_VAR = "VOLTLOOP_DB"

#: Human output (tables, progress bars) goes to stderr so stdout stays clean for --json.
console = Console(stderr=True)
#: Machine output: one JSON object, or a table/CSV the user asked for.
stdout = Console(soft_wrap=True, highlight=False)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help=f"Database URL. Default: ${DB_ENV_VAR}, else {DEFAULT_DB_URL} "
        "in the working directory.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def resolve_db_url(option: str | None) -> str:
    """``--db`` if given, else ``$VOLTLOOP_DB``, else ``sqlite:///voltloop.db`` (design.md)."""
    if option:
        return option
    return os.environ.get(DB_ENV_VAR) or DEFAULT_DB_URL


def print_json(obj: Any) -> None:
    """Write ``obj`` as one JSON object on stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(obj, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error to stderr and exit with ``code``."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def not_available(command: str) -> NoReturn:
    """For commands that are announced in the design but not built yet."""
    console.print(
        f"[yellow]`voltloop {command}` is not available yet in this version of voltloop.[/]",
        highlight=False,
    )
    raise typer.Exit(3)
