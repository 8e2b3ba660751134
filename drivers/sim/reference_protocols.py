"""Reference cycling protocols the simulator is calibrated and benchmarked on.

``attia_protocol`` builds the ten-minute fast-charge protocol family of Attia et
al., Nature 578 (2020) (field notes): CC1, CC2, CC3 each over 20 % SOC, CC4 derived
so 0 -> 80 % SOC takes ten minutes, then 1C CC-CV to 3.6 V (cut-off C/20), a rest,
4C discharge to 2.0 V, a CV hold at 2.0 V to C/50 and a rest, looped. The campaign
side compiles its candidates in drivers/protocols.py; this copy exists so the
simulator's tests and benchmark do not depend on it.
"""

from __future__ import annotations

import itertools

CC1_VALUES = (3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0, 8.0)
CC2_VALUES = (3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0)
CC3_VALUES = (3.6, 4.0, 4.4, 4.8, 5.2, 5.6)


def cc4_of(cc1: float, cc2: float, cc3: float) -> float:
    """CC4 so that 0 -> 80 % SOC takes 10 minutes (inf/negative when impossible)."""
    rest = 1.0 / 6.0 - 0.2 / cc1 - 0.2 / cc2 - 0.2 / cc3
    return 0.2 / rest if rest > 0 else float("inf")


def attia_space() -> list[tuple[float, float, float, float]]:
    """The valid (CC1, CC2, CC3, CC4) of the Attia space (0.1 <= CC4 <= 4.81).

    225 protocols: the paper's 224 plus the uniform 4.8C baseline (campaigns/attia.py).
    """
    out = []
    for cc1, cc2, cc3 in itertools.product(CC1_VALUES, CC2_VALUES, CC3_VALUES):
        cc4 = cc4_of(cc1, cc2, cc3)
        if 0.1 <= cc4 <= 4.81:
            out.append((cc1, cc2, cc3, round(cc4, 4)))
    return out


def attia_protocol(
    cc1: float,
    cc2: float,
    cc3: float,
    cycles: int = 5000,
    capacity_mAh: float = 1100.0,
    record_interval_s: float = 10.0,
    rest_s: float = 60.0,
    eis_every: int | None = None,
) -> str:
    """Unicycler JSON of one Attia protocol looped ``cycles`` times.

    With ``eis_every`` an outer loop inserts an EIS checkpoint every that many cycles.
    """
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

    cc4 = cc4_of(cc1, cc2, cc3)
    cycle = [
        ConstantCurrent(rate_C=c, until_time_s=0.2 / c * 3600.0, until_voltage_V=3.6)
        for c in (cc1, cc2, cc3, cc4)
    ] + [
        ConstantCurrent(rate_C=1.0, until_voltage_V=3.6),
        ConstantVoltage(voltage_V=3.6, until_rate_C=0.05),
        OpenCircuitVoltage(until_time_s=rest_s),
        ConstantCurrent(rate_C=-4.0, until_voltage_V=2.0),
        ConstantVoltage(voltage_V=2.0, until_rate_C=0.02),
        OpenCircuitVoltage(until_time_s=rest_s),
    ]
    if eis_every:
        method = [
            Tag(tag="checkpoint"),
            ImpedanceSpectroscopy(amplitude_V=0.005, start_frequency_Hz=1e4, end_frequency_Hz=0.01),
            Tag(tag="cycle"),
            *cycle,
            Loop(loop_to="cycle", cycle_count=eis_every),
            Loop(loop_to="checkpoint", cycle_count=max(1, cycles // eis_every)),
        ]
    else:
        method = [Tag(tag="cycle"), *cycle, Loop(loop_to="cycle", cycle_count=cycles)]
    protocol = CyclingProtocol(
        sample=SampleParams(name=f"attia-{cc1}-{cc2}-{cc3}-{cc4:.3f}", capacity_mAh=capacity_mAh),
        record=RecordParams(time_s=record_interval_s),
        safety=SafetyParams(max_voltage_V=3.8, min_voltage_V=1.8),
        method=method,
    )
    return protocol.to_json(indent=None)
