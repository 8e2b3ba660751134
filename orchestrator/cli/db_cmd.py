"""``voltloop db init|upgrade|query|sql|export``: the campaign database from the shell.

Every sub-command takes ``--db URL`` (default: ``$VOLTLOOP_DB``, else
``sqlite:///voltloop.db``). SQLAlchemy and the database modules are imported
inside the commands so ``voltloop --help`` stays fast.
"""

from __future__ import annotations

import csv
import enum
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from voltloop.orchestrator.cli.common import (
    DbOption,
    JsonOption,
    console,
    print_json,
    resolve_db_url,
    stdout,
)

db_app = typer.Typer(
    help="Create, migrate, query and export the campaign database.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


class QueryTarget(enum.StrEnum):
    CAMPAIGNS = "campaigns"
    ROUNDS = "rounds"
    EXPERIMENTS = "experiments"
    CYCLES = "cycles"
    SPECTRA = "spectra"
    MODELS = "models"


class ExportFormatOption(enum.StrEnum):
    PARQUET = "parquet"
    CSV = "csv"


FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="table (default), csv or json.")
]


@db_app.command("init")
def db_init(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Create the schema on an empty database (Alembic upgrade to head)."""
    from voltloop.db.migrate import init_database

    result = init_database(resolve_db_url(db))
    if json_out:
        print_json({"database": result.url, "revision": result.after, "created": result.changed})
    elif result.changed:
        console.print(f"created the voltloop schema (revision {result.after}) in {result.url}")
    else:
        console.print(
            f"{result.url} is already initialised and up to date (revision {result.after}); "
            "nothing to do"
        )


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None, json_out: JsonOption = False) -> None:
    """Migrate an existing database to this version's schema."""
    from voltloop.db.migrate import upgrade_database

    result = upgrade_database(resolve_db_url(db))
    if json_out:
        print_json(
            {
                "database": result.url,
                "from": result.before,
                "to": result.after,
                "upgraded": result.changed,
            }
        )
    elif result.changed:
        console.print(f"upgraded {result.url} from {result.before} to {result.after}")
    else:
        console.print(f"{result.url} is already up to date (revision {result.after})")


@db_app.command("query")
def db_query(
    target: Annotated[QueryTarget, typer.Argument(help="What to list.")],
    campaign: Annotated[str | None, typer.Option("--campaign", help="Campaign name.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Status value to keep.")] = None,
    round_index: Annotated[int | None, typer.Option("--round", help="Round index.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Created at or after (ISO date/time, UTC).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Created before (ISO date/time, UTC).")
    ] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help="Experiment UUID.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.")] = 1000,
    output: FormatOption = OutputFormat.TABLE,
    db: DbOption = None,
) -> None:
    """List campaigns, rounds, experiments, cycles, spectra or models, with filters."""
    from voltloop.db.engine import read_session
    from voltloop.db.migrate import open_database
    from voltloop.db.queries import QueryFilters, parse_when, run_query

    filters = QueryFilters(
        campaign=campaign,
        status=status,
        round_index=round_index,
        since=parse_when(since) if since else None,
        until=parse_when(until) if until else None,
        experiment_id=experiment,
        limit=limit,
    )
    engine = open_database(resolve_db_url(db), read_only=True)
    try:
        with read_session(engine) as session:
            result = run_query(session, target.value, filters)
    finally:
        engine.dispose()
    if output == OutputFormat.JSON:
        print_json(
            {
                "query": target.value,
                "count": len(result.rows),
                "limit": limit,
                "columns": result.columns,
                "rows": result.rows,
            }
        )
        return
    rows = [[row[c] for c in result.columns] for row in result.rows]
    _emit(result.columns, rows, output, title=f"{target.value} ({len(rows)})")
    if len(rows) == limit:
        console.print(f"[dim]showing the first {limit} rows; raise --limit for more[/]")


@db_app.command("sql")
def db_sql(
    statement: Annotated[str, typer.Argument(help='One reading statement, e.g. "SELECT ...".')],
    output: FormatOption = OutputFormat.TABLE,
    max_rows: Annotated[
        int, typer.Option("--max-rows", help="Stop after this many rows.")
    ] = 10_000,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="Abort the statement after this many seconds.")
    ] = 60.0,
    db: DbOption = None,
) -> None:
    """Run one read-only SQL statement; anything that writes is refused (exit code 2)."""
    from voltloop.db.sql import run_read_only_sql

    result = run_read_only_sql(
        resolve_db_url(db), statement, max_rows=max_rows, timeout_s=timeout_s
    )
    if output == OutputFormat.JSON:
        print_json(
            {
                "columns": result.columns,
                "rows": result.rows,
                "count": len(result.rows),
                "truncated": result.truncated,
            }
        )
        return
    _emit(result.columns, result.rows, output, title=f"{len(result.rows)} rows")
    if result.truncated:
        console.print(f"[yellow]stopped after {max_rows} rows (--max-rows)[/]")


@db_app.command("export")
def db_export(
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to create (must be new or empty).")],
    output: Annotated[
        ExportFormatOption, typer.Option("--format", "-f", help="parquet (default) or csv.")
    ] = ExportFormatOption.PARQUET,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Write a campaign's tables and raw cycle series, one file per table."""
    from voltloop.db.export import export_campaign
    from voltloop.db.migrate import open_database

    engine = open_database(resolve_db_url(db), read_only=True)
    try:
        with console.status(f"exporting {campaign} ..."):
            result = export_campaign(engine, campaign, out, output.value)
    finally:
        engine.dispose()
    if json_out:
        print_json(
            {"directory": str(result.directory), "format": output.value, "rows": result.rows}
        )
        return
    table = Table("table", "rows", title=f"{campaign} -> {result.directory} ({output.value})")
    for name, count in result.rows.items():
        table.add_row(name, str(count))
    console.print(table)


def _emit(columns: list[str], rows: list[list[Any]], output: OutputFormat, title: str) -> None:
    if output == OutputFormat.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else _text(v) for v in row] for row in rows])
        sys.stdout.flush()
        return
    # human view: leave out columns empty in every row, show timestamps to the second
    keep = [i for i in range(len(columns)) if any(row[i] not in (None, "") for row in rows)]
    if not rows:
        keep = list(range(len(columns)))
    table = Table(title=title)
    for i in keep:
        table.add_column(columns[i], overflow="fold")
    for row in rows:
        table.add_row(*("" if row[i] is None else _short(_text(row[i])) for i in keep))
    stdout.print(table)


def _short(text: str) -> str:
    """``2026-05-01T08:00:00.123456+00:00`` -> ``2026-05-01 08:00:00``."""
    if len(text) >= 19 and text[4] == "-" and text[10] == "T" and text[13] == ":":
        return f"{text[:10]} {text[11:19]}"
    return text


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, sort_keys=True)
    return str(value)
