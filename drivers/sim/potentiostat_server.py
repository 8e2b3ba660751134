"""Simulated PalmSens potentiostat: the MethodSCRIPT subset of
docs/protocols/methodscript.md over TCP or a pty, backed by a VirtualLab.

:class:`SimulatedPotentiostatServer` serves one host session at a time on a
:class:`~voltloop.drivers.sim.links.Link` (``socket://127.0.0.1:<port>`` or a pty
symlink). Commands: ``t`` (firmware version), ``e`` + script + empty line (runs the
script in a worker thread, so ``Z`` can abort it mid-sweep), ``Z`` (abort; ``Z!0006``
when idle); anything else is ``!0003``. Scripts are parsed and executed by
:mod:`voltloop.drivers.sim.methodscript_device`: ``meas_loop_eis`` asks the lab for the
impedance of the channel the potentiostat is attached to at the device's log-spaced
sweep (high → low) and emits packages exactly as :mod:`voltloop.drivers.methodscript`
encodes them.

Device time: an EIS point takes ``2/f + 0.1 s``, an OCP/CP point its interval.
``speed`` is device seconds per wall second (None = as fast as possible, no waiting).

Faults (:class:`~voltloop.drivers.sim.faults.FaultInjector`): a single-line reply
(``t``, ``Z``, errors) gets the injector's plan like the cycler's replies. A script's
output stream gets at most one fault, decided once per script and placed on a random
output line: ``delay`` (that line comes ``delay_s`` late), ``garble`` (that line's bytes
become ≥ 0x80), ``partial`` (that line is cut short and the device falls silent),
``drop`` (silent from that line on), ``disconnect`` (link dropped there), ``reset`` (the
device restarts: the script and the session are lost). Lab faults (``channel_fault``,
``over_temperature``) belong to the cycler; the potentiostat sends its output unchanged.
A link drop or a new session aborts a running script silently (documented
simplification: a real device would keep measuring into a dead port).

Usage::

    server = SimulatedPotentiostatServer(lab, transport="tcp")   # serving at once
    driver = PalmSensPotentiostat(server.url)
    ...
    server.close()
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from voltloop.drivers import methodscript as ms
from voltloop.drivers.sim.faults import FaultInjector, FaultKind, ReplyPlan
from voltloop.drivers.sim.links import Connection, Link, LinkClosedError, make_link
from voltloop.drivers.sim.methodscript_device import (
    ERR_UNKNOWN_COMMAND,
    ERR_WRONG_STATE,
    DeviceContext,
    Program,
    ScriptError,
    parse_script,
    run_script,
)
from voltloop.drivers.sim.virtual_lab import VirtualLab

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
_STREAM_FAULTS = frozenset(
    {
        FaultKind.DELAY,
        FaultKind.DROP,
        FaultKind.GARBLE,
        FaultKind.PARTIAL,
        FaultKind.DISCONNECT,
        FaultKind.RESET,
    }
)


class _SessionEndedError(Exception):
    """The session is over (link dropped, reset, host gone)."""


@dataclass
class _ScriptRun:
    program: Program
    abort: threading.Event = field(default_factory=threading.Event)
    silent: bool = False  # abort without closing lines (link lost, reset)
    thread: threading.Thread | None = None
    ended: threading.Event = field(default_factory=threading.Event)  # output is over


class SimulatedPotentiostatServer:
    """A simulated EmStat serving ``lab`` on ``transport`` ("tcp" or "pty"); starts at once.

    ``url`` is what a driver opens; ``close()`` (alias ``stop()``) ends it with bounded
    joins. ``link`` is an alias of ``transport`` (the cycler server's keyword) and may be
    a ready :class:`Link`.
    """

    def __init__(
        self,
        lab: VirtualLab,
        transport: str | Link = "tcp",
        faults: FaultInjector | None = None,
        *,
        link: str | Link | None = None,
        device: ms.DeviceModel = ms.DeviceModel.EMSTAT4_HR,
        speed: float | None = None,
        current_limit_A: float | None = None,  # noqa: N803 - unit suffix
    ) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be > 0 or None (as fast as possible), got {speed}")
        kind = link if link is not None else transport
        down_s = faults.down_s if faults is not None else 0.2
        self.link = make_link(kind, down_s=down_s) if isinstance(kind, str) else kind
        self.lab = lab
        self.faults = faults
        self.limits = ms.DEVICE_LIMITS[device]
        self.firmware = f"{device.value}1.3 voltloop-sim"
        self.speed = speed
        self.current_limit_A = current_limit_A
        self.sessions = 0
        self.scripts_run = 0
        self.url = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Connection | None = None
        self._out_lock = threading.Lock()
        self._run: _ScriptRun | None = None
        self._run_lock = threading.Lock()
        self._drop_requested = threading.Event()
        self.start()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start serving (idempotent; the constructor already did)."""
        if self._thread is not None:
            return self.url
        self.url = self.link.start()
        self._thread = threading.Thread(
            target=self._serve_forever, name=f"potentiostat-server {self.url}", daemon=True
        )
        self._thread.start()
        return self.url

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._end_run(silent=True, timeout_s=timeout_s)
        if self._connection is not None:
            self._connection.close()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.link.close()

    stop = close

    def __enter__(self) -> SimulatedPotentiostatServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def busy(self) -> bool:
        """A script is running (idle again once its last output line is on its way)."""
        with self._run_lock:
            run = self._run
        return (
            run is not None
            and run.thread is not None
            and run.thread.is_alive()
            and not run.ended.is_set()
        )

    # ------------------------------------------------------------------ sessions
    def _serve_forever(self) -> None:
        while not self._stop.is_set():
            connection = self.link.accept(self._stop)
            if connection is None:
                return
            self.sessions += 1
            self._connection = connection
            try:
                self._serve(connection)
            except _SessionEndedError:
                pass
            finally:
                self._end_run(silent=True)
                self._connection = None
                if not self._stop.is_set():
                    connection.close()

    def _serve(self, connection: Connection) -> None:
        buf = bytearray()
        script: list[str] | None = None  # lines of a script being received
        discard = False  # receiving a script that will be refused (device busy)
        while not self._stop.is_set():
            if self.link.takeover_pending():
                return
            try:
                buf += connection.recv(0.05)
            except LinkClosedError:
                return
            if self._drop_requested.is_set():
                self._drop_requested.clear()
                self.link.drop(connection)
                return
            while (newline := buf.find(b"\n")) >= 0:
                raw = bytes(buf[:newline]).rstrip(b"\r")
                del buf[: newline + 1]
                text = raw.decode("ascii", "replace")
                if script is not None:
                    if text.strip():
                        script.append(text)
                        continue
                    if not discard:
                        self._start_script(connection, script)
                    script, discard = None, False
                    continue
                command = text.strip()
                if not command:
                    continue
                if command == "e":
                    script, discard = [], self.busy
                    if discard:
                        self._reply(connection, b"e!%04X\n" % ERR_WRONG_STATE, "e")
                elif command == "t":
                    reply = f"t{self.firmware}\n#voltloop simulated potentiostat*\n"
                    self._reply(connection, reply.encode("ascii"), "t")
                elif command == "Z":
                    self._abort(connection)
                else:
                    self._reply(connection, b"!%04X\n" % ERR_UNKNOWN_COMMAND, command)
            if len(buf) > MAX_LINE_BYTES:
                buf.clear()

    def _send(self, connection: Connection, data: bytes) -> None:
        with self._out_lock:
            connection.send(data)

    def _reply(self, connection: Connection, reply: bytes, context: str) -> None:
        """Send a single reply through the fault plan (like the cycler's replies)."""
        plan = self.faults.plan(reply, context) if self.faults else ReplyPlan(reply)
        if plan.delay_s and self._stop.wait(plan.delay_s):
            raise _SessionEndedError
        if plan.send:
            try:
                self._send(connection, plan.send)
            except LinkClosedError:
                raise _SessionEndedError from None
        if plan.reset:  # the device restarts: a running script is lost, the link stays
            self._end_run(silent=True)
        if plan.disconnect:
            self._end_run(silent=True)
            self.link.drop(connection)
            raise _SessionEndedError

    # ------------------------------------------------------------------ scripts
    def _abort(self, connection: Connection) -> None:
        with self._run_lock:
            run = self._run
        if run is None or run.thread is None or not run.thread.is_alive():
            self._reply(connection, b"Z!%04X\n" % ERR_WRONG_STATE, "Z")
            return
        self._reply(connection, b"Z\n", "Z")
        run.abort.set()

    def _end_run(self, *, silent: bool, timeout_s: float = 5.0) -> None:
        with self._run_lock:
            run = self._run
        if run is None or run.thread is None:
            return
        run.silent = run.silent or silent
        run.abort.set()
        if run.thread is not threading.current_thread():
            run.thread.join(timeout_s)

    def _start_script(self, connection: Connection, lines: list[str]) -> None:
        try:
            program = parse_script(lines, self.limits)
        except ScriptError as exc:
            self._reply(connection, b"e\n" + exc.line() + b"\n", "e")
            return
        run = _ScriptRun(program)
        run.thread = threading.Thread(
            target=self._execute, args=(connection, run), name="potentiostat-script", daemon=True
        )
        with self._run_lock:
            self._run = run
        self.scripts_run += 1
        run.thread.start()

    def _stream_fault(self, program: Program) -> tuple[FaultKind | None, int]:
        if self.faults is None:
            return None, -1
        kind = self.faults.decide("e")
        if kind not in _STREAM_FAULTS:
            return None, -1
        index = self.faults.pick(range(max(1, program.expected_lines())))
        return kind, int(index or 0)

    def _execute(self, connection: Connection, run: _ScriptRun) -> None:
        """Worker: run the script, pacing by ``speed``, applying at most one fault."""
        ctx = DeviceContext(
            limits=self.limits,
            channel=lambda: self.lab.potentiostat_channel,
            impedance=self.lab.impedance,
            open_circuit_voltage=self.lab.open_circuit_voltage,
            current_limit_A=self.current_limit_A,
        )
        fault, fault_at = self._stream_fault(run.program)
        output = run_script(run.program, ctx)
        open_loops = 0
        sent = 0
        echo_pending = True
        try:
            while True:
                try:
                    wait, line = next(output)
                except StopIteration:
                    return
                except ScriptError as exc:  # runtime error: report it and end the output
                    prefix = b"e\n" if echo_pending else b""
                    run.ended.set()
                    self._send(connection, prefix + exc.line() + b"\n")
                    return
                if echo_pending and not (wait == 0 and line):
                    self._send(connection, b"e\n")
                    echo_pending = False
                if wait > 0 and self.speed is not None and run.abort.wait(wait / self.speed):
                    break
                if run.abort.is_set() or self._stop.is_set():
                    break
                if not line:
                    continue
                if line.startswith(b"M"):
                    open_loops += 1
                elif line == b"*\n":
                    open_loops -= 1
                if fault is not None and sent == fault_at:
                    line = self._apply_stream_fault(fault, connection, run, line)
                    if line is None:
                        return
                if echo_pending:
                    line, echo_pending = b"e" + line, False
                if line == b"\n" and open_loops <= 0:  # the end line: the device is idle
                    run.ended.set()
                self._send(connection, line)
                sent += 1
            output.close()  # aborted: the on_finished block (cell_off) runs first
            if not run.silent:  # aborted by Z: close the open loops, end the output
                run.ended.set()
                self._send(connection, b"*\n" * max(open_loops, 0) + b"\n")
        except LinkClosedError:
            return
        finally:
            run.ended.set()
            output.close()  # runs the script's on_finished block (cell_off)

    def _apply_stream_fault(
        self, fault: FaultKind, connection: Connection, run: _ScriptRun, line: bytes
    ) -> bytes | None:
        """The faulted version of ``line``; None = the output ends here."""
        assert self.faults is not None
        log.debug("potentiostat fault %s on %r", fault, line)
        if fault is FaultKind.DELAY:
            run.abort.wait(self.faults.delay_s)
            return line
        if fault is FaultKind.GARBLE:
            return self.faults.garble(line)
        if fault is FaultKind.PARTIAL:
            self._send(connection, self.faults.truncate(line))
            return None
        if fault is FaultKind.DISCONNECT:  # the session thread drops the link (not mid-recv)
            run.silent = True
            self._drop_requested.set()
            return None
        # DROP (silent from here) and RESET (device restarts; the session is lost)
        run.silent = True
        return None


#: The name drivers/sim/serve.py looks up.
PotentiostatServer = SimulatedPotentiostatServer
