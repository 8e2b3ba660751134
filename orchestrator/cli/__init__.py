"""The ``voltloop`` command line: one entry point, sub-commands in sibling modules.

Errors: any exception that carries an integer ``exit_code`` attribute is a
user-facing error (bad input, unknown campaign, unreachable database, ...). It is
printed as one message without a traceback and the process exits with that code;
``voltloop --debug ...`` shows the traceback instead. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
import warnings
from importlib import import_module
from importlib.metadata import version
from typing import Annotated

import click
import typer
from rich.text import Text

from voltloop.orchestrator.cli.common import console
from voltloop.orchestrator.cli.memory import keep_freed_memory

app = typer.Typer(
    name="voltloop",
    help="Closed-loop autonomous battery campaigns, on real or simulated instruments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}

#: Sub-command modules; each exposes ``register(app)``.
COMMAND_MODULES = (
    "init_cmd",
    "campaign_cmd",
    "run_cmd",
    "report_cmd",
    "status_cmd",
    "db_cmd",
    "sim_cmd",
    "instruments_cmd",
    "protocol_cmd",
    "models_cmd",
    "bench_cmd",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"voltloop {version('voltloop')}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show version."),
    ] = False,
) -> None:
    """voltloop: closed-loop battery campaigns (protocols and materials)."""
    _state["debug"] = debug


for _name in COMMAND_MODULES:
    import_module(f"{__name__}.{_name}").register(app)


#: Numerical notices of the model libraries that say nothing a user can act on: the GP
#: Cholesky's added jitter (it retries with jitter by design) and the elastic-net path's
#: convergence note at its weakest regularisation (cross-validation picks elsewhere).
#: ``voltloop --debug`` shows them.
QUIET_WARNINGS = (
    (r"A not p\.d\., added jitter", "linear_operator"),
    (r"Objective did not converge", "sklearn"),
)


def _quiet_numerical_notices() -> None:
    for message, module in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, module=module)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    keep_freed_memory()
    if "--debug" not in args:
        _quiet_numerical_notices()
    try:
        result = app(args=args, standalone_mode=False)
    except SystemExit:
        raise
    except click.ClickException as exc:  # usage errors: bad option, missing argument
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, typer.Abort):
        console.print("[red]aborted[/]")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one place errors meet the user
        code = getattr(exc, "exit_code", None)
        if _state["debug"] or not isinstance(code, int):
            raise
        # never wrapped: a file path or URL in the message must stay copyable and greppable
        console.print(Text("error: ", style="bold red") + Text(str(exc)), soft_wrap=True)
        sys.exit(code)
    sys.exit(result if isinstance(result, int) else 0)
