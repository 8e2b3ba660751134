"""``voltloop protocol show|export``: compile a campaign candidate and look at it.

``show`` prints the compiled steps as a table, the checkpoints, the safety block and
the validation result (against the cell, and against the simulated cycler's limits
when the campaign's cycler is ``sim://``). ``export`` writes the protocol in one of
the formats of drivers/protocol_export.py, saying what the format cannot carry.
Either exits 2 when the candidate is invalid or the protocol breaks a limit.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voltloop.orchestrator.cli.common import JsonOption, console, print_json

if TYPE_CHECKING:
    from voltloop.drivers.protocols import CompiledProtocol

protocol_app = typer.Typer(help="Compile and export cycling protocols.", no_args_is_help=True)

ConfigArgument = Annotated[Path, typer.Argument(help="Campaign TOML file.", show_default=False)]
CandidateOption = Annotated[
    str | None,
    typer.Option(
        "--candidate",
        help="Parameter values, e.g. 'CC1=5.2,CC2=5.2,CC3=4.8' (protocol campaigns).",
        show_default=False,
    ),
]
MaterialOption = Annotated[
    str,
    typer.Option("--material", help="Material label for a materials campaign's test protocol."),
]
CyclesOption = Annotated[
    int | None,
    typer.Option(
        "--cycles",
        min=1,
        help="Aging cycles (default: the early-prediction cycle, else lifetime.max_cycles).",
        show_default=False,
    ),
]
LimitsFromOption = Annotated[
    str | None,
    typer.Option(
        "--limits-from",
        help="Query this cycler's limits (SYST:LIM?) and check against them, "
        "e.g. socket://lab-pc:5025.",
        show_default=False,
    ),
]
EolOption = Annotated[
    bool,
    typer.Option("--end-of-life", help="Compile for a cell run to end of life (max_cycles)."),
]


class CandidateSyntaxError(ValueError):
    """A ``--candidate`` string that is not NAME=VALUE pairs."""

    exit_code = 2


def register(app: typer.Typer) -> None:
    app.add_typer(protocol_app, name="protocol")


def parse_candidate(text: str | None) -> dict[str, float]:
    """``'CC1=5.2, CC2=5.2'`` → ``{"CC1": 5.2, "CC2": 5.2}``."""
    if not text or not text.strip():
        return {}
    values: dict[str, float] = {}
    for part in text.split(","):
        name, sep, raw = part.partition("=")
        name = name.strip()
        try:
            value = float(raw)
        except ValueError:
            value = None  # type: ignore[assignment]
        if not sep or not name or value is None:
            raise CandidateSyntaxError(
                f"--candidate: expected NAME=VALUE pairs separated by commas, got {part.strip()!r}"
            )
        if name in values:
            raise CandidateSyntaxError(f"--candidate: {name} is given twice")
        values[name] = value
    return values


def compile_from_config(
    config: Path,
    candidate: str | None,
    material: str,
    cycles: int | None,
    end_of_life: bool,
) -> tuple[Any, CompiledProtocol]:
    """Load ``config`` and compile the candidate (protocol) or the test (materials)."""
    from voltloop.campaigns.loading import load_campaign
    from voltloop.campaigns.spec import ProtocolCampaign
    from voltloop.drivers.protocols import compile_candidate, compile_material_test

    spec = load_campaign(config)
    if cycles is None and end_of_life:
        cycles = spec.lifetime.max_cycles
    if isinstance(spec, ProtocolCampaign):
        values = parse_candidate(candidate)
        if not values:
            names = ", ".join(f"{n}=..." for n in spec.space.parameter_names)
            raise CandidateSyntaxError(f"a protocol campaign needs --candidate '{names}'")
        return spec, compile_candidate(spec, values, cycles=cycles)
    if candidate:
        raise CandidateSyntaxError(
            "a materials campaign has one fixed test protocol; use --material LABEL, "
            "not --candidate"
        )
    return spec, compile_material_test(spec, material, cycles=cycles)


def instrument_limits(spec: Any, limits_from: str | None = None) -> tuple[Any | None, str]:
    """The cycler limits to check against, and a phrase saying which they are.

    ``limits_from``: ask that cycler (bounded by ``instruments.timeout_s``); otherwise
    the simulated cycler's defaults when every cycler of the spec is ``sim://``.
    """
    if limits_from:
        from voltloop.drivers.cycler import CyclerDriver

        with CyclerDriver(limits_from, timeout_s=spec.instruments.timeout_s) as cycler:
            return cycler.limits(), f"the limits of the cycler at {limits_from}"
    cyclers = spec.instruments.cyclers
    if all(c.simulated for c in cyclers):
        from voltloop.orchestrator.dry_run import simulated_cycler_limits

        return simulated_cycler_limits(), "the dry run's simulated cycler limits"
    return None, "cell limits only (instrument limits are checked at dispatch)"


@protocol_app.command("show")
def show(
    config: ConfigArgument,
    candidate: CandidateOption = None,
    material: MaterialOption = "material",
    cycles: CyclesOption = None,
    end_of_life: EolOption = False,
    limits_from: LimitsFromOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the protocol a campaign candidate compiles to, and whether it is within limits."""
    spec, compiled = compile_from_config(config, candidate, material, cycles, end_of_life)
    limits, checked = instrument_limits(spec, limits_from)
    violations = compiled.check(limits)
    if json_output:
        print_json(
            {
                "campaign": spec.name,
                "checked_against": checked,
                "ok": not violations,
                "violations": [v.model_dump() for v in violations],
                "compiled": compiled.model_dump(mode="json"),
            }
        )
    else:
        _print_compiled(compiled)
        if violations:
            console.print(f"[bold red]refused[/] ({checked}):", highlight=False)
            for violation in violations:
                console.print(f"  - {violation}", highlight=False, markup=False, soft_wrap=True)
        else:
            console.print(f"[bold green]ok[/]: within {checked}", highlight=False)
    if violations:
        raise typer.Exit(2)


@protocol_app.command("export")
def export(
    config: ConfigArgument,
    candidate: CandidateOption = None,
    material: MaterialOption = "material",
    cycles: CyclesOption = None,
    end_of_life: EolOption = False,
    fmt: Annotated[
        str,
        typer.Option("--format", help="unicycler-json, voltloop-json, pybamm, neware or biologic."),
    ] = "unicycler-json",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="File to write; '-' or omitted: standard output."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    limits_from: LimitsFromOption = None,
) -> None:
    """Export the compiled protocol through aurora_unicycler."""
    from voltloop.drivers.protocol_export import ExportFormat, export_protocol

    try:
        export_format = ExportFormat(fmt)
    except ValueError:
        raise CandidateSyntaxError(
            f"--format {fmt!r} is not known; use one of " + ", ".join(f.value for f in ExportFormat)
        ) from None
    spec, compiled = compile_from_config(config, candidate, material, cycles, end_of_life)
    limits, _ = instrument_limits(spec, limits_from)
    compiled.ensure_dispatchable(limits)
    result = export_protocol(compiled, export_format)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    if out is None or str(out) == "-":
        sys.stdout.write(result.content)
        sys.stdout.flush()
        return
    if out.exists() and not force:
        raise CandidateSyntaxError(f"{out} already exists; use --force to overwrite it")
    _write_atomically(out, result.content, result.encoding)
    console.print(f"wrote [bold]{out}[/] ({export_format.value})", highlight=False)


def _write_atomically(path: Path, text: str, encoding: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding, newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _describe(step: Any) -> tuple[str, str]:
    """(set-point, end condition) of a unicycler step, for the table."""
    kind = step.step
    ends: list[str] = []
    if getattr(step, "until_time_s", None):
        ends.append(f"t ≥ {step.until_time_s:.6g} s")
    if kind == "constant_current":
        setpoint = f"{step.rate_C:+.4g} C" if step.rate_C else f"{step.current_mA:+.4g} mA"
        if step.until_voltage_V:
            ends.append(f"V {'≥' if (step.rate_C or step.current_mA or 0) > 0 else '≤'} "
                        f"{step.until_voltage_V:g} V")  # fmt: skip
    elif kind == "constant_voltage":
        setpoint = f"{step.voltage_V:g} V"
        if step.until_rate_C:
            ends.append(f"|I| ≤ {abs(step.until_rate_C):g} C")
    elif kind == "open_circuit_voltage":
        setpoint = "rest"
    elif kind == "impedance_spectroscopy":
        setpoint = (
            f"EIS {step.start_frequency_Hz:g}→{step.end_frequency_Hz:g} Hz, "
            f"{step.points_per_decade}/dec, {(step.amplitude_V or 0) * 1000:g} mV"
        )
    elif kind == "tag":
        setpoint = f"tag {step.tag!r}"
    elif kind == "loop":
        setpoint = f"repeat from {step.loop_to!r}"
        ends.append(f"{step.cycle_count} passes")
    else:
        setpoint = kind
    return setpoint, " or ".join(ends)


def _print_compiled(compiled: CompiledProtocol) -> None:
    from rich.table import Table

    protocol = compiled.protocol
    table = Table(title=protocol.sample.name, title_justify="left")
    for column in ("#", "step", "id", "set-point", "ends when"):
        table.add_column(column, no_wrap=column in ("#", "step"))
    for i, step in enumerate(protocol.method):
        setpoint, ends = _describe(step)
        table.add_row(str(i), step.step, getattr(step, "id", None) or "", setpoint, ends)
    console.print(table)
    params = ", ".join(f"{k}={v:.4g}" for k, v in compiled.parameters.items())
    if params:
        console.print(f"parameters: {params}", highlight=False)
    checkpoints = ", ".join(f"{c.kind}@{c.after_cycles}" for c in compiled.checkpoints)
    console.print(
        f"aging cycles: {compiled.cycles}; checkpoints (after N cycles): {checkpoints or 'none'}",
        highlight=False,
    )
    safety = compiled.safety
    console.print(
        f"safety: stop above {safety.max_temperature_C:g} °C ({safety.temperature_limit_source}); "
        f"cell window {safety.min_voltage_V:g}–{safety.max_voltage_V:g} V, "
        f"charge ≤ {safety.max_charge_current_A:.4g} A, "
        f"discharge ≤ {safety.max_discharge_current_A:.4g} A",
        highlight=False,
    )
