"""PalmSens MethodSCRIPT: value encoding, script literals and a streaming output parser.

Pure functions and a byte-fed parser, no I/O: the driver (drivers/potentiostat.py)
and the simulated potentiostat (drivers/sim/potentiostat_server.py) both use them.
The scripts voltloop sends are generated in drivers/potentiostat_scripts.py. The wire
protocol is documented in docs/protocols/methodscript.md.

Value encoding (docs §Data packages): a variable is ``<2-letter type><7 hex><prefix>``
with value = (hex − 0x8000000) × prefix factor; NaN is ``"     nan"``.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field

from voltloop.drivers.errors import InstrumentError, ProtocolError

# --------------------------------------------------------------------------------------
# Values: SI prefixes and the 28-bit offset encoding
# --------------------------------------------------------------------------------------

#: SI prefix character → factor. ``i`` marks an integer (factor 1).
SI_PREFIXES: dict[str, float] = {
    "a": 1e-18,
    "f": 1e-15,
    "p": 1e-12,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    " ": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "i": 1.0,
}
#: Decimal exponent of each real SI prefix, finest first (``i`` excluded).
_PREFIX_EXPONENTS: tuple[tuple[str, int], ...] = (
    ("a", -18),
    ("f", -15),
    ("p", -12),
    ("n", -9),
    ("u", -6),
    ("m", -3),
    (" ", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
)
VALUE_OFFSET = 0x8000000  # 2**27
MANTISSA_MIN = -VALUE_OFFSET  # hex 0000000
MANTISSA_MAX = 0xFFFFFFF - VALUE_OFFSET  # hex FFFFFFF
NAN_FIELD = "     nan"  # replaces the 7 hex digits and the prefix


def decode_value(field_text: str) -> float:
    """Decode the 8 characters after the type (7 hex digits + prefix, or ``"     nan"``)."""
    if field_text == NAN_FIELD:
        return math.nan
    if len(field_text) != 8:
        raise ProtocolError(f"variable value {field_text!r} is not 7 hex digits + SI prefix")
    digits, prefix = field_text[:7], field_text[7]
    if not _HEX7.fullmatch(digits):
        raise ProtocolError(f"variable value {field_text!r} has non-hex digits")
    if prefix not in SI_PREFIXES:
        raise ProtocolError(f"variable value {field_text!r} has unknown SI prefix {prefix!r}")
    return (int(digits, 16) - VALUE_OFFSET) * SI_PREFIXES[prefix]


def encode_value(value: float) -> str:
    """Encode ``value`` as 7 hex digits + SI prefix, with the finest prefix that fits.

    NaN becomes ``"     nan"``. Infinite values and values beyond ±1.3e26 raise
    ValueError (the device cannot send them either).
    """
    if math.isnan(value):
        return NAN_FIELD
    if math.isinf(value):
        raise ValueError("MethodSCRIPT cannot encode an infinite value")
    if value == 0:
        return f"{VALUE_OFFSET:07X} "
    for prefix, exponent in _PREFIX_EXPONENTS:
        mantissa = round(value / 10.0**exponent)
        if MANTISSA_MIN <= mantissa <= MANTISSA_MAX:
            return f"{mantissa + VALUE_OFFSET:07X}{prefix}"
    raise ValueError(f"value {value!r} is too large for a MethodSCRIPT variable")


def format_literal(value: float, *, integer: bool = False) -> str:
    """A script literal: integer mantissa + SI prefix, e.g. 0.01 → ``10m``, 100e3 → ``100k``.

    ``integer=True`` gives the count syntax (``61i``). Non-integer mantissas are rounded
    to 9 significant digits in the finest prefix needed; MethodSCRIPT literals carry no
    decimal point in voltloop's scripts.
    """
    if integer:
        if value != int(value):
            raise ValueError(f"integer literal expected, got {value!r}")
        return f"{int(value)}i"
    if not math.isfinite(value):
        raise ValueError(f"cannot write {value!r} as a MethodSCRIPT literal")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    magnitude = float(f"{abs(value):.9g}")
    for prefix, exponent in reversed(_PREFIX_EXPONENTS):
        mantissa = magnitude / 10.0**exponent
        nearest = round(mantissa)
        if nearest >= 1 and abs(mantissa - nearest) <= 1e-9 * max(1.0, mantissa):
            return f"{sign}{nearest}{prefix.strip()}"
    # Not an integer at any prefix: keep 9 significant digits (atto at the finest).
    for prefix, exponent in reversed(_PREFIX_EXPONENTS):
        mantissa = magnitude / 10.0**exponent
        if mantissa >= 1e8 or prefix == "a":
            return f"{sign}{round(mantissa)}{prefix.strip()}"
    raise AssertionError("unreachable")  # pragma: no cover


def parse_literal(text: str) -> float:
    """Inverse of :func:`format_literal` (accepts ``10m``, ``-200m``, ``61i``, ``3``)."""
    match = _LITERAL.fullmatch(text)
    if not match:
        raise ValueError(f"malformed MethodSCRIPT number {text!r}")
    number, prefix = match.group(1), match.group(2) or " "
    return float(number) * SI_PREFIXES[prefix]


_HEX7 = re.compile(r"[0-9A-Fa-f]{7}")
_LITERAL = re.compile(r"([-+]?\d+(?:\.\d+)?)([afpnumkMGTPEi]?)")

# --------------------------------------------------------------------------------------
# Variables, metadata and output events
# --------------------------------------------------------------------------------------


class VarType(enum.StrEnum):
    """The variable type codes voltloop interprets (docs §Data packages)."""

    WE_POTENTIAL = "ab"  # measured WE vs RE potential, V
    WE_CURRENT = "ba"  # measured WE current, A
    PHASE = "ca"  # degrees
    IMPEDANCE = "cb"  # |Z|, ohm
    Z_REAL = "cc"  # ohm
    Z_IMAG = "cd"  # ohm
    SET_POTENTIAL = "da"  # applied potential, V
    SET_CURRENT = "db"  # applied current, A
    SET_FREQUENCY = "dc"  # applied frequency, Hz
    AC_AMPLITUDE = "dd"  # applied AC amplitude, V rms
    TIME = "eb"  # s


class StatusFlag(enum.IntFlag):
    """The status nibble of a variable's ``1X`` metadata."""

    OK = 0
    TIMING_ERROR = 0x1
    OVERLOAD = 0x2
    UNDERLOAD = 0x4
    OVERLOAD_WARNING = 0x8


@dataclass(frozen=True)
class Variable:
    """One variable of a data package. ``type_code`` is the raw 2-letter code."""

    type_code: str
    value: float
    status: StatusFlag | None = None
    range_code: int | None = None
    other_metadata: tuple[str, ...] = ()

    @property
    def var_type(self) -> VarType | None:
        try:
            return VarType(self.type_code)
        except ValueError:
            return None

    def encode(self) -> str:
        text = self.type_code + encode_value(self.value)
        if self.status is not None:
            text += f",1{int(self.status):X}"
        if self.range_code is not None:
            text += f",2{self.range_code:02X}"
        for token in self.other_metadata:
            text += "," + token
        return text


class LoopKind(enum.StrEnum):
    MEASUREMENT = "M"  # ends with '*'
    LOOP = "L"  # ends with '+'
    SCAN = "C"  # ends with '-'


_LOOP_END = {"*": LoopKind.MEASUREMENT, "+": LoopKind.LOOP, "-": LoopKind.SCAN}


@dataclass(frozen=True)
class ScriptAccepted:
    """The ``e`` echo: the device took the script."""


@dataclass(frozen=True)
class AbortAcknowledged:
    """The ``Z`` echo."""


@dataclass(frozen=True)
class LoopBegin:
    kind: LoopKind
    ident: str = ""  # the 4 hex digits after M / C


@dataclass(frozen=True)
class LoopEnd:
    kind: LoopKind


@dataclass(frozen=True)
class DataPackage:
    variables: tuple[Variable, ...]

    def get(self, code: str) -> Variable | None:
        for variable in self.variables:
            if variable.type_code == code:
                return variable
        return None

    def encode(self) -> str:
        return "P" + ";".join(v.encode() for v in self.variables)


@dataclass(frozen=True)
class TextLine:
    text: str


@dataclass(frozen=True)
class ErrorReply:
    code: int
    detail: str = ""
    command: str = ""  # echoed command character ('e', 'Z', ...) or ""

    def to_exception(self, url: str | None = None) -> InstrumentError:
        return InstrumentError(
            self.code,
            self.detail or f"MethodSCRIPT error 0x{self.code:04X}",
            command=self.command or None,
            url=url,
        )


@dataclass(frozen=True)
class ScriptEnd:
    """The empty line that ends a script's output."""


OutputEvent = (
    ScriptAccepted
    | AbortAcknowledged
    | LoopBegin
    | LoopEnd
    | DataPackage
    | TextLine
    | ErrorReply
    | ScriptEnd
)

_TYPE_CODE = re.compile(r"[a-z]{2}")
_ERROR = re.compile(r"!([0-9A-Fa-f]{4})(?::\s*(.*))?")
_LOOP_ID = re.compile(r"[0-9A-Fa-f]{4}")
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def parse_variable(text: str) -> Variable:
    """Parse one ``;``-separated variable of a package (type, value, metadata)."""
    if len(text) < 10:
        raise ProtocolError(f"truncated variable {text!r} in data package")
    code = text[:2]
    if not _TYPE_CODE.fullmatch(code):
        raise ProtocolError(f"bad variable type {code!r} in data package")
    value = decode_value(text[2:10])
    rest = text[10:]
    status: StatusFlag | None = None
    range_code: int | None = None
    others: list[str] = []
    if rest:
        if rest[0] != ",":
            raise ProtocolError(f"junk {rest!r} after the value of variable {text!r}")
        for token in rest[1:].split(","):
            if not token or not all(c in "0123456789abcdefABCDEF" for c in token):
                raise ProtocolError(f"bad metadata {token!r} in variable {text!r}")
            if token[0] == "1":
                if len(token) != 2:
                    raise ProtocolError(f"bad status metadata {token!r} in variable {text!r}")
                status = StatusFlag(int(token[1], 16))
            elif token[0] == "2":
                if len(token) != 3:
                    raise ProtocolError(f"bad range metadata {token!r} in variable {text!r}")
                range_code = int(token[1:], 16)
            else:
                others.append(token)
    return Variable(code, value, status, range_code, tuple(others))


def parse_line(line: str) -> list[OutputEvent]:
    """Classify one output line (without its ``\\n``). Raises ProtocolError if garbled."""
    if not _PRINTABLE.fullmatch(line):
        raise ProtocolError(f"non-printable bytes in line {line!r}")
    if line == "":
        return [ScriptEnd()]
    head = line[0]
    if head in "eZ":
        echo = ScriptAccepted() if head == "e" else AbortAcknowledged()
        rest = line[1:]
        if rest.startswith("!"):
            match = _ERROR.fullmatch(rest)
            if not match:
                raise ProtocolError(f"malformed error reply {line!r}")
            return [ErrorReply(int(match.group(1), 16), match.group(2) or "", head)]
        return [echo] + (parse_line(rest) if rest else [])
    if head == "!":
        match = _ERROR.fullmatch(line)
        if not match:
            raise ProtocolError(f"malformed error reply {line!r}")
        return [ErrorReply(int(match.group(1), 16), match.group(2) or "")]
    if head == "P":
        if len(line) == 1:
            raise ProtocolError("empty data package")
        return [DataPackage(tuple(parse_variable(v) for v in line[1:].split(";")))]
    if head in "MC":
        if not _LOOP_ID.fullmatch(line[1:]):
            raise ProtocolError(f"malformed loop begin {line!r}")
        return [LoopBegin(LoopKind(head), line[1:])]
    if head == "L":
        if line != "L":
            raise ProtocolError(f"malformed loop begin {line!r}")
        return [LoopBegin(LoopKind.LOOP)]
    if head in _LOOP_END:
        if len(line) != 1:
            raise ProtocolError(f"malformed loop end {line!r}")
        return [LoopEnd(_LOOP_END[head])]
    if head == "T":
        return [TextLine(line[1:])]
    raise ProtocolError(f"unknown MethodSCRIPT output line {line!r}")


@dataclass
class OutputParser:
    """Streaming parser for a script's whole output; bytes may arrive split anywhere.

    ``feed(data)`` returns the events completed by ``data``. Loop nesting is checked:
    a loop end that does not match the open loop is a ProtocolError; the script end
    may close open loops only after an abort or an error (as the device does).
    ``finish()`` raises ProtocolError if a partial line is pending. Lines longer than
    ``max_line`` bytes without a ``\\n`` are a ProtocolError (garbage, not a package).
    """

    max_line: int = 4096
    _buffer: bytearray = field(default_factory=bytearray)
    _open_loops: list[LoopKind] = field(default_factory=list)
    _aborted: bool = False
    _errored: bool = False
    finished: bool = False

    def feed(self, data: bytes) -> list[OutputEvent]:
        self._buffer.extend(data)
        events: list[OutputEvent] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            raw = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            events.extend(self.feed_line(raw))
        if len(self._buffer) > self.max_line:
            raise ProtocolError(f"no line end after {len(self._buffer)} bytes")
        return events

    def feed_line(self, raw: bytes) -> list[OutputEvent]:
        """Parse one complete line (without ``\\n``) and track nesting."""
        if self.finished:
            raise ProtocolError(f"output {raw!r} after the end of the script")
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(f"non-ASCII bytes in line {raw!r}") from None
        events = parse_line(line)
        for event in events:
            if isinstance(event, LoopBegin):
                self._open_loops.append(event.kind)
            elif isinstance(event, LoopEnd):
                if not self._open_loops or self._open_loops[-1] is not event.kind:
                    raise ProtocolError(
                        f"loop end {raw!r} does not match the open loops {self._open_loops}"
                    )
                self._open_loops.pop()
            elif isinstance(event, AbortAcknowledged):
                self._aborted = True
            elif isinstance(event, ErrorReply):
                self._errored = True
            elif isinstance(event, ScriptEnd):
                if self._open_loops and not (self._aborted or self._errored):
                    raise ProtocolError(f"script ended inside open loops {self._open_loops}")
                self.finished = True
        return events

    @property
    def pending(self) -> bytes:
        return bytes(self._buffer)

    def finish(self) -> None:
        if self._buffer:
            raise ProtocolError(f"partial line {bytes(self._buffer)!r} at end of output")
        if not self.finished:
            raise ProtocolError("output ended without the empty end-of-script line")


def parse_output(data: bytes) -> list[OutputEvent]:
    """Parse a complete script output (convenience for tests and offline files)."""
    parser = OutputParser()
    events = parser.feed(data)
    parser.finish()
    return events


# --------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------


class DeviceModel(enum.StrEnum):
    EMSTAT_PICO = "espico"
    EMSTAT4_LR = "es4_lr"
    EMSTAT4_HR = "es4_hr"


@dataclass(frozen=True)
class DeviceLimits:
    """What a device can do (PalmSens datasheet values; check your unit's datasheet)."""

    model: DeviceModel
    min_frequency_Hz: float
    max_frequency_Hz: float
    max_abs_potential_V: float
    max_current_A: float
    min_amplitude_Vrms: float = 1e-3
    max_amplitude_Vrms: float = 0.25


DEVICE_LIMITS: dict[DeviceModel, DeviceLimits] = {
    DeviceModel.EMSTAT_PICO: DeviceLimits(DeviceModel.EMSTAT_PICO, 0.016, 200e3, 1.7, 5e-3),
    DeviceModel.EMSTAT4_LR: DeviceLimits(DeviceModel.EMSTAT4_LR, 1e-5, 200e3, 3.0, 10e-3),
    DeviceModel.EMSTAT4_HR: DeviceLimits(DeviceModel.EMSTAT4_HR, 1e-5, 200e3, 6.0, 100e-3),
}
