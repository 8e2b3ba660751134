"""Start the simulated instruments in-process: a cycler and (if available) a potentiostat
server on TCP or pty, a clock thread driving the lab, and the loader filling channels.

``voltloop sim serve`` and the orchestrator's dry run both use :func:`serve_lab`;
tests use it too. Everything runs in daemon threads of the calling process and stops
with :meth:`SimulatedInstruments.stop` (bounded joins).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

from voltloop.drivers.sim.cycler_server import CyclerServer
from voltloop.drivers.sim.faults import FaultInjector, FaultRates
from voltloop.drivers.sim.virtual_lab import CellSpec, VirtualLab

log = logging.getLogger(__name__)

DEFAULT_CELL_KIND = "lfp_graphite_18650"


def parse_speed(text: str | float | None) -> float | None:
    """``"max"`` (or None) → as fast as possible (None); else a factor > 0."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "max"):
        return None
    try:
        factor = float(text)
    except ValueError as exc:
        raise ValueError(f"speed must be a number > 0 or 'max', got {text!r}") from exc
    if factor <= 0:
        raise ValueError(f"speed must be > 0 or 'max', got {factor}")
    return factor


def potentiostat_server_class() -> type | None:
    """The simulated potentiostat server class of drivers/sim/potentiostat_server.py
    (``SimulatedPotentiostatServer``), or None if this version has none."""
    try:
        module = importlib.import_module("voltloop.drivers.sim.potentiostat_server")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith("potentiostat_server"):
            return None
        raise
    for name in ("SimulatedPotentiostatServer", "PotentiostatServer"):
        if hasattr(module, name):
            return getattr(module, name)
    return None


def _make_potentiostat_server(
    server_class: type,
    lab: VirtualLab,
    link: str,
    faults: FaultInjector | None,
    speed: float | None = None,
) -> Any:
    """Build the potentiostat server with the keyword names its constructor accepts
    (``link`` or ``transport``; ``faults`` or ``fault_injector``; ``speed``: device
    seconds per wall second, the lab clock's factor)."""
    params = inspect.signature(server_class).parameters
    kwargs: dict[str, Any] = {}
    if "link" in params:
        kwargs["link"] = link
    elif "transport" in params:
        kwargs["transport"] = link
    if "speed" in params:
        kwargs["speed"] = speed
    for name in ("faults", "fault_injector", "injector"):
        if name in params:
            kwargs[name] = faults
            break
    return server_class(lab, **kwargs)


def load_default_cells(
    lab: VirtualLab, *, kind: str = DEFAULT_CELL_KIND, seed: int = 0, prefix: str = "sim-cell"
) -> list[str]:
    """The loader's part: put one ``kind`` cell (cell-to-cell variation drawn from
    ``seed``) in every channel; attach the potentiostat to channel 0."""
    cell_ids = []
    for channel in range(lab.channel_count):
        cell_id = f"{prefix}-{channel:02d}"
        lab.load_cell(channel, CellSpec(cell_id=cell_id, kind=kind, seed=seed * 1000 + channel))
        cell_ids.append(cell_id)
    lab.attach_potentiostat(0)
    return cell_ids


@dataclass
class SimulatedInstruments:
    """Running simulated instruments; ``urls`` maps ``"cycler"``/``"potentiostat"`` to URLs."""

    lab: VirtualLab
    cycler: CyclerServer
    potentiostat: Any | None = None
    clock: Any | None = None
    faults: dict[str, FaultInjector] = field(default_factory=dict)

    @property
    def urls(self) -> dict[str, str]:
        urls = {"cycler": self.cycler.url}
        if self.potentiostat is not None:
            urls["potentiostat"] = self.potentiostat.url
        return urls

    def stop(self) -> None:
        """Stop the servers and the clock (each with a bounded join)."""
        for server in (self.potentiostat, self.cycler):
            if server is not None:
                server.stop()
        if self.clock is not None:
            self.clock.stop()

    def __enter__(self) -> SimulatedInstruments:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_lab(
    lab: VirtualLab,
    *,
    link: str = "tcp",
    speed: float | None = 1.0,
    fault_rate: float = 0.0,
    seed: int = 0,
    potentiostat: bool = True,
    clock: bool = True,
    fault_delay_s: float = 3.0,
    paced_eis: bool = True,
) -> SimulatedInstruments:
    """Serve ``lab`` as a cycler (and potentiostat) on ``link`` and start its clock.

    ``speed``: virtual seconds per wall second, None = as fast as possible.
    ``paced_eis``: the potentiostat streams a sweep at ``speed`` too (a 10 kHz-10 mHz
    sweep is ~25 device minutes); False streams it as fast as possible, while the
    channel rests at its checkpoint for as long as the host takes.
    ``fault_rate``: probability per reply of an injected fault
    (:meth:`FaultRates.uniform`), seeded from ``seed`` (the potentiostat from ``seed+1``).
    """
    faults: dict[str, FaultInjector] = {}
    if fault_rate > 0:
        rates = FaultRates.uniform(fault_rate)
        faults["cycler"] = FaultInjector(rates, seed=seed, delay_s=fault_delay_s)
        faults["potentiostat"] = FaultInjector(rates, seed=seed + 1, delay_s=fault_delay_s)
    cycler = CyclerServer(lab, link=link, faults=faults.get("cycler"))
    cycler.start()
    instruments = SimulatedInstruments(lab=lab, cycler=cycler, faults=faults)
    try:
        server_class = potentiostat_server_class() if potentiostat else None
        if server_class is not None:
            server = _make_potentiostat_server(
                server_class, lab, link, faults.get("potentiostat"), speed if paced_eis else None
            )
            url = server.start()
            if not getattr(server, "url", None) and isinstance(url, str):
                server.url = url
            instruments.potentiostat = server
        elif potentiostat:
            log.warning("no simulated potentiostat server in this version; serving the cycler only")
        if clock:
            from voltloop.drivers.sim.clock import LabClock

            instruments.clock = LabClock(lab, factor=speed).start()
    except BaseException:
        instruments.stop()
        raise
    return instruments


def default_lab(channels: int = 8, *, seed: int = 0) -> VirtualLab:
    """The physics lab (drivers/sim/lab.py) with ``channels`` cycler channels."""
    from voltloop.drivers.sim.lab import SimulatedLab

    return SimulatedLab(channel_count=channels, seed=seed)
