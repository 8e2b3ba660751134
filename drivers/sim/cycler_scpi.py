"""The simulated cycler's command language (docs/protocols/cycler.md): error codes, the
session state a reset clears, header parsing (short/long forms, channel suffix), message
framing (a ``#<n><len>`` block may contain any bytes) and the limit checks at upload."""

from __future__ import annotations

# ruff: noqa: N815 - field names carry SI units
import functools
import re
from collections import deque
from dataclasses import dataclass

from aurora_unicycler import CyclingProtocol

from voltloop.drivers.sim.virtual_lab import InstrumentLimits

MAX_MESSAGE_BYTES = 4 << 20
ERROR_QUEUE_DEPTH = 16
DEFAULT_MAX_BATCH = 4096

ERROR_TEXT = {
    -101: "Invalid character",
    -102: "Syntax error",
    -108: "Parameter not allowed",
    -109: "Missing parameter",
    -113: "Undefined header",
    -114: "Header suffix out of range",
    -161: "Invalid block data",
    -200: "Execution error",
    -213: "Init ignored",
    -221: "Settings conflict",
    -222: "Data out of range",
    -224: "Illegal parameter value",
    -240: "Hardware error",
    -300: "Device-specific error",
    -241: "Hardware missing",
    -330: "Self-test failed",
    -350: "Queue overflow",
    -363: "Input buffer overrun",
}

#: Long and short forms of every header keyword → canonical short form.
_KEYWORDS = {
    "SYSTEM": "SYST",
    "ERROR": "ERR",
    "NEXT": "NEXT",
    "LIMITS": "LIM",
    "SYNC": "SYNC",
    "CHANNEL": "CHAN",
    "SCHEDULE": "SCH",
    "START": "STAR",
    "STATUS": "STAT",
    "DATA": "DATA",
    "STOP": "STOP",
    "RESUME": "RES",
    "FETCH": "FETC",
}
_KEYWORDS |= {short: short for short in list(_KEYWORDS.values())}
_NODE = re.compile(r"([A-Z]+)(\d*)")


class ScpiError(Exception):
    """An error the instrument queues: SCPI code and ``"<text>; <detail>"``."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        text = ERROR_TEXT.get(code, "Error")
        self.message = f"{text}; {detail}" if detail else text
        super().__init__(f"{code},{self.message}")


@dataclass(frozen=True)
class StagedSchedule:
    experiment_id: str
    protocol_json: str
    max_temperature_C: float | None


class CyclerSession:
    """Session state: the error queue and staged schedules."""

    def __init__(self) -> None:
        self.errors: deque[tuple[int, str]] = deque()
        self.staged: dict[int, StagedSchedule] = {}

    def push_error(self, code: int, message: str) -> None:
        if len(self.errors) >= ERROR_QUEUE_DEPTH:
            self.errors[-1] = (-350, ERROR_TEXT[-350])
        else:
            self.errors.append((code, message))

    def pop_error(self) -> tuple[int, str]:
        return self.errors.popleft() if self.errors else (0, "No error")

    def clear(self) -> None:
        self.errors.clear()
        self.staged.clear()


@functools.lru_cache(maxsize=1024)  # hosts repeat a few headers; errors are not cached
def parse_header(header: str) -> tuple[str, int | None]:
    """``'chan3:stat?'`` → ``('CHAN:STAT?', 3)``; raises ScpiError −113/−114."""
    upper = header.upper()
    if upper.startswith("*"):
        return upper, None
    query = upper.endswith("?")
    nodes = (upper[:-1] if query else upper).split(":")
    canonical, suffix = [], None
    for node in nodes:
        match = _NODE.fullmatch(node)
        key = _KEYWORDS.get(match.group(1)) if match else None
        if match is None or key is None:
            raise ScpiError(-113, header)
        if match.group(2):
            if key != "CHAN":
                raise ScpiError(-114, header)
            suffix = int(match.group(2))
        canonical.append(key)
    if canonical[0] == "CHAN" and suffix is None:
        raise ScpiError(-114, f"{header}: channel number missing")
    return ":".join(canonical) + ("?" if query else ""), suffix


def next_message(buf: bytearray) -> bytes | None:
    """Cut one complete message (terminator removed) off ``buf``; None if incomplete.

    A ``#<n><len>`` block is taken by its length, so it may contain any bytes.
    """
    newline = buf.find(b"\n")
    hash_at = buf.find(b"#")
    end = newline
    if hash_at >= 0 and (newline < 0 or hash_at < newline):
        if len(buf) < hash_at + 2:
            return None
        digit = chr(buf[hash_at + 1])
        if digit.isdigit() and digit != "0":
            n = int(digit)
            length_raw = bytes(buf[hash_at + 2 : hash_at + 2 + n])
            if len(length_raw) < n:
                return None
            if length_raw.isdigit():
                block_end = hash_at + 2 + n + int(length_raw)
                newline = buf.find(b"\n", block_end)
                end = newline
    if end < 0:
        return None
    message = bytes(buf[:end])
    del buf[: end + 1]
    return message[:-1] if message.endswith(b"\r") else message


def decode_block(raw: bytes) -> bytes:
    if not raw.startswith(b"#") or len(raw) < 2 or raw[1:2] in (b"0",) or not raw[1:2].isdigit():
        raise ScpiError(-161, "expected a definite-length block #<n><len><bytes>")
    n = int(raw[1:2])
    length_raw = raw[2 : 2 + n]
    if len(length_raw) < n or not length_raw.isdigit():
        raise ScpiError(-161, "bad block length")
    data = raw[2 + n :]
    if len(data) != int(length_raw):
        raise ScpiError(-161, f"block announced {int(length_raw)} bytes, got {len(data)}")
    return data


def check_protocol_limits(
    protocol: CyclingProtocol, limits: InstrumentLimits, max_temperature_C: float | None
) -> None:
    """Raise ScpiError −222/−224 naming the step and limit a protocol violates."""
    steps = protocol.method
    if len(steps) > limits.max_steps:
        raise ScpiError(-222, f"{len(steps)} method steps exceed max_steps {limits.max_steps}")
    if max_temperature_C is not None and max_temperature_C > limits.max_temperature_C:
        raise ScpiError(
            -222,
            f"max_temperature_C {max_temperature_C} exceeds the instrument's "
            f"max_temperature_C {limits.max_temperature_C}",
        )
    capacity_mAh = protocol.sample.capacity_mAh

    def check_voltage(where: str, value: float | None) -> None:
        if value is not None and not limits.min_voltage_V <= value <= limits.max_voltage_V:
            raise ScpiError(
                -222,
                f"{where}: voltage {value} V outside the window "
                f"[{limits.min_voltage_V}, {limits.max_voltage_V}] V",
            )

    def check_current(where: str, amps: float | None) -> None:
        if amps is not None and abs(amps) > limits.max_current_A:
            raise ScpiError(
                -222,
                f"{where}: current {abs(amps):.4g} A exceeds max_current_A {limits.max_current_A}",
            )

    for index, step in enumerate(steps):
        where = f"method[{index}] {step.step}"
        rate_C = getattr(step, "rate_C", None)
        if rate_C is not None:
            if capacity_mAh is None:
                raise ScpiError(-224, f"{where}: rate_C needs sample.capacity_mAh")
            check_current(where, rate_C * capacity_mAh / 1000.0)
        elif getattr(step, "current_mA", None) is not None:
            check_current(where, step.current_mA / 1000.0)
        for attr in ("until_voltage_V", "voltage_V", "start_voltage_V", "end_voltage_V"):
            check_voltage(where, getattr(step, attr, None))
    safety = protocol.safety
    check_voltage("safety.max_voltage_V", safety.max_voltage_V)
    check_voltage("safety.min_voltage_V", safety.min_voltage_V)
    for name in ("max_current_mA", "min_current_mA"):
        value = getattr(safety, name)
        check_current(f"safety.{name}", None if value is None else value / 1000.0)
