"""The simulated lab's loader, reachable from another process: a JSON-lines control port.

In a real lab a person builds a cell and puts it into a cycler channel; in the
simulated lab that part is played by the loader (``VirtualLab.load_cell``,
``attach_potentiostat``, ``truth``), a simulator-only surface that no instrument
protocol exposes. ``voltloop sim serve --control-port`` serves it on a separate TCP
port so a test (or a person rehearsing a real run) can load cells into a lab served
by another process and read the simulator's ground truth — the lab plays the
"real" lab of ``voltloop run`` and the control port plays the operator's hands.

Wire format (docs/real-runs.md, "The simulated lab's control port"): one request per
line, a JSON object ``{"op": NAME, ...arguments}``; one reply per line,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": MESSAGE}``. UTF-8, ``\\n``
line ends, at most :data:`MAX_LINE_BYTES` per line. Operations: ``ping``, ``info``,
``load`` (``channel``, ``cell``), ``unload``, ``attach``, ``status``, ``truth``
(``channel``), ``fault`` (``channel``, ``kind``), ``clear_fault`` (``channel``).
It binds to loopback by default and has no authentication: it is a test and
rehearsal aid, never part of an instrument.

Every read and write has a bounded timeout on both sides.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import socketserver
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voltloop.drivers.sim.virtual_lab import CellSpec, CellTruth, VirtualLab

#: Longest request or reply line (a materials cell carries a pymatgen structure).
MAX_LINE_BYTES = 4 * 1024 * 1024
SCHEME = "loader://"
Operation = Literal[
    "ping", "info", "load", "unload", "attach", "status", "truth", "fault", "clear_fault"
]


class LoaderControlError(RuntimeError):
    """The control port refused a request or did not answer in time."""

    exit_code = 1


class CellRequest(BaseModel):
    """The cell the loader puts into a channel (``virtual_lab.CellSpec`` on the wire)."""

    model_config = ConfigDict(extra="forbid")

    cell_id: str = Field(min_length=1, max_length=128)
    kind: str = "lfp_graphite_18650"
    seed: int = 0
    material: dict[str, Any] | None = None
    chamber_temperature_C: float = 30.0  # noqa: N815 - unit suffix
    options: dict[str, Any] = Field(default_factory=dict)


class ControlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Operation
    channel: int | None = Field(default=None, ge=0)
    cell: CellRequest | None = None
    kind: str | None = None


def _channel(request: ControlRequest) -> int:
    if request.channel is None:
        raise ValueError(f"{request.op!r} needs a 'channel'")
    return request.channel


def execute(lab: VirtualLab, request: ControlRequest) -> Any:
    """Carry out one request on ``lab``; the JSON-ready result (ValueError if refused)."""
    op = request.op
    if op == "ping":
        return "pong"
    if op == "info":
        statuses = [lab.status(ch) for ch in range(lab.channel_count)]
        return {
            "channels": lab.channel_count,
            "limits": dataclasses.asdict(lab.limits),
            "now_s": lab.now_s,
            "potentiostat_channel": lab.potentiostat_channel,
            "cells": [s.cell_id for s in statuses],
        }
    channel = _channel(request)
    if op == "load":
        if request.cell is None:
            raise ValueError("'load' needs a 'cell'")
        lab.load_cell(channel, CellSpec(**request.cell.model_dump()))
        return None
    if op == "unload":
        lab.unload_cell(channel)
        return None
    if op == "attach":
        lab.attach_potentiostat(channel)
        return None
    if op == "status":
        status = lab.status(channel)
        return {**dataclasses.asdict(status), "state": status.state.value}
    if op == "truth":
        return dataclasses.asdict(lab.truth(channel))
    if op == "fault":
        lab.inject_fault(channel, request.kind or "hardware")
        return None
    clear = getattr(lab, "clear_fault", None)
    if clear is None:
        raise ValueError("this lab cannot clear faults")
    clear(channel)
    return None


def _reply(lab: VirtualLab, line: bytes) -> dict[str, Any]:
    try:
        request = ControlRequest.model_validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "request"
        return {"ok": False, "error": f"bad request: {where}: {first['msg']}"}
    try:
        return {"ok": True, "result": execute(lab, request)}
    except (ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "error": str(exc)}


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30.0  # an idle client is dropped after this long (bounded reads)

    def handle(self) -> None:
        lab: VirtualLab = self.server.lab  # type: ignore[attr-defined]
        while True:
            try:
                line = self.rfile.readline(MAX_LINE_BYTES + 1)
            except (TimeoutError, OSError):
                return
            if not line:
                return
            if len(line) > MAX_LINE_BYTES:
                reply = {"ok": False, "error": f"request longer than {MAX_LINE_BYTES} bytes"}
            elif not line.strip():
                continue
            else:
                reply = _reply(lab, line)
            try:
                self.wfile.write((json.dumps(reply) + "\n").encode())
            except OSError:
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], lab: VirtualLab) -> None:
        self.lab = lab
        super().__init__(address, _Handler)


class LoaderControlServer:
    """Serves ``lab``'s loader on ``host:port`` (port 0 picks a free one) in a thread."""

    def __init__(self, lab: VirtualLab, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.lab = lab
        self._server = _Server((host, port), lab)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{SCHEME}{host}:{port}"

    def start(self) -> str:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"loader-control {self.url}",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout_s)
        self._server.server_close()

    def __enter__(self) -> LoaderControlServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_url(url: str) -> tuple[str, int]:
    """``loader://HOST:PORT`` → (host, port); ValueError naming the URL otherwise."""
    if not url.startswith(SCHEME):
        raise ValueError(f"loader control URL must look like {SCHEME}HOST:PORT, got {url!r}")
    host, _, port = url[len(SCHEME) :].rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"loader control URL must look like {SCHEME}HOST:PORT, got {url!r}")
    return host, int(port)


class LoaderControlClient:
    """Talks to a :class:`LoaderControlServer`; one short connection per request."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url
        self.address = parse_url(url)
        self.timeout_s = timeout_s

    def request(self, op: Operation, **arguments: Any) -> Any:
        """Send one request; its result, or LoaderControlError with the lab's reason."""
        message = ControlRequest(op=op, **arguments).model_dump_json(exclude_none=True)
        try:
            with socket.create_connection(self.address, timeout=self.timeout_s) as sock:
                sock.settimeout(self.timeout_s)
                sock.sendall(message.encode() + b"\n")
                with sock.makefile("rb") as stream:
                    line = stream.readline(MAX_LINE_BYTES + 1)
        except OSError as exc:  # refused, reset, timed out
            raise LoaderControlError(f"{self.url}: {op}: {exc}") from exc
        if not line.endswith(b"\n"):
            raise LoaderControlError(f"{self.url}: {op}: incomplete reply {line[:80]!r}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise LoaderControlError(f"{self.url}: {op}: {reply.get('error')}")
        return reply.get("result")

    def ping(self) -> bool:
        return self.request("ping") == "pong"

    def info(self) -> dict[str, Any]:
        return self.request("info")

    def load_cell(self, channel: int, cell: CellSpec | CellRequest) -> None:
        if isinstance(cell, CellSpec):
            cell = CellRequest(**dataclasses.asdict(cell))
        self.request("load", channel=channel, cell=cell)

    def unload_cell(self, channel: int) -> None:
        self.request("unload", channel=channel)

    def attach_potentiostat(self, channel: int) -> None:
        self.request("attach", channel=channel)

    def status(self, channel: int) -> dict[str, Any]:
        return self.request("status", channel=channel)

    def truth(self, channel: int) -> CellTruth:
        return CellTruth(**self.request("truth", channel=channel))

    def inject_fault(self, channel: int, kind: str) -> None:
        self.request("fault", channel=channel, kind=kind)

    def clear_fault(self, channel: int) -> None:
        self.request("clear_fault", channel=channel)
