"""``voltloop sim serve``: a simulated cycler and potentiostat, and optionally the
simulated lab's loader on a control port (drivers/sim/loader_control.py)."""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated

import typer

from voltloop.orchestrator.cli.common import JsonOption, console, print_json

sim_app = typer.Typer(help="The simulated lab.", no_args_is_help=True)


class SimServeInputError(ValueError):
    """Bad ``sim serve`` option value."""

    exit_code = 2


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")


@sim_app.command("serve")
def serve(
    channels: Annotated[
        int, typer.Option("--channels", "-n", min=1, max=512, help="Cycler channels.")
    ] = 8,
    speed: Annotated[
        str,
        typer.Option(
            "--speed", help="Virtual seconds per wall second, or 'max' (as fast as possible)."
        ),
    ] = "60",
    pty: Annotated[
        bool, typer.Option("--pty/--tcp", help="Serve on pseudo-terminals instead of TCP.")
    ] = False,
    faults: Annotated[
        float,
        typer.Option("--faults", min=0.0, max=1.0, help="Injected fault probability per reply."),
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for faults, noise and cells.")] = 0,
    load: Annotated[
        bool,
        typer.Option(
            "--load/--no-load",
            help="Load a default cell into every channel (the simulator-only loader).",
        ),
    ] = True,
    cell_kind: Annotated[
        str, typer.Option("--cell-kind", help="Cell type the loader puts in each channel.")
    ] = "lfp_graphite_18650",
    max_current: Annotated[
        float,
        typer.Option("--max-current", min=0.1, max=1000.0, help="Cycler channel current limit, A."),
    ] = 10.0,
    control_port: Annotated[
        int | None,
        typer.Option(
            "--control-port",
            min=0,
            max=65535,
            help="Serve the loader on this loopback TCP port (0: any free port), so another "
            "process can load cells and read the truth (docs/real-runs.md).",
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", min=0.0, help="Stop after this many wall seconds."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Serve a simulated cycler and potentiostat, print their URLs, run until Ctrl-C."""
    from voltloop.drivers.sim.lab import SimulatedLab
    from voltloop.drivers.sim.serve import load_default_cells, parse_speed, serve_lab
    from voltloop.drivers.sim.virtual_lab import InstrumentLimits

    try:
        factor = parse_speed(speed)
    except ValueError as exc:
        raise SimServeInputError(str(exc)) from exc
    lab = SimulatedLab(
        channel_count=channels, seed=seed, limits=InstrumentLimits(max_current_A=max_current)
    )
    cells: list[str] = []
    if load:
        try:
            cells = load_default_cells(lab, kind=cell_kind, seed=seed)
        except (KeyError, ValueError) as exc:
            raise SimServeInputError(f"--cell-kind {cell_kind!r}: {exc}") from exc
    link = "pty" if pty else "tcp"
    instruments = serve_lab(lab, link=link, speed=factor, fault_rate=faults, seed=seed)
    control = None
    if control_port is not None:
        from voltloop.drivers.sim.loader_control import LoaderControlServer

        try:
            control = LoaderControlServer(lab, port=control_port)
        except OSError as exc:
            instruments.stop()
            raise SimServeInputError(f"--control-port {control_port}: {exc}") from exc
        control.start()
    stop = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        info = {
            **instruments.urls,
            **({"loader": control.url} if control is not None else {}),
            "link": link,
            "channels": channels,
            "speed": "max" if factor is None else factor,
            "faults": faults,
            "seed": seed,
            "cells": cells,
        }
        if json_output:
            print_json(info)
        else:
            _print_urls(info)
        began = time.monotonic()
        while not stop.wait(0.2):
            if duration is not None and time.monotonic() - began >= duration:
                break
            clock = instruments.clock
            if clock is not None and clock.error is not None:
                raise RuntimeError(f"the lab clock stopped: {clock.error!r}") from clock.error
    except KeyboardInterrupt:
        pass
    finally:
        instruments.stop()
        if control is not None:
            control.stop()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
    console.print("[green]simulated instruments stopped[/]")


def _print_urls(info: dict) -> None:
    from rich.table import Table

    table = Table(title="voltloop simulated lab", show_header=True)
    table.add_column("instrument")
    table.add_column("URL", style="bold cyan")
    for name in ("cycler", "potentiostat", "loader"):
        if name in info:
            table.add_row(name, info[name])
    console.print(table)
    speed = info["speed"]
    console.print(
        f"{info['channels']} channels, speed {speed}{'' if speed == 'max' else 'x'}, "
        f"faults {info['faults']:g}/reply, seed {info['seed']}, "
        f"{len(info['cells'])} cells loaded. Ctrl-C stops."
    )
    console.print(f"check it: voltloop instruments check {info['cycler']}", highlight=False)
