"""A small stand-in VirtualLab for the potentiostat tests: one cell whose impedance is
the analytic R0 + R1||CPE1 + R2||CPE2 + finite-length Warburg model (shape (n,))."""

from __future__ import annotations

import threading

import numpy as np

TRUE_PARAMETERS = {
    "R0": 0.020,
    "R1": 0.010,
    "Q1": 0.1,
    "a1": 0.9,
    "R2": 0.015,
    "Q2": 5.0,
    "a2": 0.85,
    "Rw": 0.02,
    "tw": 50.0,
}


def model_impedance(
    frequencies_Hz: np.ndarray, p: dict[str, float] = TRUE_PARAMETERS
) -> np.ndarray:
    w = 2 * np.pi * np.asarray(frequencies_Hz, dtype=float)

    def r_cpe(r: float, q: float, a: float) -> np.ndarray:
        return r / (1 + r * q * (1j * w) ** a)

    x = np.sqrt(1j * w * p["tw"])
    return (
        p["R0"]
        + r_cpe(p["R1"], p["Q1"], p["a1"])
        + r_cpe(p["R2"], p["Q2"], p["a2"])
        + p["Rw"] / np.tanh(x) / x
    )


class FakeLab:
    """Implements the potentiostat side of VirtualLab (impedance, OCV, attachment)."""

    def __init__(self, *, noise: float = 1e-3, seed: int = 0, ocv_V: float = 3.3) -> None:
        self.noise = noise
        self.ocv_V = ocv_V
        self.busy = False  # the channel is running: EIS refused
        self.attached: int | None = 0
        self.impedance_calls: list[np.ndarray] = []
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    @property
    def potentiostat_channel(self) -> int | None:
        return self.attached

    def impedance(self, channel: int, frequencies_Hz: np.ndarray) -> np.ndarray:
        with self._lock:
            if self.busy:
                raise ValueError(f"channel {channel} is running; EIS needs a cell at rest")
            self.impedance_calls.append(np.asarray(frequencies_Hz, dtype=float).copy())
            z = model_impedance(frequencies_Hz)
            return z * (1 + self.noise * self._rng.standard_normal(z.shape))

    def open_circuit_voltage(self, channel: int) -> float:
        return self.ocv_V
