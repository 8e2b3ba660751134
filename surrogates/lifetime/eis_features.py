"""Features of EIS checkpoint spectra: ohmic resistance, arcs, diffusion, data quality.

From one spectrum (frequencies (k,), complex impedance (k,), any order):

* ``eis_r0`` — the high-frequency intercept of the Nyquist plot with the real
  axis (linear interpolation where −Im Z changes sign; if it never does, the real
  part at the highest frequency).
* ``eis_r_arc`` — total resistance of the mid-frequency arc(s): Re Z at the local
  minimum of −Im Z that separates the arcs from the diffusion tail, minus R0
  (the whole real span if there is no tail).
* ``eis_warburg`` — the Warburg coefficient σ (Ω·s^−½): slope of Re Z against
  ω^−½ over the diffusion tail (frequencies below the arc/tail minimum, ≥ 3 points).
* ``eis_linkk_residual`` — the largest Lin-KK residual (real or imaginary part,
  relative to |Z|) from impedance.py's ``linKK(c=0.85, max_M=100, add_cap=True)``:
  the statistic the potentiostat driver stores with every measured spectrum, so a
  stored value is reused and a generated spectrum gets the same test; a large value
  means the cell was not stationary or the data are corrupt.
* ``eis_r1``, ``eis_r2`` (opt-in: a fit costs seconds per spectrum) — arc
  resistances of an equivalent circuit fit ``R0-p(R1,CPE1)-p(R2,CPE2)-W1``
  (impedance.py), seeded from the estimates
  above. If the spectrum row already stores fitted ``R1``/``R2`` those are used.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from voltloop.surrogates.lifetime.dataset import (
    CellHistory,
    ImpedanceSpectrum,
    LifetimeDataError,
    MissingDataError,
)

EIS_FEATURES = ("eis_r0", "eis_r_arc", "eis_warburg", "eis_linkk_residual")
#: Lin-KK settings, as the potentiostat driver's acceptance test (drivers/eis.py)
LINKK_C = 0.85
LINKK_MAX_M = 100
CIRCUIT_FEATURES = ("eis_r1", "eis_r2")
CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)-W1"
MIN_POINTS = 8


class EisFeatureError(LifetimeDataError):
    """A spectrum that cannot give the requested feature."""


def _sorted_spectrum(spectrum: ImpedanceSpectrum) -> tuple[np.ndarray, np.ndarray]:
    f, z = spectrum.frequency_Hz, spectrum.impedance_ohm
    ok = np.isfinite(f) & np.isfinite(z.real) & np.isfinite(z.imag) & (f > 0)
    if ok.sum() < MIN_POINTS:
        raise EisFeatureError(
            f"spectrum at cycle {spectrum.cycle} has {int(ok.sum())} finite points; "
            f"at least {MIN_POINTS} are needed"
        )
    order = np.argsort(-f[ok])  # high → low frequency
    return f[ok][order], z[ok][order]


def high_frequency_intercept(f: np.ndarray, z: np.ndarray) -> float:
    """R0 (Ω) from a spectrum sorted high → low frequency."""
    neg_im = -z.imag
    crossings = np.flatnonzero((neg_im[:-1] <= 0) & (neg_im[1:] > 0))
    if crossings.size:
        i = crossings[0]
        w = neg_im[i] / (neg_im[i] - neg_im[i + 1])
        return float(z.real[i] + w * (z.real[i + 1] - z.real[i]))
    return float(z.real[0])


def arc_tail_split(z: np.ndarray) -> int | None:
    """Index of the local minimum of −Im Z after the first arc's peak (None if no tail)."""
    neg_im = -z.imag
    peak = int(np.argmax(neg_im[: max(2, len(z) * 3 // 4)]))
    for i in range(peak + 1, len(z) - 1):
        if neg_im[i] <= neg_im[i - 1] and neg_im[i] < neg_im[i + 1]:
            return i
    return None


def nonparametric_features(spectrum: ImpedanceSpectrum) -> dict[str, float]:
    """R0, arc resistance and Warburg coefficient without a circuit model."""
    f, z = _sorted_spectrum(spectrum)
    r0 = high_frequency_intercept(f, z)
    split = arc_tail_split(z)
    if split is None:
        r_arc = float(z.real[-1] - r0)
        warburg = float("nan")
    else:
        r_arc = float(z.real[split] - r0)
        tail_f, tail_re = f[split:], z.real[split:]
        if tail_f.size < 3:
            warburg = float("nan")
        else:
            warburg = float(np.polyfit((2 * np.pi * tail_f) ** -0.5, tail_re, 1)[0])
    return {"eis_r0": r0, "eis_r_arc": r_arc, "eis_warburg": warburg}


def linkk_residual(spectrum: ImpedanceSpectrum) -> float:
    """Largest relative Lin-KK residual (real or imaginary part): the potentiostat
    driver's acceptance statistic (drivers/eis.py ``lin_kk``), so the value stored
    with a measured spectrum is used as it is, and a spectrum without one (a
    generated history) gets the same test with the same settings."""
    if spectrum.linkk_residual is not None and np.isfinite(spectrum.linkk_residual):
        return float(spectrum.linkk_residual)
    import impedance.validation as validation

    # impedance 1.7.1 evaluates circuit strings with a namespace lacking numpy
    # under NumPy 2 (field notes); give it the module it expects.
    validation.circuit_elements.setdefault("np", np)
    f, z = _sorted_spectrum(spectrum)
    with contextlib.redirect_stdout(io.StringIO()):  # linKK prints its progress
        _, _, _, res_real, res_imag = validation.linKK(
            f, z, c=LINKK_C, max_M=LINKK_MAX_M, fit_type="complex", add_cap=True
        )
    return float(max(np.max(np.abs(res_real)), np.max(np.abs(res_imag))))


def circuit_resistances(spectrum: ImpedanceSpectrum) -> dict[str, float]:
    """R1, R2 of ``R0-p(R1,CPE1)-p(R2,CPE2)-W1`` (stored, else fitted now)."""
    stored = {k.upper(): v for k, v in spectrum.circuit.items()}
    if "R1" in stored and "R2" in stored:
        return {"eis_r1": float(stored["R1"]), "eis_r2": float(stored["R2"])}
    from impedance.models.circuits import CustomCircuit

    f, z = _sorted_spectrum(spectrum)
    guess = nonparametric_features(spectrum)
    r_arc = max(guess["eis_r_arc"], 1e-6)
    sigma = guess["eis_warburg"] if np.isfinite(guess["eis_warburg"]) else r_arc
    circuit = CustomCircuit(
        CIRCUIT,
        initial_guess=[guess["eis_r0"], r_arc / 3, 1.0, 0.9, 2 * r_arc / 3, 0.1, 0.9, sigma],
    )
    try:
        circuit.fit(
            f,
            z,
            bounds=([0, 0, 0, 0.3, 0, 0, 0.3, 0], [np.inf] * 3 + [1] + [np.inf] * 2 + [1, np.inf]),
        )
    except (RuntimeError, ValueError) as exc:
        raise EisFeatureError(f"circuit fit failed at cycle {spectrum.cycle}: {exc}") from None
    p = circuit.parameters_
    r1, r2 = sorted((float(p[1]), float(p[4])))
    return {"eis_r1": r1, "eis_r2": r2}


def spectrum_features(
    spectrum: ImpedanceSpectrum, names: Sequence[str] = EIS_FEATURES
) -> dict[str, float]:
    """The requested EIS features of one spectrum; NaN results raise (never zero)."""
    unknown = set(names) - set(EIS_FEATURES) - set(CIRCUIT_FEATURES)
    if unknown:
        raise EisFeatureError(f"unknown EIS feature(s): {', '.join(sorted(unknown))}")
    values = nonparametric_features(spectrum)
    if "eis_linkk_residual" in names:
        values["eis_linkk_residual"] = linkk_residual(spectrum)
    if set(CIRCUIT_FEATURES) & set(names):
        values.update(circuit_resistances(spectrum))
    out = {n: values[n] for n in names}
    bad = [n for n, v in out.items() if not np.isfinite(v)]
    if bad:
        raise EisFeatureError(
            f"spectrum at cycle {spectrum.cycle}: {', '.join(bad)} undefined "
            "(no diffusion tail below the arc?)"
        )
    return out


def latest_spectrum(cell: CellHistory, up_to_cycle: int | None = None) -> ImpedanceSpectrum:
    """The cell's last checkpoint spectrum at or before ``up_to_cycle``."""
    spectra = [s for s in cell.spectra if up_to_cycle is None or s.cycle <= up_to_cycle]
    if not spectra:
        limit = "" if up_to_cycle is None else f" up to cycle {up_to_cycle}"
        raise MissingDataError(f"cell {cell.cell_id}: no impedance spectrum{limit}")
    return max(spectra, key=lambda s: s.cycle)


def eis_feature_matrix(
    cells: Sequence[CellHistory],
    names: Sequence[str] = EIS_FEATURES,
    up_to_cycle: int | None = None,
) -> np.ndarray:
    """EIS features (n_cells, n_features) from each cell's latest spectrum."""
    rows = []
    for cell in cells:
        spectrum = latest_spectrum(cell, up_to_cycle)
        try:
            rows.append(list(spectrum_features(spectrum, names).values()))
        except EisFeatureError as exc:
            raise EisFeatureError(f"cell {cell.cell_id}: {exc}") from None
    return np.asarray(rows, dtype=float).reshape(len(cells), len(names))
