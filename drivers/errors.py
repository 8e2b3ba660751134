"""Typed errors of instrument communication.

Every error a driver raises to its caller is one of these, so the orchestrator can
tell "the instrument said no" (:class:`InstrumentError`) from "the bytes did not
arrive" (:class:`TransportTimeout`), "the bytes were wrong" (:class:`ProtocolError`)
and "the link is gone" (:class:`Disconnected`). Each carries ``exit_code = 1`` so the
command line prints its message without a traceback (docs/decisions/0001).
"""

from __future__ import annotations


class InstrumentCommunicationError(Exception):
    """Base class of every driver error; names the instrument (URL) in its message."""

    exit_code = 1

    def __init__(self, message: str, *, url: str | None = None) -> None:
        self.url = url
        super().__init__(f"{url}: {message}" if url else message)


class TransportTimeout(InstrumentCommunicationError, TimeoutError):  # noqa: N818 - named in the spec
    """No complete reply (or no write completion) within the bounded timeout."""


class ProtocolError(InstrumentCommunicationError):
    """Bytes arrived but do not form a valid reply: garbled, partial, bad block or CRC."""


class Disconnected(InstrumentCommunicationError, ConnectionError):  # noqa: N818 - named in the spec
    """The link is gone: port unplugged, pty closed, TCP connection reset or refused."""


class InstrumentError(InstrumentCommunicationError):
    """The instrument refused a command; carries the SCPI error code and message.

    ``code`` follows SCPI: −1xx command, −2xx execution, −3xx device, −4xx query
    errors (docs/protocols/cycler.md §5). ``command`` is the command that failed.
    """

    def __init__(
        self,
        code: int,
        message: str,
        *,
        command: str | None = None,
        url: str | None = None,
    ) -> None:
        self.code = code
        self.instrument_message = message
        self.command = command
        text = f"instrument error {code}, {message!r}"
        if command:
            text += f" after {command!r}"
        super().__init__(text, url=url)


class DriverInputError(ValueError):
    """A request the driver refuses before sending anything (bad channel, index, UUID)."""

    exit_code = 2
