"""``voltloop bench NAME [--json]``: run a benchmark and print its figures."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from voltloop import benchmarks
from voltloop.orchestrator.cli.common import JsonOption, console, print_json, stdout


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    name: Annotated[
        str | None, typer.Argument(help="Benchmark to run (omit to list them).")
    ] = None,
    json_out: JsonOption = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="A smaller, faster run (for smoke tests).")
    ] = False,
) -> None:
    """Run benchmark NAME and print its figures (speed and accuracy targets live here)."""
    if name is None:
        listing = benchmarks.available()
        if json_out:
            print_json({"benchmarks": listing})
            return
        table = Table("benchmark", "what it measures", title="voltloop benchmarks")
        for bench_name, summary in listing.items():
            table.add_row(bench_name, summary)
        stdout.print(table)
        return
    module = benchmarks.load(name)
    figures = module.run(quick=quick)
    if json_out:
        print_json(figures)
        return
    table = Table("figure", "value", title=f"voltloop bench {name}")
    for key, value in _flatten(figures).items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    stdout.print(table)
    console.print("[dim]Use --json for machine-readable output.[/]")


def _flatten(obj: dict, prefix: str = "") -> dict:
    flat: dict = {}
    for key, value in obj.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat
