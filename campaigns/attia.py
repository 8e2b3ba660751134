"""The Attia et al. (Nature 578, 2020) ten-minute fast-charge protocol space.

A protocol charges 0 → 80 % SOC in ten minutes through four constant-current steps
of 20 % SOC each. CC1, CC2 and CC3 are chosen from fixed lists of C-rates; CC4 is
whatever makes the four steps add up to ten minutes::

    CC4 = 0.2 / (1/6 − 0.2/CC1 − 0.2/CC2 − 0.2/CC3)          (hours, C-rates)

and a protocol is kept only if 0.1 ≤ CC4 ≤ 4.81 C. Of the 9 × 8 × 6 = 432
combinations, 225 pass that test. The authors' own policy generator (the
``policies.py`` script in chueh-ermon/battery-fast-charging-optimization) also
leaves out the baseline protocol (4.8, 4.8, 4.8, 4.8 C — one constant 4.8 C
step, which they ran as a control), which gives the paper's **224** protocols.
:func:`enumerate_protocols` reproduces that; pass ``include_baseline=True`` for 225.

After the four steps the cell is charged 80 → 100 % SOC by 1C CC-CV to 3.6 V and
discharged at 4C to 2.0 V (A123 APR18650M1A LFP/graphite, 1.1 Ah, 30 °C chamber).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

#: Allowed C-rates of the first three steps (field notes; Attia et al. 2020).
CC1_VALUES: tuple[float, ...] = (3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0, 8.0)
CC2_VALUES: tuple[float, ...] = (3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0)
CC3_VALUES: tuple[float, ...] = (3.6, 4.0, 4.4, 4.8, 5.2, 5.6)
#: Inclusive range of the derived fourth step, C.
CC4_MIN: float = 0.1
CC4_MAX: float = 4.81
#: SOC covered by each of the four steps (fraction of nominal capacity).
STEP_SOC: float = 0.2
#: Time allowed for 0 → 80 % SOC, minutes.
CHARGE_TIME_MIN: float = 10.0
#: The uniform 4.8 C protocol the authors ran as a control and left out of the search.
BASELINE: tuple[float, float, float] = (4.8, 4.8, 4.8)
#: Number of protocols in the paper's search space.
SPACE_SIZE: int = 224

# Tolerance for comparing C-rates that went through floating-point arithmetic.
_RATE_TOL = 1e-9


class AttiaProtocol(NamedTuple):
    """One four-step protocol; every field is a C-rate."""

    CC1: float
    CC2: float
    CC3: float
    CC4: float

    def as_dict(self) -> dict[str, float]:
        return self._asdict()


def derive_cc4(
    cc1: float,
    cc2: float,
    cc3: float,
    *,
    step_soc: float = STEP_SOC,
    charge_time_min: float = CHARGE_TIME_MIN,
) -> float:
    """The fourth C-rate that completes the charge in ``charge_time_min``.

    Returns ``inf`` when the first three steps already use up (or exceed) the
    whole time, so no positive fourth rate exists; callers filter with
    :func:`cc4_in_range`.
    """
    if min(cc1, cc2, cc3) <= 0:
        raise ValueError(f"C-rates must be positive, got CC1={cc1}, CC2={cc2}, CC3={cc3}")
    remaining_h = charge_time_min / 60.0 - (step_soc / cc1 + step_soc / cc2 + step_soc / cc3)
    if remaining_h <= 0:
        return float("inf")
    return step_soc / remaining_h


def cc4_in_range(cc4: float) -> bool:
    """True if ``cc4`` lies in [CC4_MIN, CC4_MAX] (inclusive, float-tolerant)."""
    return CC4_MIN - _RATE_TOL <= cc4 <= CC4_MAX + _RATE_TOL


def is_baseline(cc1: float, cc2: float, cc3: float) -> bool:
    return all(abs(a - b) < _RATE_TOL for a, b in zip((cc1, cc2, cc3), BASELINE, strict=True))


def enumerate_protocols(*, include_baseline: bool = False) -> list[AttiaProtocol]:
    """All valid protocols, in CC1-major order (224, or 225 with the baseline)."""
    protocols = []
    for cc1, cc2, cc3 in itertools.product(CC1_VALUES, CC2_VALUES, CC3_VALUES):
        cc4 = derive_cc4(cc1, cc2, cc3)
        if not cc4_in_range(cc4):
            continue
        if not include_baseline and is_baseline(cc1, cc2, cc3):
            continue
        protocols.append(AttiaProtocol(cc1, cc2, cc3, cc4))
    return protocols


def protocol_array(*, include_baseline: bool = False) -> np.ndarray:
    """The valid protocols as a float64 array of shape ``(n, 4)``: CC1, CC2, CC3, CC4."""
    return np.array(enumerate_protocols(include_baseline=include_baseline), dtype=np.float64)


def charge_time_min(cc1: float, cc2: float, cc3: float, cc4: float) -> float:
    """Time for 0 → 80 % SOC through the four steps, minutes (10 for a valid protocol)."""
    return 60.0 * sum(STEP_SOC / c for c in (cc1, cc2, cc3, cc4))
