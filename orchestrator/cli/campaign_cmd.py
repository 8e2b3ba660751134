"""Running campaigns on simulated instruments: ``dry-run`` and ``resume``."""

from __future__ import annotations

import enum
import time
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


def register(app: typer.Typer) -> None:
    app.command("dry-run")(dry_run)
    app.command("resume")(resume)


class ExampleKind(enum.StrEnum):
    PROTOCOL = "protocol"
    MATERIALS = "materials"


def dry_run(
    config: Annotated[
        Path | None,
        typer.Argument(help="Campaign TOML (default: the built-in example of --kind)."),
    ] = None,
    kind: Annotated[
        ExampleKind | None,
        typer.Option(
            help="Which built-in example runs without CONFIG: protocol (default; Attia "
            "ten-minute fast charge) or materials (substituted olivine/layered cathodes, "
            "GNN surrogate, fixed test protocol). An explicit CONFIG's own kind wins.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    faults: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Injected instrument faults per reply.")
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the campaign's).")] = None,
    prefect: Annotated[
        bool, typer.Option("--prefect/--no-prefect", help="Run as Prefect flows.")
    ] = True,
    history_cells: Annotated[
        int | None,
        typer.Option(
            min=6, max=2000, help="Simulated cells to pretrain the lifetime model on (cached)."
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Run a campaign against the simulated lab (resumes it if it exists)."""
    from voltloop.orchestrator.prefect_server import start_temporary_server

    # Prefect's temporary server boots on the other core while the campaign loads
    server = start_temporary_server() if prefect else None
    try:
        _dry_run(config, kind, db, faults, seed, prefect, history_cells, json_out, server)
    finally:
        if server is not None:
            server.stop()


def _dry_run(
    config: Path | None,
    kind: Any,
    db: str | None,
    faults: float,
    seed: int | None,
    prefect: bool,
    history_cells: int | None,
    json_out: bool,
    server: Any,
) -> None:
    from voltloop.campaigns.base import CampaignKind
    from voltloop.orchestrator.dry_run import load_dry_run_spec, run_dry_run

    spec = load_dry_run_spec(config, seed, CampaignKind(kind.value) if kind else None)
    if config is not None and kind is not None and spec.kind.value != kind.value:
        console.print(
            f"[yellow]{config} is a {spec.kind.value} campaign; --kind {kind.value} is ignored[/]"
        )
    url = resolve_db_url(db or spec.database_url)
    progress = _Progress(_rounds_planned(spec), spec.batch_size, quiet=json_out)
    with progress:
        summary = run_dry_run(
            spec,
            url,
            faults=faults,
            on_step=progress.update,
            use_prefect=prefect,
            history_cells=history_cells,
            on_history=progress.history,
            prefect_server=server,
        )
    if json_out:
        print_json(summary.as_dict())
        return
    _print_summary(summary)


class _Progress:
    """Rounds, experiments and cycles as the campaign goes (stderr, ~4 updates/s)."""

    def __init__(self, rounds: int, batch: int, *, quiet: bool):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.rounds = rounds
        self.closed = 0
        self.counts: dict[str, int] = {}
        self._last = 0.0
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} rounds"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
        )
        self.task = self.bar.add_task("campaign", total=rounds, detail="starting")

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def history(self, done: int, total: int) -> None:
        """Progress of simulating the pretraining history (first run only)."""
        self.bar.update(
            self.task, detail=f"simulating {total} cells to end of life for pretraining: {done}"
        )

    def _tally(self, counts) -> None:
        for key, value in counts.items():
            if key in ("started", "completed", "safety_stopped", "failed", "aborted"):
                self.counts[key] = self.counts.get(key, 0) + int(value)

    def update(self, result) -> None:
        from voltloop.orchestrator.context import StepKind

        if result.kind == StepKind.CLOSE_ROUND:
            self.closed += 1
        if result.kind in (StepKind.POLL, StepKind.DISPATCH, StepKind.WAIT):
            self._tally(result.counts)
        now = time.monotonic()
        if now - self._last < 0.25 and result.kind != StepKind.CLOSE_ROUND:
            return
        self._last = now
        detail = (
            f"{result.kind.value}: {result.message}  "
            f"[dim]started {self.counts.get('started', 0)}, "
            f"ended {sum(v for k, v in self.counts.items() if k != 'started')}[/]"
        )
        self.bar.update(self.task, completed=self.closed, detail=detail)


def _rounds_planned(spec) -> int:
    """Rounds the progress bar counts: the search rounds, and a confirmation round if
    the campaign has one."""
    return spec.rounds + (1 if getattr(spec, "confirmation", None) is not None else 0)


def _print_summary(summary) -> None:
    from rich.table import Table

    table = Table(title=f"dry run: {summary.campaign}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if summary.kind == "materials":
        materials_rows(table, summary)
    else:
        _protocol_rows(table, summary)
    table.add_row(
        "experiments", ", ".join(f"{k} {v}" for k, v in sorted(summary.experiments.items()))
    )
    confirmed = (summary.recommendation or {}).get("confirmed")
    table.add_row(
        "rounds completed",
        f"{summary.rounds_completed}" + (" (the last confirmed the best)" if confirmed else ""),
    )
    table.add_row("cycles stored", f"{summary.cycles_stored:,}")
    table.add_row("simulated channel time", f"{summary.channel_hours:,.0f} h")
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    injected = {
        name: sum(kinds.values()) for name, kinds in summary.faults_injected.items() if kinds
    }
    if injected:
        detail = ", ".join(f"{n} on the {name}" for name, n in injected.items())
        table.add_row("faults injected", detail)
    table.add_row("database", summary.database)
    for note in summary.notes:
        table.add_row("note", note)
    stdout.print(table)


def _protocol_rows(table, summary) -> None:
    rec = summary.recommendation
    if not rec:
        table.add_row("recommended protocol", "none (no candidate was observed)")
        return
    params = ", ".join(f"{k}={v:g}" for k, v in rec["parameters"].items())
    table.add_row("recommended protocol", params)
    confirmed = rec.get("confirmed")
    if confirmed:
        lives = ", ".join(
            [f"{life}" for life in rec["measured_lives"]]
            + [f"≥ {ran}" for ran in rec.get("censored_lives") or []]
        )
        table.add_row("its measured life", f"{rec['objective']:.0f} cycles (cells: {lives})")
        if rec.get("predicted_mean") is not None:
            table.add_row("its posterior-mean life", f"{rec['predicted_mean']:.0f} cycles")
        ranked = sorted(
            (c for c in confirmed if c["mean_life"] is not None),
            key=lambda c: c["mean_life"],
            reverse=True,
        )
        table.add_row(
            f"confirmed ({len(confirmed)} protocols)",
            "; ".join(
                "-".join(f"{v:g}" for v in c["parameters"].values()) + f": {c['mean_life']:.0f}"
                for c in ranked
            ),
        )
    else:
        table.add_row("its observed/predicted life", f"{rec['objective']:.0f} cycles")
    if summary.true_life_of_recommendation is not None:
        table.add_row(
            "its true life (simulation)", f"{summary.true_life_of_recommendation:.0f} cycles"
        )


def materials_rows(table, summary) -> None:
    """The recommended material and its outcomes, for dry-run and real-run summaries."""
    rec = summary.recommendation
    if not rec:
        table.add_row("recommended material", "none (no material was measured)")
        return
    metric = rec["metric"].replace("_", " ")
    table.add_row("recommended material", f"{rec['label']} ({rec['formula']})")
    if not rec.get("meets_limits", True):
        table.add_row("", "[yellow]no tested material met every limit; best measured shown[/]")
    table.add_row(f"its measured {metric}", f"{rec['objective']:.4g}")
    if rec.get("predicted_mean") is not None:
        std = rec.get("predicted_std")
        spread = f" ± {std:.3g}" if std is not None else ""
        table.add_row(f"its predicted {metric}", f"{rec['predicted_mean']:.4g}{spread}")
    else:
        table.add_row(f"its predicted {metric}", "none (proposed by the space-filling first round)")
    if summary.true_value_of_recommendation is not None:
        table.add_row(
            f"its true {metric} (simulation)", f"{summary.true_value_of_recommendation:.4g}"
        )
    others = {k: v for k, v in rec.get("outcomes", {}).items() if k != rec["metric"]}
    if others:
        table.add_row("its other outcomes", ", ".join(f"{k} {v:.4g}" for k, v in others.items()))


def resume(
    campaign: Annotated[str, typer.Argument(help="Name of a campaign in the database.")],
    db: DbOption = None,
    prefect: Annotated[
        bool, typer.Option("--prefect/--no-prefect", help="Run as Prefect flows.")
    ] = True,
    json_out: JsonOption = False,
) -> None:
    """Continue a campaign from the database after a stop or crash.

    In-flight experiments are reconciled with the instruments, nothing is dispatched
    twice and no cycle is stored twice. Campaigns on simulated instruments (sim://)
    continue as dry runs; campaigns on real instruments are checked against their
    instruments again and continue as ``voltloop run`` (default operator settings;
    loading sheets already issued keep their deadlines).
    """
    from voltloop.orchestrator.dry_run import is_simulated, run_dry_run, stored_spec

    url = resolve_db_url(db)
    spec = stored_spec(url, campaign)
    if not is_simulated(spec):
        from voltloop.orchestrator.cli.run_cmd import resume_real

        resume_real(campaign, url, prefect=prefect, json_out=json_out)
        return
    progress = _Progress(_rounds_planned(spec), spec.batch_size, quiet=json_out)
    with progress:
        summary = run_dry_run(
            spec, url, on_step=progress.update, use_prefect=prefect, on_history=progress.history
        )
    if json_out:
        print_json(summary.as_dict())
        return
    _print_summary(summary)
