"""``voltloop instruments check URL``: identify, self-test and limits of an instrument."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from voltloop.orchestrator.cli.common import JsonOption, console, print_json

instruments_app = typer.Typer(help="Talk to instruments.", no_args_is_help=True)


class InstrumentKindChoice(enum.StrEnum):
    AUTO = "auto"
    CYCLER = "cycler"
    POTENTIOSTAT = "potentiostat"


class InstrumentCheckError(RuntimeError):
    """The URL answered, but not like any instrument voltloop knows."""

    exit_code = 1


def register(app: typer.Typer) -> None:
    app.add_typer(instruments_app, name="instruments")


def _transcript(path: Path | None) -> Any:
    from voltloop.drivers.transport import Transcript

    return Transcript(path, enabled=path is not None)


def _check_cycler(url: str, timeout_s: float, retries: int, log: Path | None) -> dict[str, Any]:
    from voltloop.drivers.cycler import CyclerDriver

    with CyclerDriver(
        url, timeout_s=timeout_s, retries=retries, transcript=_transcript(log)
    ) as driver:
        identity = driver.identify()
        self_test = driver.self_test()
        limits = driver.limits()
        states = [driver.status(ch).state.value for ch in range(limits.channels)]
    return {
        "kind": "cycler",
        "url": url,
        "identity": identity.model_dump(mode="json"),
        "self_test": self_test.model_dump(mode="json"),
        "limits": limits.model_dump(mode="json"),
        "channel_states": states,
    }


def _check_potentiostat(url: str, timeout_s: float, log: Path | None) -> dict[str, Any]:
    """MethodSCRIPT ``t`` through the potentiostat driver (docs/protocols/methodscript.md)."""
    from voltloop.drivers.potentiostat import PalmSensPotentiostat

    with PalmSensPotentiostat(
        url, timeout_s=timeout_s, retries=1, transcript=_transcript(log)
    ) as driver:
        identity = driver.identify()
        limits = driver.limits
    return {
        "kind": "potentiostat",
        "url": url,
        "identity": identity.model_dump(mode="json"),
        "self_test": {
            "passed": True,
            "code": 0,
            "messages": ["MethodSCRIPT has no self-test; the firmware query answered"],
        },
        "limits": {
            "device": limits.model.value,
            "min_frequency_Hz": limits.min_frequency_Hz,
            "max_frequency_Hz": limits.max_frequency_Hz,
            "max_abs_potential_V": limits.max_abs_potential_V,
            "max_current_A": limits.max_current_A,
            "min_amplitude_Vrms": limits.min_amplitude_Vrms,
            "max_amplitude_Vrms": limits.max_amplitude_Vrms,
        },
    }


@instruments_app.command("check")
def check(
    url: Annotated[str, typer.Argument(help="socket://host:port, a pty path or a port")],
    kind: Annotated[
        InstrumentKindChoice,
        typer.Option("--kind", help="What to expect at URL; auto tries the cycler first."),
    ] = InstrumentKindChoice.AUTO,
    timeout_s: Annotated[
        float, typer.Option("--timeout", min=0.05, max=60.0, help="Per-read timeout, s.")
    ] = 2.0,
    transcript: Annotated[
        Path | None,
        typer.Option("--transcript", help="Append the bytes exchanged (timestamped) to FILE."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Identify an instrument, run its self-test and print its limits."""
    from voltloop.drivers.errors import Disconnected, InstrumentCommunicationError

    if kind is InstrumentKindChoice.POTENTIOSTAT:
        report = _check_potentiostat(url, timeout_s, transcript)
    elif kind is InstrumentKindChoice.CYCLER:
        report = _check_cycler(url, timeout_s, 1, transcript)
    else:
        try:
            report = _check_cycler(url, timeout_s, 1, transcript)
        except Disconnected:
            raise
        except InstrumentCommunicationError as cycler_error:
            try:
                report = _check_potentiostat(url, timeout_s, transcript)
            except (InstrumentCommunicationError, InstrumentCheckError) as exc:
                raise InstrumentCheckError(
                    f"{url} is neither a voltloop cycler ({cycler_error}) "
                    f"nor a MethodSCRIPT potentiostat ({exc})"
                ) from exc
    if json_output:
        print_json(report)
    else:
        _print_report(report)
    if not report["self_test"]["passed"]:
        raise typer.Exit(1)


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    identity = report["identity"]
    passed = report["self_test"]["passed"]
    table = Table(title=f"{report['kind']} at {report['url']}", show_header=False)
    table.add_column("item", style="bold")
    table.add_column("value")
    for key in ("maker", "model", "serial", "firmware"):
        if key in identity:
            table.add_row(key, str(identity[key]))
    table.add_row("self-test", "[green]passed[/]" if passed else "[red]FAILED[/]")
    for message in report["self_test"]["messages"]:
        table.add_row("", message)
    for key, value in (report["limits"] or {}).items():
        table.add_row(key, f"{value:g}" if isinstance(value, float) else str(value))
    states = report.get("channel_states")
    if states:
        counts = {s: states.count(s) for s in dict.fromkeys(states)}
        table.add_row("channel states", ", ".join(f"{n} {s}" for s, n in counts.items()))
    console.print(table)
