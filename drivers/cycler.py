"""Host driver for the SCPI-style multichannel cycler of docs/protocols/cycler.md.

:class:`CyclerDriver` satisfies :class:`voltloop.drivers.interfaces.Cycler`. Recovery
rules (docs/decisions/0041):

* every command that can fail is followed by ``SYST:ERR?`` until ``0,"No error"``; the
  first queued error is raised as :class:`InstrumentError` with its SCPI code;
* queries that change nothing (``*IDN?``, ``STAT?``, ``DATA?``, …) are retried by the
  transport after timeouts, garbage and disconnects;
* commands are not blindly resent; ``start`` and ``resume`` find out what happened
  from ``STAT?`` (the instrument's state is the truth), ``stop`` and ``reset`` are
  idempotent and simply repeated;
* after a timeout the link is resynchronised (``*CLS`` + ``SYST:SYNC? <token>``) so a
  late reply is never read as the answer to the next query;
* ``fetch`` checks every record block (CRC-32, length, contiguous record indices) and
  asks again for a bad one; records come back exactly once for a host that asks from
  the next index it has not stored.
"""

from __future__ import annotations

import functools
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import numpy as np
from aurora_unicycler import CyclingProtocol

from voltloop.drivers.errors import (
    Disconnected,
    DriverInputError,
    InstrumentError,
    ProtocolError,
    TransportTimeout,
)
from voltloop.drivers.interfaces import (
    ChannelState,
    CyclerChannelStatus,
    CyclerLimits,
    InstrumentIdentity,
    InstrumentKind,
    RecordBatch,
    SelfTestResult,
    StartOutcome,
)
from voltloop.drivers.record_replies import decode_batch, decode_sweep
from voltloop.drivers.records import empty_records
from voltloop.drivers.transport import Transcript, Transport, split_fields

LINK_ERRORS = (TransportTimeout, ProtocolError, Disconnected)
_ERROR_QUEUE_DEPTH = 16

P = ParamSpec("P")
R = TypeVar("R")


def _exclusive(method: Callable[P, R]) -> Callable[P, R]:
    """One public call at a time per driver: a command and its ``SYST:ERR?`` drain must
    not interleave with another thread's exchange."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return wrapper


def _protocol_dict(protocol: CyclingProtocol | dict[str, Any] | str) -> dict[str, Any]:
    """Validate any accepted protocol form and return its JSON-ready dict
    (DriverInputError, before anything is sent, if it is not a valid protocol)."""
    try:
        if isinstance(protocol, CyclingProtocol):
            model = protocol
        elif isinstance(protocol, str):
            model = CyclingProtocol.model_validate_json(protocol)
        else:
            model = CyclingProtocol.model_validate(protocol)
    except (TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise DriverInputError(f"not a valid aurora_unicycler protocol: {exc}") from exc
    return model.model_dump(mode="json")


class CyclerDriver:
    """Driver for one multichannel cycler at ``url`` (pty path, port or socket://)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
        transcript: Transcript | None = None,
        transport: Transport | None = None,
        sync_seed: int | None = None,
    ) -> None:
        if transport is None:
            transport = Transport(url, timeout_s=timeout_s, retries=retries, transcript=transcript)
        if transport.resync is None:
            transport.resync = self._resync
        self.transport = transport
        self.url = transport.url
        self.retries = transport.retries
        self._limits: CyclerLimits | None = None
        self._tokens = random.Random(sync_seed)  # SYST:SYNC? tokens
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ plumbing
    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> CyclerDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _resync(self, transport: Transport) -> None:
        """Clear the error queue and wait for a fresh token echo, skipping stale replies."""
        token = self._tokens.randrange(1, 2**31)
        transport.write(f"\n*CLS\nSYST:SYNC? {token}\n".encode("ascii"))
        deadline = time.monotonic() + transport.timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                if transport.read_line(remaining) == str(token):
                    return
            except ProtocolError:
                continue  # stale binary or garbled bytes: keep looking for the token
        raise TransportTimeout("no answer to SYST:SYNC? while resynchronising", url=self.url)

    def _query(self, command: str) -> str:
        return self.transport.query(command, idempotent=True)

    def _drain_errors(self, command: str) -> None:
        """``SYST:ERR?`` until ``0``; raise the first queued error."""
        errors: list[tuple[int, str]] = []
        for _ in range(_ERROR_QUEUE_DEPTH + 1):
            code, message = self._parse_error(self.transport.query("SYST:ERR?"))
            if code == 0:
                break
            errors.append((code, message))
        if errors:
            code, message = errors[0]
            if len(errors) > 1:
                message += " (also: " + "; ".join(f"{c} {m}" for c, m in errors[1:]) + ")"
            raise InstrumentError(code, message, command=command, url=self.url)

    def _parse_error(self, line: str) -> tuple[int, str]:
        try:
            code_text, message = split_fields(line)
            return int(code_text), message
        except ValueError as exc:
            raise ProtocolError(f"bad SYST:ERR? reply {line!r}", url=self.url) from exc

    def _command(self, command: str, block: bytes | None = None) -> None:
        self.transport.command(command, block)
        self._drain_errors(command)

    def _repeatable_command(self, command: str) -> None:
        """A command that is safe to send twice: repeat it after a link error."""
        for attempt in range(self.retries + 1):
            try:
                self._command(command)
                return
            except LINK_ERRORS:
                if attempt == self.retries:
                    raise

    def _check_channel(self, channel: int) -> None:
        if channel < 0:
            raise DriverInputError(f"channel must be >= 0, got {channel}")
        if self._limits is not None and channel >= self._limits.channels:
            last = self._limits.channels - 1
            raise DriverInputError(f"channel {channel} out of range: {self.url} has 0-{last}")

    # ------------------------------------------------------------------ identity
    @_exclusive
    def identify(self) -> InstrumentIdentity:
        fields = split_fields(self._query("*IDN?"))
        if len(fields) != 4:
            raise ProtocolError(f"*IDN? reply has {len(fields)} fields, expected 4", url=self.url)
        maker, model, serial, firmware = fields
        return InstrumentIdentity(
            kind=InstrumentKind.CYCLER,
            maker=maker,
            model=model,
            serial=serial,
            firmware=firmware,
            url=self.url,
        )

    @_exclusive
    def limits(self) -> CyclerLimits:
        """``SYST:LIM?`` (asked once, then cached)."""
        if self._limits is None:
            fields = split_fields(self._query("SYST:LIM?"))
            try:
                channels, max_i, min_v, max_v, max_t, max_steps, max_batch = fields
                self._limits = CyclerLimits(
                    channels=int(channels),
                    max_current_A=float(max_i),
                    min_voltage_V=float(min_v),
                    max_voltage_V=float(max_v),
                    max_temperature_C=float(max_t),
                    max_steps=int(max_steps),
                    max_batch=int(max_batch),
                )
            except ValueError as exc:
                raise ProtocolError(f"bad SYST:LIM? reply {fields!r}: {exc}", url=self.url) from exc
        return self._limits

    @_exclusive
    def self_test(self) -> SelfTestResult:
        """``*TST?``; a failure collects the queued −330 messages."""
        reply = self._query("*TST?")
        try:
            code = int(reply)
        except ValueError as exc:
            raise ProtocolError(f"bad *TST? reply {reply!r}", url=self.url) from exc
        messages: list[str] = []
        if code != 0:
            for _ in range(_ERROR_QUEUE_DEPTH + 1):
                err, message = self._parse_error(self.transport.query("SYST:ERR?"))
                if err == 0:
                    break
                messages.append(f"{err},{message}")
        return SelfTestResult(passed=code == 0, code=code, messages=tuple(messages))

    # ------------------------------------------------------------------ channels
    @_exclusive
    def status(self, channel: int) -> CyclerChannelStatus:
        self._check_channel(channel)
        line = self._query(f"CHAN{channel}:STAT?")
        try:
            state, exp, cycle, step, count, t_s, cell, reason = split_fields(line)
            return CyclerChannelStatus(
                channel=channel,
                state=ChannelState(state),
                experiment_id=uuid.UUID(exp) if exp else None,
                cycle=int(cycle),
                step=int(step),
                record_count=int(count),
                t_s=float(t_s),
                cell_id=cell or None,
                reason=reason or None,
            )
        except ValueError as exc:
            raise ProtocolError(f"bad STAT? reply {line!r}: {exc}", url=self.url) from exc

    @_exclusive
    def start(
        self,
        channel: int,
        protocol: CyclingProtocol | dict[str, Any] | str,
        experiment_id: uuid.UUID | str,
        *,
        max_temperature_C: float | None = None,
    ) -> StartOutcome:
        """Upload (``CHAN<n>:SCH``) and start (``CHAN<n>:STAR``); idempotent on the UUID."""
        self._check_channel(channel)
        try:
            exp = uuid.UUID(str(experiment_id))
        except ValueError as exc:
            raise DriverInputError(f"experiment_id {experiment_id!r} is not a UUID") from exc
        payload = json.dumps(
            {
                "experiment_id": str(exp),
                "protocol": _protocol_dict(protocol),
                "max_temperature_C": max_temperature_C,
            },
            separators=(",", ":"),
        ).encode("utf-8")
        if self.status(channel).experiment_id == exp:
            return StartOutcome.ALREADY_RUNNING
        attempts = 1 + max(1, self.retries)  # at least one re-upload after a reset
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                self._command(f"CHAN{channel}:SCH", block=payload)
                self._command(f'CHAN{channel}:STAR "{exp}"')
                return StartOutcome.STARTED
            except InstrumentError as err:
                # -221: the staged schedule was lost (instrument reset): upload again
                if err.code != -221 or last:
                    raise
            except LINK_ERRORS:
                if self.status(channel).experiment_id == exp:
                    return StartOutcome.STARTED
                if last:
                    raise
        raise AssertionError("unreachable")

    @_exclusive
    def stop(self, channel: int) -> None:
        self._check_channel(channel)
        self._repeatable_command(f"CHAN{channel}:STOP")

    @_exclusive
    def resume(self, channel: int) -> None:
        """Continue after an EIS checkpoint; checks ``STAT?`` if the link failed."""
        self._check_channel(channel)
        for attempt in range(self.retries + 1):
            try:
                self._command(f"CHAN{channel}:RES")
                return
            except LINK_ERRORS:
                if self.status(channel).state is not ChannelState.WAITING_EIS:
                    return  # the resume went through
                if attempt == self.retries:
                    raise

    @_exclusive
    def reset(self) -> None:
        """``*RST``: clears the session (errors, staged schedules); channels keep running."""
        self._repeatable_command("*RST")

    # ------------------------------------------------------------------ records
    def _check_experiment(
        self, channel: int, seen: uuid.UUID | None, expected: uuid.UUID | None
    ) -> None:
        if expected is not None and seen is not None and seen != expected:
            raise InstrumentError(
                -221,
                f"Settings conflict; channel {channel} holds experiment {seen}, not {expected}",
                command=f"CHAN{channel}:DATA?",
                url=self.url,
            )

    @_exclusive
    def fetch(
        self,
        channel: int,
        since: int,
        *,
        experiment_id: uuid.UUID | str | None = None,
        limit: int | None = None,
    ) -> RecordBatch:
        """Records with index ≥ ``since``: everything available (in batches of the
        instrument's ``max_batch``), or at most ``limit``.

        With ``experiment_id``, raises InstrumentError (−221) if the channel now holds
        another experiment, so records of two experiments are never mixed.
        """
        self._check_channel(channel)
        if since < 0:
            raise DriverInputError(f"since must be >= 0, got {since}")
        expected = uuid.UUID(str(experiment_id)) if experiment_id is not None else None
        max_batch = self.limits().max_batch
        parts: list[np.ndarray] = []
        seen: uuid.UUID | None = None
        index, total = since, 0
        while limit is None or total < limit:
            want = max_batch if limit is None else min(max_batch, limit - total)
            at = index
            seen, records = self.transport.query_block(
                f"CHAN{channel}:DATA? {at},{want}",
                idempotent=True,
                check=lambda reply, at=at: decode_batch(reply, at, self.url),
            )
            self._check_experiment(channel, seen, expected)
            parts.append(records)
            index += len(records)
            total += len(records)
            if len(records) < want:
                break
        if len(parts) == 1:
            records = parts[0]
        else:
            records = np.concatenate(parts) if parts else empty_records()
        return RecordBatch(channel=channel, experiment_id=seen, since=since, records=records)

    @_exclusive
    def fetch_many(
        self,
        since: Mapping[int, int],
        *,
        experiment_ids: Mapping[int, uuid.UUID | str] | None = None,
    ) -> dict[int, RecordBatch]:
        """:meth:`fetch` for several channels with one ``FETC?`` round trip per
        ``max_batch`` rows (docs/protocols/cycler.md §4.7): everything available with
        index ≥ ``since[channel]``, per channel. Same checks and guarantees as
        :meth:`fetch` (CRC-32 over the whole block, contiguous indices per channel, an
        idempotent query asked again after a bad reply, −221 if a channel in
        ``experiment_ids`` now holds another experiment)."""
        expected: dict[int, uuid.UUID] = {}
        for channel, index in since.items():
            self._check_channel(channel)
            if index < 0:
                raise DriverInputError(f"since must be >= 0, got {index} for channel {channel}")
        for channel, exp in (experiment_ids or {}).items():
            try:
                expected[channel] = uuid.UUID(str(exp))
            except ValueError as exc:
                raise DriverInputError(f"experiment_id {exp!r} is not a UUID") from exc
        if not since:
            return {}
        max_batch = self.limits().max_batch
        parts: dict[int, list[np.ndarray]] = {channel: [] for channel in since}
        seen: dict[int, uuid.UUID | None] = dict.fromkeys(since)
        pending = dict(since)
        while pending:
            wanted = list(pending.items())
            args = ",".join(f"{channel},{index}" for channel, index in wanted)
            replies = self.transport.query_block(
                f"FETC? {max_batch},{args}",
                idempotent=True,
                check=lambda reply, wanted=wanted: decode_sweep(reply, wanted, self.url),
            )
            for (channel, index), (exp, records) in zip(wanted, replies, strict=True):
                self._check_experiment(channel, exp, expected.get(channel))
                seen[channel] = exp
                parts[channel].append(records)
                if len(records) < max_batch:
                    del pending[channel]
                else:
                    pending[channel] = index + len(records)
        out: dict[int, RecordBatch] = {}
        for channel, chunks in parts.items():
            records = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
            out[channel] = RecordBatch(
                channel=channel, experiment_id=seen[channel], since=since[channel], records=records
            )
        return out
