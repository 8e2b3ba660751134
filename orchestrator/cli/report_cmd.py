"""``voltloop report CAMPAIGN --out report.html``: the campaign report and loading sheets.

* ``voltloop report CAMPAIGN [--out FILE.html]`` writes one self-contained page.
* ``--csv DIR`` also writes every round's loading sheet as
  ``DIR/loading-sheet-round-N.csv``.
* ``--loading-sheet ROUND [--out FILE.csv]`` writes only that round's loading sheet
  (cell id ↔ candidate ↔ channel), as the operator step of a real run needs it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from voltloop.orchestrator.cli.common import (
    DbOption,
    JsonOption,
    console,
    print_json,
    resolve_db_url,
)


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    campaign: Annotated[str, typer.Argument(help="Campaign name (see `voltloop status`).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output file. Default: report.html, or loading-sheet-round-N.csv with "
            "--loading-sheet.",
            show_default=False,
        ),
    ] = None,
    loading_sheet: Annotated[
        int | None,
        typer.Option(
            "--loading-sheet",
            metavar="ROUND",
            help="Write only this round's loading sheet as CSV (no HTML).",
        ),
    ] = None,
    csv_dir: Annotated[
        Path | None,
        typer.Option("--csv", metavar="DIR", help="Also write every round's loading sheet here."),
    ] = None,
    events: Annotated[
        int, typer.Option("--events", min=0, max=100_000, help="Newest events listed.")
    ] = 200,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Write a self-contained HTML report of a campaign (plots and the tables behind them)."""
    from voltloop.orchestrator.report import (
        check_csv_folder,
        check_output,
        load_report,
        write_loading_sheet,
        write_loading_sheets,
        write_report,
    )

    started = time.perf_counter()
    if loading_sheet is not None:
        target = out or Path(f"loading-sheet-round-{loading_sheet}.csv")
    else:
        target = out or Path("report.html")
    check_output(target)  # bad paths are refused before the database is read
    if csv_dir is not None:
        check_csv_folder(csv_dir)
    data = load_report(resolve_db_url(db), campaign, event_limit=events)
    if loading_sheet is not None:
        rows = write_loading_sheet(data, loading_sheet, target)
        if json_out:
            print_json({"campaign": data.name, "round": loading_sheet, "out": str(target),
                        "rows": rows})  # fmt: skip
        else:
            console.print(f"loading sheet of round {loading_sheet}: {rows} cells → {target}")
        return
    sheets = write_loading_sheets(data, csv_dir) if csv_dir is not None else []
    size = write_report(data, target)
    took = time.perf_counter() - started
    if json_out:
        print_json(
            {
                "campaign": data.name,
                "out": str(target),
                "bytes": size,
                "seconds": round(took, 3),
                "experiments": data.experiments_by_status(),
                "loading_sheets": [str(p) for p in sheets],
            }
        )
        return
    console.print(
        f"report of {data.name}: {len(data.experiments)} experiments, {len(data.rounds)} rounds "
        f"→ {target} ({size / 1024:.0f} KiB, {took:.1f} s)",
        highlight=False,
    )
    for path in sheets:
        console.print(f"loading sheet → {path}", highlight=False)
