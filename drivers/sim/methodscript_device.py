"""A MethodSCRIPT interpreter for the simulated potentiostat: parse a script, run it
against a :class:`~voltloop.drivers.sim.virtual_lab.VirtualLab`, yield output lines.

Only the subset of docs/protocols/methodscript.md is understood. Parsing checks what
the device checks before running (known command, argument count, numbers, declared
variables, loop structure, device limits for literal values) and raises
:class:`ScriptError` with the documented code and ``Line N, Col M``. Running is a
generator of ``(device_seconds_to_wait, line_bytes)``: the server decides how wall time
relates to device time, applies faults and handles ``Z``. The interpreter holds no
physics: impedance and OCV come from the lab. The one approximation is
chronopotentiometry, whose potential is OCV + I·Re Z(f = 1/(2π t)) from the lab's
impedance (a linear-response estimate for small currents; documented in the docs).
"""

# ruff: noqa: N815 - unit-suffixed physics names

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from voltloop.drivers import methodscript as ms
from voltloop.drivers import potentiostat_scripts as ps

# Error codes the simulator emits (docs/protocols/methodscript.md §Errors).
ERR_UNKNOWN_COMMAND = 0x0003
ERR_WRONG_STATE = 0x0006
ERR_SCRIPT_UNKNOWN = 0x4003
ERR_SCRIPT_ARGUMENTS = 0x4004
ERR_SCRIPT_LIMIT = 0x4005
ERR_SCRIPT_UNDECLARED = 0x4006
ERR_NO_CELL = 0x7001
ERR_CELL_BUSY = 0x7002
ERR_CELL_OFF = 0x7004

#: command → number of arguments
COMMANDS: dict[str, int] = {
    "var": 1,
    "store_var": 3,
    "set_pgstat_chan": 1,
    "set_pgstat_mode": 1,
    "set_max_bandwidth": 1,
    "set_range": 2,
    "set_autoranging": 3,
    "set_range_minmax": 3,
    "set_e": 1,
    "set_i": 1,
    "cell_on": 0,
    "cell_off": 0,
    "timer_start": 0,
    "timer_get": 1,
    "wait": 1,
    "meas_loop_ocp": 3,
    "meas_loop_eis": 8,
    "meas_loop_cp": 5,
    "pck_start": 0,
    "pck_add": 1,
    "pck_end": 0,
    "endloop": 0,
    "on_finished:": 0,
}
#: measurement loops: number of leading output-variable arguments and their type codes
LOOPS: dict[str, tuple[str, ...]] = {
    "meas_loop_eis": ("dc", "cc", "cd"),
    "meas_loop_ocp": ("ab",),
    "meas_loop_cp": ("ab", "db"),
}
#: the technique id after ``M`` (docs: unverified meaning, accepted as any 4 hex digits)
LOOP_IDS = {"meas_loop_eis": "0007", "meas_loop_ocp": "000B", "meas_loop_cp": "0009"}
#: arguments that are not numbers (range selectors, variable type codes)
_NAME_ARGS = {
    "set_range": (0,),
    "set_autoranging": (0,),
    "set_range_minmax": (0,),
    "store_var": (2,),
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Device time of one EIS point: a couple of periods plus settling (simulator model).
EIS_PERIODS_MEASURED = 2.0
EIS_POINT_SETTLE_S = 0.1

#: EmStat4 current range codes → full scale (A), docs §Data packages
CURRENT_RANGES_EMSTAT4 = ((0x09, 100e-9), (0x0C, 1e-6), (0x0F, 10e-6), (0x12, 100e-6),
                          (0x15, 1e-3), (0x18, 10e-3), (0x1B, 100e-3))  # fmt: skip


class ScriptError(Exception):
    """A MethodSCRIPT error the device reports as ``!XXXX: detail``."""

    def __init__(self, code: int, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"!{code:04X}: {detail}")

    def line(self) -> bytes:
        return f"!{self.code:04X}: {self.detail}\n".encode("ascii")


@dataclass(frozen=True)
class Statement:
    line_no: int
    command: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Loop:
    head: Statement
    body: tuple[Statement, ...]


@dataclass(frozen=True)
class Program:
    main: tuple[Statement | Loop, ...]
    on_finished: tuple[Statement, ...] = ()

    def expected_lines(self) -> int:
        """About how many output lines the script produces (loop markers, packages, end
        line); where a value is a variable it guesses 10 packages. For fault placement."""
        total = 1
        for item in self.main:
            if not isinstance(item, Loop):
                continue
            total += 2
            if not any(s.command == "pck_end" for s in item.body):
                continue
            args = item.head.args
            if item.head.command == "meas_loop_eis":
                n = _literal_or_none(args[6])
            else:
                interval, duration = _literal_or_none(args[-2]), _literal_or_none(args[-1])
                n = duration / interval if interval and duration else None
            total += int(n) if n and math.isfinite(n) else 10
        return total


def _where(line_no: int, col: int = 1) -> str:
    return f"Line {line_no}, Col {col}"


def parse_script(lines: list[str], limits: ms.DeviceLimits) -> Program:
    """Parse the script lines (between ``e`` and the empty line); raise ScriptError."""
    declared: set[str] = set()
    main: list[Statement | Loop] = []
    finished: list[Statement] = []
    body: list[Statement] | None = None
    head: Statement | None = None
    in_finished = False
    for line_no, raw in enumerate(lines, start=2):  # line 1 is the 'e'
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        command, *args = text.split()
        if command not in COMMANDS:
            raise ScriptError(ERR_SCRIPT_UNKNOWN, _where(line_no))
        if len(args) != COMMANDS[command]:
            raise ScriptError(ERR_SCRIPT_ARGUMENTS, _where(line_no, len(command) + 2))
        statement = Statement(line_no, command, tuple(args))
        _check_arguments(statement, declared, limits)
        if command == "var":
            declared.add(args[0])
        if command == "on_finished:":
            if body is not None or in_finished:
                raise ScriptError(ERR_SCRIPT_UNKNOWN, _where(line_no))
            in_finished = True
        elif command in LOOPS:
            if body is not None or in_finished:
                raise ScriptError(ERR_SCRIPT_UNKNOWN, _where(line_no))  # no nested loops
            head, body = statement, []
        elif command == "endloop":
            if body is None or head is None:
                raise ScriptError(ERR_SCRIPT_UNKNOWN, _where(line_no))
            main.append(Loop(head, tuple(body)))
            head, body = None, None
        elif command.startswith("pck_") and body is None:
            raise ScriptError(ERR_SCRIPT_UNKNOWN, _where(line_no))
        elif body is not None:
            body.append(statement)
        elif in_finished:
            finished.append(statement)
        else:
            main.append(statement)
    if body is not None and head is not None:
        raise ScriptError(ERR_SCRIPT_UNKNOWN, f"{_where(head.line_no)}: loop without endloop")
    return Program(tuple(main), tuple(finished))


def _check_arguments(statement: Statement, declared: set[str], limits: ms.DeviceLimits) -> None:
    command, args = statement.command, statement.args
    n_out = len(LOOPS.get(command, ()))
    col = len(command) + 2
    for index, arg in enumerate(args):
        if command == "var":
            if not _IDENT.fullmatch(arg):
                raise ScriptError(ERR_SCRIPT_ARGUMENTS, _where(statement.line_no, col))
        elif index in _NAME_ARGS.get(command, ()):
            pass
        elif index < n_out or command in ("pck_add", "timer_get") or _IDENT.fullmatch(arg):
            if arg not in declared:
                raise ScriptError(ERR_SCRIPT_UNDECLARED, _where(statement.line_no, col))
        else:
            try:
                ms.parse_literal(arg)
            except ValueError:
                raise ScriptError(ERR_SCRIPT_ARGUMENTS, _where(statement.line_no, col)) from None
        col += len(arg) + 1
    if command == "meas_loop_eis":
        _check_eis_limits(statement, limits, _literal_or_none)


def _literal_or_none(text: str) -> float | None:
    try:
        return ms.parse_literal(text)
    except ValueError:
        return None


def _check_eis_limits(
    statement: Statement, limits: ms.DeviceLimits, value: Callable[[str], float | None]
) -> None:
    """Frequency, amplitude, point count and DC level within the device's limits."""
    _, _, _, amp, f_start, f_end, n, e_dc = statement.args
    where = _where(statement.line_no)
    checks = [
        (value(f_start), limits.min_frequency_Hz, limits.max_frequency_Hz, "f_start"),
        (value(f_end), limits.min_frequency_Hz, limits.max_frequency_Hz, "f_end"),
        (value(amp), limits.min_amplitude_Vrms, limits.max_amplitude_Vrms, "E_ac"),
        (value(n), 1, 10_000, "n_points"),
        (value(e_dc), -limits.max_abs_potential_V, limits.max_abs_potential_V, "E_dc"),
    ]
    for got, low, high, name in checks:
        if got is not None and not (math.isfinite(got) and low <= got <= high):
            raise ScriptError(
                ERR_SCRIPT_LIMIT, f"{where}: {name} {got:g} outside {low:g}..{high:g}"
            )


@dataclass
class DeviceContext:
    """What a running script may touch: the lab through two calls, and device limits."""

    limits: ms.DeviceLimits
    channel: Callable[[], int | None]
    impedance: Callable[[int, np.ndarray], np.ndarray]
    open_circuit_voltage: Callable[[int], float]
    current_limit_A: float | None = None


@dataclass
class _Run:
    program: Program
    ctx: DeviceContext
    values: dict[str, float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, int] = field(default_factory=dict)
    cell_on: bool = False
    clock_s: float = 0.0  # device time since the script started
    timer_zero_s: float = 0.0
    package: list[str] | None = None


def run_script(program: Program, ctx: DeviceContext) -> Iterator[tuple[float, bytes]]:
    """Execute ``program``; yields ``(device_seconds_to_wait_first, line)``.

    Runtime errors raise ScriptError from the generator (the server sends the error
    line and the end line). The on_finished block runs silently in every case.
    """
    run = _Run(program, ctx)
    try:
        for item in program.main:
            if isinstance(item, Loop):
                yield from _run_loop(run, item)
            else:
                _simple(run, item)
    finally:
        for statement in program.on_finished:
            _simple(run, statement)
    yield 0.0, b"\n"


def _value(run: _Run, arg: str) -> float:
    if arg in run.values:
        return run.values[arg]
    if _IDENT.fullmatch(arg) and not arg[0].isdigit():
        return 0.0  # declared, never assigned: the device's variables start at zero
    return ms.parse_literal(arg)


def _simple(run: _Run, statement: Statement) -> None:
    command, args = statement.command, statement.args
    if command == "cell_on":
        run.cell_on = True
    elif command == "cell_off":
        run.cell_on = False
    elif command == "timer_start":
        run.timer_zero_s = run.clock_s
    elif command == "timer_get":
        run.values[args[0]] = run.clock_s - run.timer_zero_s
        run.types[args[0]] = ms.VarType.TIME.value
    elif command == "store_var":
        run.values[args[0]] = _value(run, args[1])
        run.types[args[0]] = args[2]
    elif command == "wait":
        run.clock_s += _value(run, args[0])
    elif command == "pck_start":
        run.package = []
    elif command == "pck_add":
        if run.package is None:
            raise ScriptError(ERR_SCRIPT_UNKNOWN, _where(statement.line_no))
        name = args[0]
        variable = ms.Variable(
            run.types.get(name, "aa"),
            run.values.get(name, 0.0),
            ms.StatusFlag(run.status[name]) if name in run.status else None,
            run.ranges.get(name),
        )
        run.package.append(variable.encode())
    # configuration commands (pgstat mode, ranges, bandwidth, set_e/set_i) change
    # nothing the simulator models; they are accepted after argument checks.


def _attached_channel(run: _Run) -> int:
    channel = run.ctx.channel()
    if channel is None:
        raise ScriptError(ERR_NO_CELL, "no cell connected to the potentiostat")
    return channel


def _emit_body(run: _Run, loop: Loop) -> Iterator[bytes]:
    for statement in loop.body:
        if statement.command == "pck_end":
            if run.package is None:
                raise ScriptError(ERR_SCRIPT_UNKNOWN, _where(statement.line_no))
            yield ("P" + ";".join(run.package) + "\n").encode("ascii")
            run.package = None
        else:
            _simple(run, statement)


def _lab(call: Callable[..., object], *args: object) -> object:
    """A lab call; a refusal (cell running, no cell) becomes the device's runtime error."""
    try:
        return call(*args)
    except ValueError as exc:
        raise ScriptError(ERR_CELL_BUSY, str(exc)) from None


def _current_range(current_A: float, limit_A: float | None) -> tuple[int, int]:
    """(EmStat4 range code, status flags) for a current amplitude."""
    status = 0
    if limit_A is not None and current_A > limit_A:
        status |= ms.StatusFlag.OVERLOAD
    for code, full_scale in CURRENT_RANGES_EMSTAT4:
        if current_A <= full_scale:
            return code, status
    return CURRENT_RANGES_EMSTAT4[-1][0], status


def _run_loop(run: _Run, loop: Loop) -> Iterator[tuple[float, bytes]]:
    head = loop.head
    outputs = head.args[: len(LOOPS[head.command])]
    for name, code in zip(outputs, LOOPS[head.command], strict=True):
        run.types[name] = code
    channel = _attached_channel(run)
    marker = f"M{LOOP_IDS[head.command]}\n".encode("ascii")
    if head.command == "meas_loop_eis":
        if not run.cell_on:
            raise ScriptError(ERR_CELL_OFF, f"{_where(head.line_no)}: cell is off")
        _check_eis_limits(head, run.ctx.limits, lambda a: _value(run, a))
        amp, f_start, f_end, n = (_value(run, a) for a in head.args[3:7])
        frequencies = ps.eis_frequencies(f_start, f_end, int(n))
        z = np.asarray(_lab(run.ctx.impedance, channel, frequencies), dtype=complex)
        yield 0.0, marker
        f_var, re_var, im_var = outputs
        for f, zk in zip(frequencies, z, strict=True):
            wait = EIS_PERIODS_MEASURED / f + EIS_POINT_SETTLE_S
            run.clock_s += wait
            code, status = _current_range(amp / max(abs(zk), 1e-12), run.ctx.current_limit_A)
            run.values.update({f_var: float(f), re_var: float(zk.real), im_var: float(zk.imag)})
            run.status.update({re_var: status, im_var: status})
            run.ranges[re_var] = code
            for index, line in enumerate(_emit_body(run, loop)):
                yield (wait if index == 0 else 0.0), line
        yield 0.0, b"*\n"
        return
    interval, duration = (_value(run, a) for a in head.args[-2:])
    if interval <= 0 or duration < interval:
        raise ScriptError(ERR_SCRIPT_LIMIT, f"{_where(head.line_no)}: bad interval/run time")
    if head.command == "meas_loop_cp" and not run.cell_on:
        raise ScriptError(ERR_CELL_OFF, f"{_where(head.line_no)}: cell is off")
    current = _value(run, head.args[2]) if head.command == "meas_loop_cp" else 0.0
    yield 0.0, marker
    for k in range(1, int(math.floor(duration / interval + 1e-9)) + 1):
        run.clock_s += interval
        ocv = float(_lab(run.ctx.open_circuit_voltage, channel))
        potential = ocv
        if current:
            t = k * interval
            z = _lab(run.ctx.impedance, channel, np.array([1.0 / (2 * math.pi * t)]))
            potential = ocv + current * float(np.real(z[0]))
        run.values[outputs[0]] = potential
        run.status[outputs[0]] = 0
        if head.command == "meas_loop_cp":
            run.values[outputs[1]] = current
        lines = list(_emit_body(run, loop))
        if not lines:
            yield interval, b""
        for index, line in enumerate(lines):
            yield (interval if index == 0 else 0.0), line
    yield 0.0, b"*\n"
