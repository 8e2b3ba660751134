# ruff: noqa: N802, N815  (unit suffixes: _V, _s, rate_C, temperature_C)
"""Compile campaign candidates into cycling protocols, and export them.

A protocol-campaign candidate (parameter values) plus the campaign's cell, fixed
cycle and checkpoints becomes an ``aurora_unicycler.CyclingProtocol``, paired with
voltloop's :class:`~voltloop.drivers.safety.SafetyBlock` in a
:class:`CompiledProtocol` (JSON round trip; what the cycler receives and the
database stores). Materials campaigns compile their fixed test protocol the same way.

Layout of the method (docs/protocols/compilation.md)::

    [formation cycles] [start-of-life RPT / EIS]
    Tag outer ─ Tag inner ─ Tag cycle ─ <aging cycle> ─ Loop cycle ×s ─ <checkpoints every s>
                                      ─ Loop inner ×L/s ─ <checkpoints every L> ─ Loop outer ×N/L

Every new aging cycle starts with exactly one loop jump, so a cycler that counts a
cycle per loop jump (as Neware does, and the simulated cycler) numbers aging cycles
0, 1, 2, …; checkpoints and formation belong to the cycle they follow (formation and
start-of-life checkpoints to cycle 0). Every step carries an ``id`` naming its role
(``CC1`` … , ``cc_finish``, ``discharge``, ``eis``, ``rpt_discharge``, …).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aurora_unicycler import (
    ConstantCurrent,
    ConstantVoltage,
    CyclingProtocol,
    ImpedanceSpectroscopy,
    Loop,
    OpenCircuitVoltage,
    RecordParams,
    SafetyParams,
    SampleParams,
    Tag,
)
from pydantic import BaseModel, ConfigDict, Field

from voltloop.campaigns.spec import (
    CampaignBase,
    ConstantCurrentCharge,
    ConstantVoltageHold,
    EisCheckpoints,
    FixedCycle,
    MaterialsCampaign,
    ProtocolCampaign,
    ReferencePerformanceTest,
)
from voltloop.drivers.safety import (
    InstrumentLimitsLike,
    LimitViolation,
    SafetyBlock,
    check_protocol,
    ensure_dispatchable,
)

#: Time cap on steps that end on a voltage or current: this many times the time the
#: step would take on a nominal cell (a cell that never reaches its cut-off stops).
TIME_CAP_FACTOR = 1.5
#: Time cap on a constant-voltage hold, s.
CV_TIME_CAP_S = 7200.0
#: Margin between the cut-offs and unicycler's hard voltage safety limits, V.
VOLTAGE_SAFETY_MARGIN_V = 0.05


class ProtocolCompileError(ValueError):
    """A candidate or option that cannot become a protocol (message says why)."""

    exit_code = 2


class Checkpoint(BaseModel):
    """A checkpoint and how many aging cycles precede it (0 = start of life)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str  # "eis" or "rpt"
    after_cycles: int = Field(ge=0)


class CompiledProtocol(BaseModel):
    """A unicycler protocol with voltloop's safety block and where it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign: str
    kind: str = Field(description="protocol or materials")
    parameters: dict[str, float] = Field(default_factory=dict, description="incl. derived")
    material: str | None = None
    cycles: int = Field(ge=1, description="aging cycles the protocol runs")
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    safety: SafetyBlock
    protocol: CyclingProtocol

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> CompiledProtocol:
        return cls.model_validate_json(text)

    def schedule_payload(self, experiment_id: str) -> dict[str, Any]:
        """The ``CHAN<n>:SCHedule`` block body (docs/protocols/cycler.md §4.1)."""
        return {
            "experiment_id": str(experiment_id),
            "protocol": self.protocol.model_dump(mode="json"),
            "max_temperature_C": self.safety.max_temperature_C,
        }

    def check(self, limits: InstrumentLimitsLike | None = None) -> list[LimitViolation]:
        """Violations of the cell's limits and (if given) the instrument's."""
        return check_protocol(self.protocol, self.safety, limits)

    def ensure_dispatchable(self, limits: InstrumentLimitsLike | None = None) -> None:
        """Raise ProtocolLimitError naming each step and limit broken."""
        ensure_dispatchable(self.protocol, self.safety, limits, name=self.protocol.sample.name)


# --- building blocks ----------------------------------------------------------------


def safety_block(spec: CampaignBase) -> SafetyBlock:
    """The cell limits of ``spec`` and its temperature stop limit."""
    cell = spec.cell
    limit = spec.temperature_stop_limit_C
    source = (
        "cell.max_temperature_C"
        if limit == cell.max_temperature_C
        else "peak_temperature constraint (safe mode)"
    )
    return SafetyBlock(
        max_temperature_C=limit,
        temperature_limit_source=source,
        nominal_capacity_Ah=cell.nominal_capacity_Ah,
        min_voltage_V=cell.min_voltage_V,
        max_voltage_V=cell.max_voltage_V,
        max_charge_current_A=cell.max_charge_current_A,
        max_discharge_current_A=cell.max_discharge_current_A,
        cell_max_temperature_C=cell.max_temperature_C,
        chamber_temperature_C=cell.chamber_temperature_C,
    )


def _cap(rate_C: float, soc: float = 1.0) -> float:
    """Time cap for a step moving ``soc`` of nominal capacity at ``rate_C``, s."""
    return TIME_CAP_FACTOR * 3600.0 * soc / abs(rate_C)


def _rest(seconds: float, step_id: str) -> list[Any]:
    return [OpenCircuitVoltage(until_time_s=seconds, id=step_id)] if seconds > 0 else []


def fixed_cycle_steps(
    cycle: FixedCycle,
    prefix: str = "",
    charge_id: str = "cc_charge",
    cv_id: str = "cv_charge",
) -> list[Any]:
    """CC-CV to the upper cut-off, rest, discharge (optionally CV), rest."""
    rate = cycle.charge_rate_C
    steps: list[Any] = [
        ConstantCurrent(
            rate_C=rate,
            until_voltage_V=cycle.upper_cutoff_V,
            until_time_s=_cap(rate),
            id=prefix + charge_id,
        )
    ]
    if cycle.cv_until_rate_C is not None:
        steps.append(
            ConstantVoltage(
                voltage_V=cycle.upper_cutoff_V,
                until_rate_C=cycle.cv_until_rate_C,
                until_time_s=CV_TIME_CAP_S,
                id=prefix + cv_id,
            )
        )
    steps += _rest(cycle.rest_after_charge_s, prefix + "rest_charged")
    steps.append(
        ConstantCurrent(
            rate_C=-cycle.discharge_rate_C,
            until_voltage_V=cycle.lower_cutoff_V,
            until_time_s=_cap(cycle.discharge_rate_C),
            id=prefix + "discharge",
        )
    )
    if cycle.discharge_cv_until_rate_C is not None:
        steps.append(
            ConstantVoltage(
                voltage_V=cycle.lower_cutoff_V,
                until_rate_C=-cycle.discharge_cv_until_rate_C,
                until_time_s=CV_TIME_CAP_S,
                id=prefix + "cv_discharge",
            )
        )
    steps += _rest(cycle.rest_after_discharge_s, prefix + "rest_discharged")
    return steps


def eis_steps(eis: EisCheckpoints, cycle: FixedCycle) -> list[Any]:
    """From empty: charge to ``eis.soc``, OCV rest, EIS, discharge back to empty."""
    steps: list[Any] = []
    if eis.soc > 0:
        steps.append(
            ConstantCurrent(
                rate_C=eis.soc_rate_C, until_time_s=eis.soc * 3600.0 / eis.soc_rate_C,
                until_voltage_V=cycle.upper_cutoff_V, id="eis_set_soc",
            )
        )  # fmt: skip
    steps += _rest(eis.rest_s, "eis_rest")
    steps.append(
        ImpedanceSpectroscopy(
            amplitude_V=eis.amplitude_V, start_frequency_Hz=eis.start_frequency_Hz,
            end_frequency_Hz=eis.end_frequency_Hz, points_per_decade=eis.points_per_decade,
            id="eis",
        )
    )  # fmt: skip
    if eis.soc > 0:
        steps.append(
            ConstantCurrent(
                rate_C=-eis.soc_rate_C, until_voltage_V=cycle.lower_cutoff_V,
                until_time_s=_cap(eis.soc_rate_C, eis.soc), id="eis_return",
            )
        )  # fmt: skip
        steps += _rest(cycle.rest_after_discharge_s, "eis_return_rest")
    return steps


def rpt_steps(rpt: ReferencePerformanceTest, cycle: FixedCycle) -> list[Any]:
    """A slow full cycle: CC-CV charge, rest, CC discharge, rest (ids ``rpt_*``)."""
    return [
        ConstantCurrent(
            rate_C=rpt.charge_rate_C, until_voltage_V=cycle.upper_cutoff_V,
            until_time_s=_cap(rpt.charge_rate_C), id="rpt_charge",
        ),
        ConstantVoltage(
            voltage_V=cycle.upper_cutoff_V, until_rate_C=rpt.cv_until_rate_C,
            until_time_s=CV_TIME_CAP_S, id="rpt_cv",
        ),
        *_rest(rpt.rest_s, "rpt_rest_charged"),
        ConstantCurrent(
            rate_C=-rpt.discharge_rate_C, until_voltage_V=cycle.lower_cutoff_V,
            until_time_s=_cap(rpt.discharge_rate_C), id="rpt_discharge",
        ),
        *_rest(rpt.rest_s, "rpt_rest_discharged"),
    ]  # fmt: skip


def _loop(steps: list[Any], tag: str, count: int) -> list[Any]:
    """``steps`` repeated ``count`` times (a Tag/Loop pair, or nothing if count is 1)."""
    if count == 1:
        return steps
    return [Tag(tag=tag), *steps, Loop(loop_to=tag, cycle_count=count)]


def assemble(
    aging: list[Any],
    cycle: FixedCycle,
    cycles: int,
    eis: EisCheckpoints | None,
    rpt: ReferencePerformanceTest | None,
    preamble: list[Any] | None = None,
) -> tuple[list[Any], list[Checkpoint]]:
    """The whole method for ``cycles`` aging cycles with periodic checkpoints.

    Returns the method (list of unicycler steps) and the checkpoints in order.
    """
    due: dict[int, list[tuple[str, list[Any]]]] = {}
    if rpt is not None:
        due.setdefault(rpt.every_cycles, []).append(("rpt", rpt_steps(rpt, cycle)))
    if eis is not None:
        due.setdefault(eis.every_cycles, []).append(("eis", eis_steps(eis, cycle)))
    intervals = sorted(due)
    for every in intervals:
        if cycles % every:
            raise ProtocolCompileError(
                f"{cycles} cycles is not a whole number of {every}-cycle checkpoint blocks; "
                f"choose a multiple of {every}"
            )
    if len(intervals) == 2 and intervals[1] % intervals[0]:
        raise ProtocolCompileError(f"checkpoint intervals {intervals} do not nest")
    method: list[Any] = list(preamble or [])
    checkpoints: list[Checkpoint] = []
    for kind, item in (("rpt", rpt), ("eis", eis)):
        if item is not None and item.at_start:
            method += (
                rpt_steps(item, cycle)
                if isinstance(item, ReferencePerformanceTest)
                else eis_steps(item, cycle)
            )
            checkpoints.append(Checkpoint(kind=kind, after_cycles=0))
    body = aging
    done = 1
    tags = iter(("cycle", "block", "period"))
    for every in intervals:
        body = _loop(body, next(tags), every // done)
        for _, steps in due[every]:
            body = body + steps
        done = every
    body = _loop(body, next(tags), cycles // done)
    method += body
    for after in range(1, cycles + 1):
        for every in intervals:
            if after % every == 0:
                checkpoints += [Checkpoint(kind=k, after_cycles=after) for k, _ in due[every]]
    return method, checkpoints


def _protocol(
    spec: CampaignBase, method: list[Any], cycle: FixedCycle, name: str
) -> CyclingProtocol:
    cell = spec.cell
    return CyclingProtocol(
        sample=SampleParams(name=name, capacity_mAh=cell.nominal_capacity_Ah * 1000.0),
        record=RecordParams(time_s=cycle.record_interval_s),
        safety=SafetyParams(
            max_voltage_V=cell.max_voltage_V + VOLTAGE_SAFETY_MARGIN_V,
            min_voltage_V=max(0.0, cell.min_voltage_V - VOLTAGE_SAFETY_MARGIN_V),
            max_current_mA=cell.max_charge_current_A * 1000.0,
            min_current_mA=-cell.max_discharge_current_A * 1000.0,
        ),
        method=method,
    )


# --- compiling candidates --------------------------------------------------------------


def candidate_label(values: Mapping[str, float]) -> str:
    """``CC1=5.2,CC2=5.2,CC3=4.8,CC4=4.16``: a short, stable name for a candidate."""
    return ",".join(f"{k}={v:.4g}" for k, v in values.items())


def charge_template_steps(spec: ProtocolCampaign, values: Mapping[str, float]) -> list[Any]:
    """The searched charge steps with the candidate's ``values`` filled in."""

    def num(ref: float | str | None) -> float | None:
        if ref is None:
            return None
        return float(values[ref]) if isinstance(ref, str) else float(ref)

    upper = spec.cycling.upper_cutoff_V
    steps: list[Any] = []
    for i, step in enumerate(spec.space.charge):
        default_id = step.label or (
            step.rate_C if isinstance(step, ConstantCurrentCharge) and isinstance(step.rate_C, str)
            else f"charge_{i}"
        )  # fmt: skip
        if isinstance(step, ConstantCurrentCharge):
            rate = num(step.rate_C)
            assert rate is not None
            if rate <= 0:
                raise ProtocolCompileError(f"space.charge[{i}]: rate_C {rate:g} must be positive")
            soc = num(step.soc_delta)
            duration = num(step.duration_s)
            if soc is not None:
                duration = min(duration or math.inf, soc * 3600.0 / rate)
            steps.append(
                ConstantCurrent(
                    rate_C=rate,
                    until_time_s=duration if duration is not None else _cap(rate),
                    until_voltage_V=step.until_voltage_V or upper,
                    id=default_id,
                )
            )
        elif isinstance(step, ConstantVoltageHold):
            steps.append(
                ConstantVoltage(
                    voltage_V=num(step.voltage_V),
                    until_rate_C=num(step.until_rate_C),
                    until_time_s=num(step.duration_s) or CV_TIME_CAP_S,
                    id=default_id,
                )
            )
        else:
            duration = num(step.duration_s)
            steps += _rest(duration or 0.0, default_id)
    return steps


def compile_candidate(
    spec: ProtocolCampaign,
    candidate: Mapping[str, float],
    *,
    cycles: int | None = None,
    sample_name: str | None = None,
) -> CompiledProtocol:
    """The protocol for one candidate of a protocol campaign.

    ``cycles`` defaults to the early-prediction cycle (cells that are early-predicted
    stop there), else ``lifetime.max_cycles``; pass ``spec.lifetime.max_cycles`` for a
    cell that runs on to end of life. Raises CandidateError (bad parameter values) or
    ProtocolCompileError (bad cycle count), both with ``exit_code = 2``.
    """
    values = spec.space.resolve(candidate)
    n = cycles if cycles is not None else spec.lifetime.stop_cycle
    if n < 1:
        raise ProtocolCompileError(f"cycles must be at least 1, got {n}")
    aging = [
        *charge_template_steps(spec, values),
        *fixed_cycle_steps(spec.cycling, charge_id="cc_finish", cv_id="cv_finish"),
    ]
    method, checkpoints = assemble(aging, spec.cycling, n, spec.eis, spec.reference_test)
    name = sample_name or f"{spec.name}/{candidate_label(values)}"
    return CompiledProtocol(
        campaign=spec.name,
        kind="protocol",
        parameters=values,
        cycles=n,
        checkpoints=checkpoints,
        safety=safety_block(spec),
        protocol=_protocol(spec, method, spec.cycling, name),
    )


def compile_material_test(
    spec: MaterialsCampaign,
    material: str,
    *,
    cycles: int | None = None,
    sample_name: str | None = None,
) -> CompiledProtocol:
    """The fixed test protocol of a materials campaign for ``material`` (a label)."""
    test = spec.test_protocol
    n = cycles if cycles is not None else spec.lifetime.stop_cycle
    formation_cycle = test.model_copy(
        update={
            "charge_rate_C": test.formation_rate_C,
            "discharge_rate_C": test.formation_rate_C,
            "discharge_cv_until_rate_C": None,
        }
    )
    preamble: list[Any] = []
    for k in range(test.formation_cycles):
        preamble += fixed_cycle_steps(formation_cycle, prefix=f"formation{k + 1}_")
    aging = fixed_cycle_steps(test)
    method, checkpoints = assemble(aging, test, n, spec.eis, spec.reference_test, preamble)
    name = sample_name or f"{spec.name}/{material}"
    return CompiledProtocol(
        campaign=spec.name,
        kind="materials",
        material=material,
        cycles=n,
        checkpoints=checkpoints,
        safety=safety_block(spec),
        protocol=_protocol(spec, method, test, name),
    )
