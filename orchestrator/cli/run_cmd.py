"""Campaigns on real instruments: ``run`` and ``confirm`` (the operator's answer).

* ``voltloop run CONFIG`` checks every instrument of the campaign (identity,
  self-test, limits) and refuses to start on a mismatch; then runs the loop, issuing
  each round's loading sheet and waiting for the operator. Protocol and materials
  campaigns (a materials campaign measuring specific energy needs
  ``[cell] cathode_mass_g``).
* ``voltloop confirm CAMPAIGN [--cells FILE]`` records that the waiting cells are
  loaded, or per cell ``loaded`` / ``not_built`` / ``damaged`` from a CSV file.

See docs/real-runs.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from voltloop.orchestrator.cli.common import (
    DbOption,
    JsonOption,
    console,
    print_json,
    resolve_db_url,
    stdout,
)

PrefectOption = Annotated[
    bool, typer.Option("--prefect/--no-prefect", help="Run as Prefect flows.")
]
FormOption = Annotated[
    bool,
    typer.Option(
        "--form/--no-form",
        help="With --prefect: also offer each loading sheet as a Prefect input form.",
    ),
]
SheetsOption = Annotated[
    Path,
    typer.Option("--sheets", help="Folder for the loading-sheet CSV files.", file_okay=False),
]
ReminderOption = Annotated[
    float,
    typer.Option(
        "--reminder-minutes", min=0.01, max=10_000.0, help="Remind every N minutes while waiting."
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--loading-timeout-hours",
        min=0.0001,
        max=10_000.0,
        help="Cells still unanswered this long after their sheet count as not built.",
    ),
]
EisSwitchOption = Annotated[
    str | None,
    typer.Option(
        "--eis-switch",
        help="What routes the potentiostat to a channel before EIS: loader://HOST:PORT "
        "(the simulated lab's control port). Default: wired by hand.",
    ),
]
PollOption = Annotated[
    float, typer.Option("--poll-interval", min=0.01, max=600.0, help="Seconds between polls.")
]


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("confirm")(confirm)


def _announce(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def _on_step(result: Any) -> None:
    from voltloop.orchestrator.context import StepKind
    from voltloop.orchestrator.real_run import step_is_idle

    if result.kind == StepKind.POLL or step_is_idle(result):
        return
    _announce(f"{result.kind.value}: {result.message}")


def _options(
    sheets: Path, reminder: float, timeout: float, prefect: bool, form: bool, poll: float
) -> dict[str, Any]:
    from voltloop.orchestrator.operator_desk import OperatorSettings

    return {
        "operator": OperatorSettings(
            reminder_every_s=reminder * 60.0, timeout_s=timeout * 3600.0, sheet_dir=sheets
        ),
        "announce": _announce,
        "on_step": _on_step,
        "use_prefect": prefect,
        "prefect_input": form,
        "poll_interval_s": poll,
    }


def run(
    config: Annotated[Path, typer.Argument(help="Campaign TOML with real instrument URLs.")],
    db: DbOption = None,
    prefect: PrefectOption = True,
    form: FormOption = True,
    sheets: SheetsOption = Path("."),
    reminder_minutes: ReminderOption = 15.0,
    loading_timeout_hours: TimeoutOption = 24.0,
    eis_switch: EisSwitchOption = None,
    poll_interval: PollOption = 1.0,
    history_cells: Annotated[
        int | None,
        typer.Option(
            min=6, max=2000, help="Simulated cells to pretrain the lifetime model on (cached)."
        ),
    ] = None,
    early_prediction: Annotated[
        bool,
        typer.Option(
            "--early-prediction/--no-early-prediction",
            help="Predict each cell's life at the early-prediction cycle with the model "
            "pretrained on simulated cells; without it cells just stop there. Protocol "
            "campaigns only: materials campaigns measure at the test's last cycle.",
        ),
    ] = True,
    json_out: JsonOption = False,
) -> None:
    """Run a campaign against real instruments (resumes it if it exists)."""
    from voltloop.orchestrator.real_run import load_run_spec, run_real_campaign

    spec = load_run_spec(config)
    url = resolve_db_url(db or spec.database_url)
    stored = {
        "sheets": str(sheets.resolve()),
        "reminder_minutes": reminder_minutes,
        "loading_timeout_hours": loading_timeout_hours,
        "form": form,
        "eis_switch": eis_switch,
        "poll_interval_s": poll_interval,
        "history_cells": history_cells,
        "early_prediction": early_prediction,
    }
    summary = run_real_campaign(
        spec,
        url,
        eis_switch=eis_switch,
        history_cells=history_cells,
        early_prediction=early_prediction,
        run_options=stored,
        **_options(sheets, reminder_minutes, loading_timeout_hours, prefect, form, poll_interval),
    )
    _report(summary, json_out)


def resume_real(campaign: str, url: str, *, prefect: bool = True, json_out: bool = False) -> None:
    """``voltloop resume`` of a campaign on real instruments: the stored spec, with the
    options ``voltloop run`` last stored (sheet folder, reminders, timeout, EIS switch,
    polling, early prediction); defaults where none were stored. Loading sheets already
    issued keep their deadlines."""
    from voltloop.orchestrator.dry_run import stored_spec
    from voltloop.orchestrator.operator_desk import (
        DEFAULT_LOADING_TIMEOUT_S,
        DEFAULT_REMINDER_EVERY_S,
    )
    from voltloop.orchestrator.real_run import resume_real_campaign, stored_run_options

    spec = stored_spec(url, campaign)
    stored = stored_run_options(url, campaign)
    options = _options(
        Path(stored.get("sheets", ".")),
        float(stored.get("reminder_minutes", DEFAULT_REMINDER_EVERY_S / 60.0)),
        float(stored.get("loading_timeout_hours", DEFAULT_LOADING_TIMEOUT_S / 3600.0)),
        prefect,
        bool(stored.get("form", True)),
        float(stored.get("poll_interval_s", 1.0)),
    )
    summary = resume_real_campaign(
        spec,
        url,
        eis_switch=stored.get("eis_switch"),
        history_cells=stored.get("history_cells"),
        early_prediction=bool(stored.get("early_prediction", True)),
        **options,
    )
    _report(summary, json_out)


def _report(summary: Any, json_out: bool) -> None:
    if json_out:
        data = summary.as_dict()
        for name in ("true_life_of_recommendation", "true_value_of_recommendation"):
            data.pop(name, None)  # simulation only
        print_json(data)
        return
    from rich.table import Table

    table = Table(title=f"campaign {summary.campaign}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    rec = summary.recommendation
    if summary.kind == "materials":
        from voltloop.orchestrator.cli.campaign_cmd import materials_rows

        materials_rows(table, summary)  # no true value: that row is simulation only
    elif rec:
        params = ", ".join(f"{k}={v:g}" for k, v in rec["parameters"].items())
        table.add_row("recommended protocol", params)
        table.add_row("its observed/predicted life", f"{rec['objective']:.0f} cycles")
    else:
        table.add_row("recommended protocol", "none (no candidate was observed)")
    table.add_row(
        "experiments", ", ".join(f"{k} {v}" for k, v in sorted(summary.experiments.items()))
    )
    table.add_row("rounds completed", str(summary.rounds_completed))
    table.add_row("cycles stored", f"{summary.cycles_stored:,}")
    table.add_row("channel time", f"{summary.channel_hours:,.1f} h")
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    table.add_row("database", summary.database)
    for note in summary.notes:
        table.add_row("note", note)
    stdout.print(table)


def confirm(
    campaign: Annotated[str, typer.Argument(help="Campaign name (see `voltloop status`).")],
    cells: Annotated[
        Path | None,
        typer.Option(
            "--cells",
            help="CSV with cell_id,outcome rows (loaded, not_built, damaged; blank = still "
            "waiting), e.g. the exported loading sheet with its outcome column filled in. "
            "Without it: every waiting cell is loaded.",
        ),
    ] = None,
    round_index: Annotated[
        int | None,
        typer.Option("--round", min=0, help="Round whose sheet to answer (default: the latest)."),
    ] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Confirm that the operator loaded this round's cells (or which were not built)."""
    from voltloop.orchestrator.loading_confirmation import confirm_campaign

    result = confirm_campaign(resolve_db_url(db), campaign, cells, round_index)
    if json_out:
        print_json(result.as_dict())
        return
    counts: dict[str, int] = {}
    for outcome in result.stored.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    console.print(
        f"round {result.round_index} of {result.campaign}: recorded "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        + (f"; still waiting: {', '.join(result.waiting)}" if result.waiting else ""),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
