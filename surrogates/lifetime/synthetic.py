"""Synthetic cells whose right answer is known, for tests, docs and sanity checks.

Each cell has a planted cycle life L. Its capacity fades quadratically,
``Q(n) = Q0 − (Q0 − 0.8·Q_nom)·(n/L)²``, so it crosses 80 % of nominal exactly at
cycle L. Its discharge curve keeps one shape, ``Q(V) = Q(n)·g(V)`` with the
logistic ``g(V) = 1 / (1 + exp((V − V_mid)/w))``, so

    ΔQ_{N−10}(V) = δ·g(V),   δ = (Q0 − 0.8·Q_nom)·(10² − N²)/L²,

and var ΔQ = δ²·var g on the grid: log10 var ΔQ = −4·log10 L + const (up to the
small Q0 spread and the noise). Resistance and impedance rise with n/L.
"""

from __future__ import annotations

import numpy as np

from voltloop.surrogates.lifetime.dataset import EOL_FRACTION, CellHistory

NOMINAL_AH = 1.1
V_MID = 3.25
V_WIDTH = 0.05


def logistic_shape(voltage_V: np.ndarray) -> np.ndarray:
    """g(V) (g,): fraction of the capacity discharged when the cell reaches V."""
    return 1.0 / (1.0 + np.exp((np.asarray(voltage_V) - V_MID) / V_WIDTH))


def capacity_fade(cycles: np.ndarray, life: float, q0: float) -> np.ndarray:
    """Planted discharge capacity (n,) in Ah at ``cycles`` (n,)."""
    return q0 - (q0 - EOL_FRACTION * NOMINAL_AH) * (np.asarray(cycles, float) / life) ** 2


def discharge_series(capacity_Ah: float, points: int, noise_V: float, rng) -> tuple:
    """Raw discharge voltage (m,) and cumulative capacity (m,) for one cycle."""
    s = np.linspace(0.002, 0.998, points)
    voltage = V_MID - V_WIDTH * np.log(s / (1.0 - s)) + rng.normal(0.0, noise_V, points)
    return voltage, capacity_Ah * s


def impedance(frequency_Hz: np.ndarray, r0: float, r1: float, sigma: float) -> np.ndarray:
    """Randles-type spectrum (k,): R0 + R1 ‖ C + semi-infinite Warburg σ(1−j)/√ω."""
    omega = 2 * np.pi * np.asarray(frequency_Hz, float)
    return r0 + r1 / (1 + 1j * omega * r1 * 0.5) + sigma * (1 - 1j) / np.sqrt(omega)


def make_cell(
    life: float,
    seed: int,
    *,
    cycles: int | None = None,
    curve_cycles: tuple[int, ...] = (10, 50, 100),
    noise_Ah: float = 2e-4,
    noise_V: float = 2e-4,
    curve_points: int = 400,
    protocol: dict[str, float] | None = None,
    eis_every: int = 50,
) -> CellHistory:
    """One synthetic cell with planted life ``life``; cycled to 1.1·life unless ``cycles``."""
    rng = np.random.default_rng(seed)
    n_cycles = int(cycles if cycles is not None else np.ceil(1.1 * life) + 1)
    index = np.arange(1, n_cycles + 1)
    q0 = NOMINAL_AH * (1.0 + rng.normal(0.0, 0.003))
    q_true = capacity_fade(index, life, q0)
    q = q_true + rng.normal(0.0, noise_Ah, n_cycles)
    wear = index / life
    ir = 0.020 * (1.0 + 0.4 * wear**2) + rng.normal(0.0, 2e-4, n_cycles)
    t_max = 33.0 + 4.0 * (1.0 / life) * 1000 + rng.normal(0.0, 0.1, n_cycles)
    curves = {}
    for c in curve_cycles:
        if c <= n_cycles:
            v, qq = discharge_series(float(q_true[c - 1]), curve_points, noise_V, rng)
            curves[int(c)] = {"voltage_V": v, "capacity_Ah": qq}
    freqs = np.logspace(4, -2, 61)
    spectra = []
    for c in range(eis_every, n_cycles + 1, eis_every) if eis_every else ():
        w = c / life
        z = impedance(freqs, 0.015 * (1 + 0.2 * w), 0.010 * (1 + 1.5 * w**2), 0.002 * (1 + w))
        z = z + rng.normal(0.0, 2e-5, z.size) + 1j * rng.normal(0.0, 2e-5, z.size)
        spectra.append({"cycle": c, "frequency_Hz": freqs, "impedance_ohm": z})
    data = {
        "cell_id": f"synthetic-{seed}",
        "nominal_capacity_Ah": NOMINAL_AH,
        "protocol": protocol or {"life_knob": float(np.log10(life))},
        "cycle_index": index,
        "discharge_capacity_Ah": q,
        "charge_capacity_Ah": q + 1e-3,
        "charge_time_s": 600.0 + rng.normal(0.0, 2.0, n_cycles),
        "temperature_max_C": t_max,
        "temperature_min_C": t_max - 5.0,
        "temperature_mean_C": t_max - 2.5,
        "temperature_integral_Cs": (t_max - 2.5) * 2400.0,
        "internal_resistance_ohm": ir,
        "discharge_curves": curves,
        "spectra": spectra,
        "end_of_life_cycle": None,
    }
    cell = CellHistory.from_dict(data)
    cell.end_of_life_cycle = cell.observed_end_of_life()
    return cell


def make_cells(n: int, seed: int = 0, low: float = 300.0, high: float = 1500.0, **kw) -> list:
    """``n`` cells with lives drawn log-uniformly in [low, high]."""
    rng = np.random.default_rng(seed)
    lives = 10 ** rng.uniform(np.log10(low), np.log10(high), n)
    return [make_cell(float(life), seed * 10_000 + i, **kw) for i, life in enumerate(lives)]
