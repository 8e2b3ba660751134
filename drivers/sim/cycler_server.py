"""Simulated multichannel cycler: docs/protocols/cycler.md over TCP or a pty.

:class:`CyclerServer` translates bytes into :class:`~voltloop.drivers.sim.virtual_lab.VirtualLab`
calls and holds no physics; the lab advances on its own clock thread. The server
keeps only *session* state (error queue, staged schedules), which a new session, ``*RST``
or the ``reset`` fault clears while channels keep running. Faults come from a
:class:`~voltloop.drivers.sim.faults.FaultInjector`, applied per message. Instrument
limits are enforced at upload (:func:`~voltloop.drivers.sim.cycler_scpi.check_protocol_limits`);
the command language itself (headers, framing, error codes) is in
:mod:`voltloop.drivers.sim.cycler_scpi`.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid

import numpy as np
from aurora_unicycler import CyclingProtocol
from pydantic import ValidationError

from voltloop.drivers.checksum import crc32
from voltloop.drivers.records import SAMPLE_DTYPE
from voltloop.drivers.sim.cycler_scpi import (
    DEFAULT_MAX_BATCH,
    ERROR_TEXT,
    MAX_MESSAGE_BYTES,
    CyclerSession,
    ScpiError,
    StagedSchedule,
    check_protocol_limits,
    decode_block,
    next_message,
    parse_header,
)
from voltloop.drivers.sim.faults import FaultInjector, FaultKind, ReplyPlan
from voltloop.drivers.sim.links import (
    Connection,
    Gather,
    Link,
    LinkClosedError,
    as_bytes,
    make_link,
)
from voltloop.drivers.sim.virtual_lab import ChannelState, VirtualLab
from voltloop.drivers.transport import quote, split_fields

log = logging.getLogger(__name__)

_LAB_FAULT_KIND = {
    FaultKind.CHANNEL_FAULT: "hardware",
    FaultKind.OVER_TEMPERATURE: "over_temperature",
}


def _fmt(x: float) -> str:
    return repr(float(x))


class CyclerServer:
    """Serves one :class:`VirtualLab` as a cycler on a TCP or pty link, in a thread."""

    def __init__(
        self,
        lab: VirtualLab,
        *,
        link: str | Link = "tcp",
        faults: FaultInjector | None = None,
        identity: tuple[str, str, str, str] | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.lab = lab
        down_s = faults.down_s if faults is not None else 0.2
        self.link = make_link(link, name="cycler", down_s=down_s) if isinstance(link, str) else link
        self.faults = faults
        self.identity = identity or ("VOLTLOOP", f"VLC-{lab.channel_count}", "SIM00001", "1.0.0")
        self.max_batch = max_batch
        self.sessions = 0
        self.url = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Connection | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        self.url = self.link.start()
        self._thread = threading.Thread(
            target=self._run, name=f"cycler-server {self.url}", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._connection is not None:
            self._connection.close()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.link.close()

    def __enter__(self) -> CyclerServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            connection = self.link.accept(self._stop)
            if connection is None:
                return
            self.sessions += 1
            self._connection = connection
            try:
                self._serve(connection, CyclerSession())
            finally:
                self._connection = None
                if not self._stop.is_set():
                    connection.close()

    def _serve(self, connection: Connection, session: CyclerSession) -> None:
        buf = bytearray()
        while not self._stop.is_set():
            try:
                buf += connection.recv(0.1)
            except LinkClosedError:
                return
            while (message := next_message(buf)) is not None:
                if not message.strip():
                    continue
                context, reply = self._interpret(message, session)
                plan = self.faults.plan(reply, context) if self.faults else ReplyPlan(reply)
                if plan.delay_s and self._stop.wait(plan.delay_s):
                    return
                if plan.send:
                    try:
                        connection.send(plan.send)
                    except LinkClosedError:
                        return
                if plan.lab_fault is not None:
                    self._inject_lab_fault(plan.lab_fault)
                if plan.reset:
                    session.clear()
                    self.lab.reset()
                    buf.clear()
                if plan.disconnect:
                    self.link.drop(connection)
                    return
            if len(buf) > MAX_MESSAGE_BYTES + 64:
                buf.clear()
                session.push_error(-363, ERROR_TEXT[-363])
            if not buf and self.link.takeover_pending():
                return  # a new host connected: it takes over the instrument

    def _inject_lab_fault(self, kind: FaultKind) -> None:
        running = [
            ch
            for ch in range(self.lab.channel_count)
            if self.lab.status(ch).state is ChannelState.RUNNING
        ]
        channel = self.faults.pick(running) if self.faults else None
        if channel is not None:
            self.lab.inject_fault(channel, _LAB_FAULT_KIND[kind])

    # ------------------------------------------------------------------ interpreter
    def interpret(self, message: bytes, session: CyclerSession) -> tuple[str, bytes | None]:
        """Execute one message; returns (its header for fault matching, reply bytes or None).

        Errors are queued in ``session``; a failing query sends no reply.
        """
        header, reply = self._interpret(message, session)
        return header, None if reply is None else as_bytes(reply)

    def _interpret(
        self, message: bytes, session: CyclerSession
    ) -> tuple[str, bytes | Gather | None]:
        """:meth:`interpret`, with a block reply left as its parts (:class:`Gather`)."""
        head, _, rest = message.partition(b" ")
        try:
            header = head.decode("ascii")
        except UnicodeDecodeError:
            session.push_error(-101, ERROR_TEXT[-101])
            return "", None
        try:
            command, channel = parse_header(header)
            reply = self._execute(command, channel, rest, session)
        except ScpiError as err:
            session.push_error(err.code, err.message)
            return header, None
        except Exception as exc:  # noqa: BLE001 - an instrument never dies of one command
            log.exception("cycler server: %s failed", header)
            session.push_error(-300, f"{ERROR_TEXT[-300]}; {type(exc).__name__}: {exc}")
            return header, None
        if isinstance(reply, str):
            return header, reply.encode("ascii") + b"\n"
        return header, reply

    def _params(self, raw: bytes, at_least: int, at_most: int) -> list[str]:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ScpiError(-101) from exc
        try:
            params = split_fields(text) if text.strip() else []
        except ValueError as exc:
            raise ScpiError(-102, str(exc)) from exc
        if len(params) < at_least:
            raise ScpiError(-109)
        if len(params) > at_most:
            raise ScpiError(-108)
        return params

    def _int(self, text: str, name: str, minimum: int = 0) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise ScpiError(-102, f"{name} must be an integer, got {text!r}") from exc
        if value < minimum:
            raise ScpiError(-222, f"{name} {value} < {minimum}")
        return value

    def _channel(self, channel: int | None) -> int:
        assert channel is not None
        if not 0 <= channel < self.lab.channel_count:
            raise ScpiError(-222, f"channel {channel} (channels 0-{self.lab.channel_count - 1})")
        return channel

    def _execute(
        self, command: str, channel: int | None, rest: bytes, session: CyclerSession
    ) -> str | bytes | Gather | None:
        if command == "FETC?":
            return self._fetch(self._params(rest, 3, 1 + 2 * self.lab.channel_count))
        if command != "CHAN:SCH":
            params = self._params(rest, 0, 2)
        match command:
            case "*IDN?":
                return ",".join(self.identity)
            case "*RST":
                session.clear()
                self.lab.reset()
                return None
            case "*CLS":
                session.errors.clear()
                return None
            case "*OPC?":
                return "1"
            case "*TST?":
                return self._self_test(session)
            case "SYST:ERR?" | "SYST:ERR:NEXT?":
                code, text = session.pop_error()
                return f"{code},{quote(text)}"
            case "SYST:LIM?":
                lim = self.lab.limits
                return ",".join(
                    [
                        str(self.lab.channel_count),
                        _fmt(lim.max_current_A),
                        _fmt(lim.min_voltage_V),
                        _fmt(lim.max_voltage_V),
                        _fmt(lim.max_temperature_C),
                        str(lim.max_steps),
                        str(self.max_batch),
                    ]
                )
            case "SYST:SYNC?":
                if len(params) != 1:
                    raise ScpiError(-109 if not params else -108)
                return str(self._int(params[0], "token"))
            case "CHAN:SCH":
                self._upload(self._channel(channel), rest, session)
                return None
            case "CHAN:STAR":
                if len(params) != 1:
                    raise ScpiError(-109 if not params else -108)
                self._start(self._channel(channel), params[0], session)
                return None
            case "CHAN:STAT?":
                return self._status(self._channel(channel))
            case "CHAN:DATA?":
                return self._data(self._channel(channel), params)
            case "CHAN:STOP":
                ch = self._channel(channel)
                if self.lab.status(ch).state in (ChannelState.RUNNING, ChannelState.WAITING_EIS):
                    self.lab.stop(ch)
                return None
            case "CHAN:RES":
                ch = self._channel(channel)
                state = self.lab.status(ch).state
                if state is not ChannelState.WAITING_EIS:
                    raise ScpiError(-221, f"channel {ch} is {state.value}, not waiting_eis")
                self.lab.resume(ch)
                return None
        raise ScpiError(-113, command)

    def _self_test(self, session: CyclerSession) -> str:
        failed = False
        for ch in range(self.lab.channel_count):
            status = self.lab.status(ch)
            if status.state is ChannelState.FAULT:
                failed = True
                session.push_error(
                    -330, f"{ERROR_TEXT[-330]}; channel {ch} in fault: {status.reason or ''}"
                )
        return "1" if failed else "0"

    def _upload(self, channel: int, raw: bytes, session: CyclerSession) -> None:
        data = decode_block(raw.strip(b" "))
        try:
            payload = json.loads(data.decode("utf-8"))
            experiment_id = payload["experiment_id"]
            protocol_obj = payload["protocol"]
            max_temperature_C = payload.get("max_temperature_C")
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ScpiError(-161, f"schedule block is not the documented JSON: {exc}") from exc
        try:
            experiment_id = str(uuid.UUID(str(experiment_id)))
        except ValueError as exc:
            raise ScpiError(-224, f"experiment_id {experiment_id!r} is not a UUID") from exc
        if isinstance(protocol_obj, dict) and "voltloop" in protocol_obj:
            # voltloop's safety block may also travel inside the protocol (program.py)
            protocol_obj = dict(protocol_obj)
            extra = protocol_obj.pop("voltloop") or {}
            if max_temperature_C is None and isinstance(extra, dict):
                max_temperature_C = extra.get("max_temperature_C")
        try:
            protocol = CyclingProtocol.model_validate(protocol_obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise ScpiError(-224, f"protocol: {loc}: {first['msg']}") from exc
        except (TypeError, ValueError, AttributeError) as exc:  # unicycler's own validators
            raise ScpiError(-224, f"protocol: {type(exc).__name__}: {exc}") from exc
        if max_temperature_C is not None and not isinstance(max_temperature_C, int | float):
            raise ScpiError(-224, f"max_temperature_C {max_temperature_C!r} is not a number")
        check_protocol_limits(protocol, self.lab.limits, max_temperature_C)
        session.staged[channel] = StagedSchedule(
            experiment_id, protocol.model_dump_json(), max_temperature_C
        )

    def _start(self, channel: int, experiment_id: str, session: CyclerSession) -> None:
        try:
            experiment_id = str(uuid.UUID(experiment_id))
        except ValueError as exc:
            raise ScpiError(-224, f"experiment_id {experiment_id!r} is not a UUID") from exc
        status = self.lab.status(channel)
        if status.experiment_id == experiment_id:
            return  # idempotent on the experiment UUID
        if status.state in (ChannelState.RUNNING, ChannelState.WAITING_EIS):
            raise ScpiError(-213, f"channel {channel} busy with experiment {status.experiment_id}")
        if status.state is ChannelState.EMPTY:
            raise ScpiError(-241, f"channel {channel} has no cell")
        if status.state is ChannelState.FAULT:
            raise ScpiError(-240, f"channel {channel} in fault: {status.reason or ''}")
        staged = session.staged.get(channel)
        if staged is None or staged.experiment_id != experiment_id:
            raise ScpiError(-221, f"no schedule staged for {experiment_id} on channel {channel}")
        protocol_json = staged.protocol_json
        if staged.max_temperature_C is not None:  # enforced on-instrument by the lab
            data = json.loads(protocol_json)
            data["voltloop"] = {"max_temperature_C": staged.max_temperature_C}
            protocol_json = json.dumps(data)
        try:
            self.lab.start(channel, protocol_json, experiment_id)
        except ValueError as exc:
            raise ScpiError(-200, str(exc)) from exc
        del session.staged[channel]

    def _status(self, channel: int) -> str:
        s = self.lab.status(channel)
        return ",".join(
            [
                s.state.value,
                quote(s.experiment_id or ""),
                str(s.cycle),
                str(s.step),
                str(s.record_count),
                _fmt(s.t_s),
                quote(s.cell_id or ""),
                quote(s.reason or ""),
            ]
        )

    def _data(self, channel: int, params: list[str]) -> Gather:
        if not params:
            raise ScpiError(-109, "DATA? <since>[,<max>]")
        since = self._int(params[0], "since")
        limit = self._int(params[1], "max", 1) if len(params) > 1 else self.max_batch
        return self.data_reply(channel, since, limit)

    def _records(self, channel: int, since: int, limit: int) -> tuple[str, np.ndarray]:
        """(experiment UUID or ``""``, contiguous ``SAMPLE_DTYPE`` rows ≥ ``since``)."""
        status = self.lab.status(channel)
        if status.experiment_id is None:
            return "", np.zeros(0, dtype=SAMPLE_DTYPE)
        records = self.lab.records(channel, since, min(limit, self.max_batch))
        return status.experiment_id, np.ascontiguousarray(records, dtype=SAMPLE_DTYPE)

    def data_reply(self, channel: int, since: int, limit: int) -> Gather:
        """The full ``DATA?`` reply (prefix, block, terminator) for ``since``/``limit``,
        as its parts (the rows are not copied)."""
        experiment_id, records = self._records(channel, since, limit)
        payload = memoryview(records).cast("B")  # the rows' raw little-endian bytes
        head = f"{quote(experiment_id)},{since},{len(records)},{crc32(payload):08X},"
        return _block_message(head, [payload])

    def _fetch(self, params: list[str]) -> Gather:
        """``FETCh? <max>,<channel>,<since>[,<channel>,<since>…]``: ``DATA?`` for several
        channels in one reply (docs/protocols/cycler.md §4.7)."""
        if len(params) % 2 != 1:
            raise ScpiError(-109, "FETCh? <max>,<channel>,<since>[,<channel>,<since>...]")
        limit = self._int(params[0], "max", 1)
        wanted: list[tuple[int, int]] = []
        seen: set[int] = set()
        for ch_text, since_text in zip(params[1::2], params[2::2], strict=True):
            channel = self._channel(self._int(ch_text, "channel"))
            if channel in seen:
                raise ScpiError(-224, f"channel {channel} given twice")
            seen.add(channel)
            wanted.append((channel, self._int(since_text, "since")))
        return self.fetch_reply(wanted, limit)

    def fetch_reply(self, wanted: list[tuple[int, int]], limit: int) -> Gather:
        """The full ``FETCh?`` reply for (channel, since) pairs, each at most ``limit``
        rows: one header per channel, one CRC over the rows of all channels in order."""
        fields = [str(len(wanted))]
        payloads: list[memoryview] = []
        crc = 0
        for channel, since in wanted:
            experiment_id, records = self._records(channel, since, limit)
            payload = memoryview(records).cast("B")
            crc = crc32(payload, crc)
            payloads.append(payload)
            fields += [quote(experiment_id), str(since), str(len(records))]
        return _block_message(",".join(fields) + f",{crc:08X},", payloads)


def _block_message(head: str, payloads: list[memoryview]) -> Gather:
    """``<head>#<n><len><payloads…>\n`` as its parts: the payloads are not copied (a
    TCP link gathers them into one ``sendmsg``)."""
    length = str(sum(p.nbytes for p in payloads))
    return Gather([f"{head}#{len(length)}{length}".encode("ascii"), *payloads, b"\n"])
