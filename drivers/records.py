"""The sample record a cycler reports: one row per logged point of a channel.

Both the simulated cycler and the cycler driver use this layout, so a batch of
records travels as one NumPy structured array (and, on the wire, as its raw
little-endian bytes in an IEEE 488.2 definite-length block; docs/protocols/cycler.md).

Sign convention: current is positive while charging, negative while discharging.
``charge_Ah`` and ``discharge_Ah`` accumulate within the current cycle (reset to
zero when ``cycle`` advances), as Arbin/Maccor/Neware channels report them.
"""

from __future__ import annotations

import numpy as np

#: One logged point. ``record`` counts from 0 for each experiment and never repeats.
SAMPLE_DTYPE = np.dtype(
    [
        ("record", "<i8"),  # record index within the experiment, 0, 1, 2, ...
        ("t_s", "<f8"),  # test time since the experiment started, s
        ("cycle", "<i4"),  # cycle index, from 0 (formation / first loop pass) upwards
        ("step", "<i4"),  # index of the protocol step being executed (flattened order)
        ("voltage_V", "<f4"),
        ("current_A", "<f4"),  # + charge, - discharge
        ("temperature_C", "<f4"),  # cell surface temperature
        ("charge_Ah", "<f4"),  # charge passed in this cycle so far
        ("discharge_Ah", "<f4"),  # discharge passed in this cycle so far
    ]
)


def empty_records(n: int = 0) -> np.ndarray:
    """A zeroed record array of length ``n``."""
    return np.zeros(n, dtype=SAMPLE_DTYPE)
