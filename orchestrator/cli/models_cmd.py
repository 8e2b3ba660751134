"""``voltloop models list|show|evaluate``: model versions stored in the database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.table import Table

from voltloop.orchestrator.cli.common import (
    DbOption,
    JsonOption,
    print_json,
    resolve_db_url,
    stdout,
)

models_app = typer.Typer(help="Model versions in the registry.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _read(db: str | None, work: Callable[[Any], Any]) -> Any:
    from voltloop.db.engine import read_session
    from voltloop.db.migrate import open_database

    engine = open_database(resolve_db_url(db), read_only=True)
    try:
        with read_session(engine) as session:
            return work(session)
    finally:
        engine.dispose()


def _headline(metrics: dict[str, Any]) -> str:
    parts = []
    if "n_cells" in metrics:
        parts.append(f"n={metrics['n_cells']}")
    if metrics.get("cv_plus_mspe_log10") is not None:
        parts.append(f"CV MSPE(log10)={metrics['cv_plus_mspe_log10']:.3g}")
    if metrics.get("analytic_mspe_log10") is not None:
        parts.append(f"analytic={metrics['analytic_mspe_log10']:.3g}")
    return ", ".join(parts)


@models_app.command("list")
def list_models(
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only this campaign.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this kind (lifetime, ...).")
    ] = None,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """List model versions, newest first."""
    from voltloop.surrogates.lifetime.inspection import list_model_versions

    versions = _read(db, lambda s: list_model_versions(s, campaign, kind))
    if json_out:
        print_json({"model_versions": versions})
        return
    table = Table(
        "id", "kind", "name", "version", "campaign", "created", "figures", title="model versions"
    )
    for v in versions:
        table.add_row(
            str(v["id"]),
            v["kind"],
            v["name"],
            str(v["version"]),
            v["campaign"] or "-",
            (v["created_at"] or "")[:19],
            _headline(v["metrics"] or {}),
        )
    stdout.print(table)


@models_app.command("show")
def show_model(
    model_version_id: Annotated[int, typer.Argument(help="Model version id (see `models list`).")],
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show one model version: settings, training figures, coefficients."""
    from voltloop.surrogates.lifetime.inspection import show_model_version

    info = _read(db, lambda s: show_model_version(s, model_version_id))
    if json_out:
        print_json(info)
        return
    table = Table("field", "value", title=f"model version {model_version_id}")
    for key, value in info.items():
        if isinstance(value, dict):
            for k, v in value.items():
                table.add_row(f"{key}.{k}", f"{v:.4g}" if isinstance(v, float) else str(v))
        else:
            table.add_row(key, str(value))
    stdout.print(table)


@models_app.command("evaluate")
def evaluate_model(
    model_version_id: Annotated[int, typer.Argument(help="Lifetime model version id.")],
    campaign: Annotated[str, typer.Option("--campaign", help="Cells to score it on.")],
    coverage: Annotated[float, typer.Option(help="Interval coverage to check.")] = 0.9,
    db: DbOption = None,
    json_out: JsonOption = False,
) -> None:
    """Score a lifetime model version on a campaign's cells that reached end of life."""
    from voltloop.surrogates.lifetime.inspection import evaluate_model_version

    figures = _read(db, lambda s: evaluate_model_version(s, model_version_id, campaign, coverage))
    if json_out:
        print_json(figures)
        return
    table = Table("figure", "value", title=f"model version {model_version_id} on {campaign}")
    for key, value in figures.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    stdout.print(table)
