# ruff: noqa: N802, N815 - unit-suffixed physics names (capacity_Ah, temperature_K, passed_Ah)
"""Compile an ``aurora_unicycler`` protocol into the flat op table a channel executes.

One op per entry of ``protocol.method`` (so the op index is the step index that
records report). C-rates are converted with the protocol's ``sample.capacity_mAh``
or, if it is not set, the loaded cell's nominal capacity. Currents are positive
when charging (unicycler's sign convention, same as drivers/records.py).

voltloop's own safety block (cell temperature limits, which unicycler lacks) may
travel next to the protocol under a top-level ``"voltloop"`` key::

    {"unicycler": {...}, "sample": {...}, ..., "voltloop": {"max_temperature_C": 55}}

It is removed before unicycler validates the rest.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voltloop.drivers.sim.virtual_lab import InstrumentLimits


class OpKind(enum.IntEnum):
    """What an op does (stored as small ints in the executor's tables)."""

    CC = 0
    CV = 1
    REST = 2
    EIS = 3
    LOOP = 4
    SCAN = 5
    TAG = 6


TIMED_KINDS = (OpKind.CC, OpKind.CV, OpKind.REST, OpKind.EIS, OpKind.SCAN)


@dataclass
class CompiledProtocol:
    """Flat op table (arrays of length ``n_ops``) plus record and safety settings."""

    kind: np.ndarray  # OpKind values
    value: np.ndarray  # CC: current A; CV: voltage V; SCAN: start voltage V
    until_time: np.ndarray  # s, inf if none
    until_voltage: np.ndarray  # V, NaN if none (CC); SCAN: end voltage
    until_current: np.ndarray  # A (magnitude), NaN if none (CV); SCAN: rate V/s
    loop_target: np.ndarray  # op index (LOOP), -1 otherwise
    loop_count: np.ndarray  # total passes (LOOP), 0 otherwise
    record_interval_s: float
    capacity_Ah: float
    v_lo: float
    v_hi: float
    i_lo: float  # A (signed), -inf if none
    i_hi: float  # A, inf if none
    max_capacity_Ah: float
    max_temperature_C: float
    min_temperature_C: float
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_ops(self) -> int:
        return int(self.kind.size)


class ProtocolError(ValueError):
    """An uploaded protocol the instrument refuses (message names the problem)."""

    exit_code = 2


def compile_protocol(
    protocol_json: str,
    limits: InstrumentLimits,
    nominal_capacity_Ah: float,
    max_temperature_C: float | None = None,
) -> CompiledProtocol:
    """Parse, validate against ``limits`` and flatten ``protocol_json``.

    Raises :class:`ProtocolError` (a ``ValueError``) naming the step and the limit.
    """
    from aurora_unicycler import CyclingProtocol

    try:
        data = json.loads(protocol_json)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"protocol is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("protocol JSON must be an object")
    extra = data.pop("voltloop", None) or {}
    try:
        protocol = CyclingProtocol.from_dict(data)
    except Exception as exc:  # pydantic.ValidationError and unicycler's ValueErrors
        raise ProtocolError(f"invalid unicycler protocol: {exc}") from None
    method = list(protocol.method)
    if len(method) > limits.max_steps:
        raise ProtocolError(
            f"protocol has {len(method)} steps; this instrument takes at most {limits.max_steps}"
        )
    cap_mAh = protocol.sample.capacity_mAh
    capacity_Ah = cap_mAh / 1000.0 if cap_mAh else nominal_capacity_Ah
    n = len(method)
    kind = np.full(n, OpKind.TAG, dtype=np.int8)
    value = np.zeros(n)
    until_time = np.full(n, np.inf)
    until_voltage = np.full(n, np.nan)
    until_current = np.full(n, np.nan)
    loop_target = np.full(n, -1, dtype=np.int64)
    loop_count = np.zeros(n, dtype=np.int64)
    tags = {step.tag: i for i, step in enumerate(method) if step.step == "tag"}
    for i, step in enumerate(method):
        where = f"step {i} ({step.step})"
        if step.step == "constant_current":
            current = (
                step.rate_C * capacity_Ah if step.rate_C else (step.current_mA or 0.0) / 1000.0
            )
            _check_current(current, limits, where)
            kind[i], value[i] = OpKind.CC, current
            until_time[i] = step.until_time_s or np.inf
            if step.until_voltage_V:
                _check_voltage(step.until_voltage_V, limits, where)
                until_voltage[i] = step.until_voltage_V
        elif step.step == "constant_voltage":
            _check_voltage(step.voltage_V, limits, where)
            kind[i], value[i] = OpKind.CV, step.voltage_V
            until_time[i] = step.until_time_s or np.inf
            if step.until_rate_C:
                until_current[i] = abs(step.until_rate_C) * capacity_Ah
            elif step.until_current_mA:
                until_current[i] = abs(step.until_current_mA) / 1000.0
        elif step.step == "open_circuit_voltage":
            kind[i], until_time[i] = OpKind.REST, step.until_time_s
        elif step.step == "impedance_spectroscopy":
            kind[i] = OpKind.EIS
        elif step.step == "voltage_scan":
            _check_voltage(step.start_voltage_V, limits, where)
            _check_voltage(step.end_voltage_V, limits, where)
            kind[i], value[i] = OpKind.SCAN, step.start_voltage_V
            until_voltage[i] = step.end_voltage_V
            until_current[i] = step.scan_rate_mV_per_s / 1000.0
            until_time[i] = abs(step.end_voltage_V - step.start_voltage_V) / until_current[i]
        elif step.step == "loop":
            kind[i] = OpKind.LOOP
            target = tags[step.loop_to] if isinstance(step.loop_to, str) else step.loop_to - 1
            loop_target[i], loop_count[i] = target, step.cycle_count
    if not np.isin(kind, [int(k) for k in TIMED_KINDS]).any():
        raise ProtocolError("protocol has no step that takes time (CC, CV, rest, EIS, scan)")
    safety = protocol.safety
    v_lo = max(limits.min_voltage_V, safety.min_voltage_V or -math.inf)
    v_hi = min(limits.max_voltage_V, safety.max_voltage_V or math.inf)
    i_hi = safety.max_current_mA / 1000.0 if safety.max_current_mA is not None else math.inf
    i_lo = safety.min_current_mA / 1000.0 if safety.min_current_mA is not None else -math.inf
    cc = kind == OpKind.CC
    if cc.any() and (value[cc].max() > i_hi or value[cc].min() < i_lo):
        bad = int(np.flatnonzero(cc & ((value > i_hi) | (value < i_lo)))[0])
        raise ProtocolError(
            f"step {bad} current {value[bad]:.4g} A is outside the protocol's own safety "
            f"limits [{i_lo:.4g}, {i_hi:.4g}] A"
        )
    t_max = float(extra.get("max_temperature_C", limits.max_temperature_C))
    if max_temperature_C is not None:
        t_max = min(t_max, max_temperature_C)
    t_max = min(t_max, limits.max_temperature_C)
    return CompiledProtocol(
        kind=kind,
        value=value,
        until_time=until_time,
        until_voltage=until_voltage,
        until_current=until_current,
        loop_target=loop_target,
        loop_count=loop_count,
        record_interval_s=float(protocol.record.time_s),
        capacity_Ah=capacity_Ah,
        v_lo=v_lo,
        v_hi=v_hi,
        i_lo=i_lo,
        i_hi=i_hi,
        max_capacity_Ah=(safety.max_capacity_mAh or math.inf) / 1000.0,
        max_temperature_C=t_max,
        min_temperature_C=float(extra.get("min_temperature_C", -math.inf)),
        name=protocol.sample.name,
        extra=dict(extra),
    )


def _check_current(current_A: float, limits: InstrumentLimits, where: str) -> None:
    if abs(current_A) > limits.max_current_A:
        raise ProtocolError(
            f"{where}: current {current_A:.4g} A exceeds the instrument limit "
            f"{limits.max_current_A:.4g} A"
        )


def _check_voltage(voltage_V: float, limits: InstrumentLimits, where: str) -> None:
    if not limits.min_voltage_V <= voltage_V <= limits.max_voltage_V:
        raise ProtocolError(
            f"{where}: voltage {voltage_V:.4g} V is outside the instrument range "
            f"[{limits.min_voltage_V:.4g}, {limits.max_voltage_V:.4g}] V"
        )
