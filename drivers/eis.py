"""EIS request and spectrum models, Lin-KK validation and equivalent-circuit fitting.

``EisSpec`` is what the orchestrator asks a potentiostat for; ``EisSpectrum`` what it
gets back: frequencies (high → low, as measured), complex impedance and per-point
status flags, plus — once analysed — the Lin-KK check and an optional circuit fit.
Both are pydantic models that round-trip through JSON (``model_dump_json`` /
``model_validate_json``) so the database and the CLI store exactly what was measured.

Analysis uses impedance.py (MIT): its Lin-KK test (``impedance.validation.linKK`` with
``add_cap=True``, Schönleber et al., Electrochim. Acta 131 (2014) 20; the fit is
vectorised here and checked against it) and
``impedance.models.circuits.CustomCircuit``.
"""

# ruff: noqa: N815 - unit-suffixed physics names (f_start_Hz, amplitude_Vrms)

from __future__ import annotations

import math
import warnings
from typing import Annotated, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_CIRCUIT = "R0-p(R1,CPE1)-p(R2,CPE2)-Wo1"
#: Lin-KK acceptance: largest |residual| relative to |Z| (real or imaginary part).
DEFAULT_LINKK_THRESHOLD = 0.01
#: Lin-KK element search: add RC elements until mu <= 0.85 (Schönleber's c), at most 100.
LINKK_MU_CRITERION = 0.85
LINKK_MAX_M = 100

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _patch_impedance_for_numpy2() -> None:
    """The one place voltloop patches impedance.py.

    impedance.py 1.7.1 evaluates Lin-KK circuit strings with ``eval(…, circuit_elements)``
    and the strings call ``np.…``, but under NumPy 2 ``np`` is no longer reachable from
    that namespace, so ``linKK`` raises ``NameError: name 'np' is not defined``
    (field notes). Adding ``np`` to the element namespace fixes it; harmless on
    versions that do not need it.
    """
    from impedance.validation import circuit_elements

    circuit_elements.setdefault("np", np)


class EisSpec(BaseModel):
    """An EIS measurement request (potentiostatic, sweeping high → low frequency)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    f_start_Hz: PositiveFloat = 10e3
    f_end_Hz: PositiveFloat = 10e-3
    points_per_decade: PositiveFloat = 10.0
    amplitude_Vrms: PositiveFloat = 5e-3
    dc_potential_V: float | None = Field(
        default=None, description="DC level; None = at the cell's open-circuit voltage"
    )
    linkk_threshold: PositiveFloat = DEFAULT_LINKK_THRESHOLD
    fit_circuit: str | None = Field(
        default=None, description=f"impedance.py circuit string to fit, e.g. {DEFAULT_CIRCUIT!r}"
    )

    @model_validator(mode="after")
    def _high_to_low(self) -> Self:
        if self.f_end_Hz >= self.f_start_Hz:
            raise ValueError(
                f"f_end_Hz = {self.f_end_Hz:g} must be below f_start_Hz = {self.f_start_Hz:g}"
                " (the sweep runs high → low)"
            )
        return self

    @property
    def n_points(self) -> int:
        """``round(decades × points_per_decade) + 1``."""
        decades = math.log10(self.f_start_Hz / self.f_end_Hz)
        return max(2, round(decades * self.points_per_decade) + 1)

    @property
    def frequencies_Hz(self) -> np.ndarray:
        """The device's sweep, shape (n_points,), high → low, log-spaced, ends included."""
        k = np.arange(self.n_points, dtype=float)
        return self.f_start_Hz * (self.f_end_Hz / self.f_start_Hz) ** (k / (self.n_points - 1))


class LinKKResult(BaseModel):
    """Lin-KK validation: ``M`` RC elements, ``mu`` (under/over-fit measure) and the
    residuals relative to |Z|, each of shape (n,)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    M: int
    mu: float
    residuals_real: list[float]
    residuals_imag: list[float]
    threshold: float

    @property
    def max_residual(self) -> float:
        return float(max(np.max(np.abs(self.residuals_real)), np.max(np.abs(self.residuals_imag))))

    @property
    def passed(self) -> bool:
        return self.max_residual <= self.threshold


class CircuitParameter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    value: float
    unit: str
    std: float | None = None  # one standard deviation from the fit's covariance


class CircuitFit(BaseModel):
    """An equivalent-circuit fit; ``rmse_ohm`` is the RMS of |Z_fit − Z|,
    ``relative_rmse`` the RMS of |Z_fit − Z| / |Z|."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    circuit: str
    parameters: list[CircuitParameter]
    rmse_ohm: float
    relative_rmse: float

    def value(self, name: str) -> float:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter.value
        raise KeyError(
            f"no parameter {name!r} in {self.circuit}; have {[p.name for p in self.parameters]}"
        )


class EisSpectrum(BaseModel):
    """A measured spectrum. Arrays are lists of equal length n (points in measured order,
    high → low frequency): ``frequencies_Hz``, ``z_real_ohm``, ``z_imag_ohm``, ``status``
    (MethodSCRIPT status flags per point, 0 = OK) and ``current_range`` (device range
    code per point, or None)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    frequencies_Hz: list[float]
    z_real_ohm: list[float]
    z_imag_ohm: list[float]
    status: list[int]
    current_range: list[int | None] = Field(default_factory=list)
    spec: EisSpec | None = None
    dc_potential_V: float | None = None  # the DC level used (the OCV read if spec said None)
    instrument: str | None = None  # firmware / identity string
    complete: bool = True  # False if aborted before the last frequency
    linkk: LinKKResult | None = None
    fit: CircuitFit | None = None

    @model_validator(mode="after")
    def _same_lengths(self) -> Self:
        n = len(self.frequencies_Hz)
        lengths = {len(self.z_real_ohm), len(self.z_imag_ohm), len(self.status)}
        if self.current_range:
            lengths.add(len(self.current_range))
        if lengths != {n}:
            raise ValueError(
                f"spectrum arrays differ in length: {n} frequencies, {sorted(lengths)}"
            )
        return self

    @classmethod
    def from_arrays(
        cls,
        frequencies_Hz: np.ndarray,
        impedance_ohm: np.ndarray,
        status: np.ndarray | None = None,
        **kwargs: object,
    ) -> EisSpectrum:
        """From a frequency array (n,) and a complex impedance array (n,)."""
        f = np.asarray(frequencies_Hz, dtype=float)
        z = np.asarray(impedance_ohm, dtype=complex)
        flags = np.zeros(len(f), dtype=int) if status is None else np.asarray(status, dtype=int)
        return cls(
            frequencies_Hz=f.tolist(),
            z_real_ohm=z.real.tolist(),
            z_imag_ohm=z.imag.tolist(),
            status=flags.tolist(),
            **kwargs,
        )

    @property
    def frequencies(self) -> np.ndarray:
        """Shape (n,), Hz."""
        return np.asarray(self.frequencies_Hz, dtype=float)

    @property
    def impedance(self) -> np.ndarray:
        """Complex impedance, shape (n,), ohm."""
        return np.asarray(self.z_real_ohm, dtype=float) + 1j * np.asarray(
            self.z_imag_ohm, dtype=float
        )

    @property
    def n_points(self) -> int:
        return len(self.frequencies_Hz)

    @property
    def valid_mask(self) -> np.ndarray:
        """Points that are finite and carry no overload/underload/timing flag, shape (n,)."""
        z = self.impedance
        return np.isfinite(z.real) & np.isfinite(z.imag) & (np.asarray(self.status) == 0)

    def analysed(
        self, *, linkk_threshold: float | None = None, circuit: str | None = None
    ) -> EisSpectrum:
        """A copy with the Lin-KK check (always) and a circuit fit (if ``circuit``)."""
        threshold = linkk_threshold or (
            self.spec.linkk_threshold if self.spec else DEFAULT_LINKK_THRESHOLD
        )
        circuit = circuit or (self.spec.fit_circuit if self.spec else None)
        update: dict[str, object] = {"linkk": lin_kk(self, threshold=threshold)}
        if circuit:
            update["fit"] = fit_circuit(self, circuit)
        return self.model_copy(update=update)


def _valid_arrays(spectrum: EisSpectrum, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    mask = spectrum.valid_mask
    if int(mask.sum()) < minimum:
        raise ValueError(
            f"spectrum has {int(mask.sum())} valid points; at least {minimum} are needed"
        )
    return spectrum.frequencies[mask], spectrum.impedance[mask]


def lin_kk(spectrum: EisSpectrum, *, threshold: float = DEFAULT_LINKK_THRESHOLD) -> LinKKResult:
    """Lin-KK test on the valid points, as impedance.py's ``linKK`` with ``add_cap=True``,
    ``fit_type="complex"``, c = 0.85 and at most 100 RC elements: RC elements are added
    until mu <= c, each count fitted by linear least squares (Schönleber et al. 2014,
    Eq. 14). Residuals are relative to |Z| (impedance.py's definition).

    impedance.py's time constants (``get_tc_distribution``) and mu (``calc_mu``) are used
    as they are; the design matrix and the fitted model are built here with whole-array
    NumPy. impedance.py builds each matrix column with a type-checked element call per
    time constant (~650 calls for a 25-element fit) and evaluates the model as Python
    source text, which made one check of a 61-point spectrum take ~27 ms (~15 s of the
    default dry run's 576 checkpoints); this takes well under 1 ms.
    ``tests/unit/methodscript/test_eis.py`` checks M, mu and the residuals against
    ``impedance.validation.linKK`` itself.
    """
    from impedance.validation import calc_mu, get_tc_distribution

    f, z = _valid_arrays(spectrum, 5)
    w = 2 * np.pi * f
    abs_z = np.abs(z)
    b_re, b_im = z.real / abs_z, z.imag / abs_z
    m, mu = 0, 1.0
    while mu > LINKK_MU_CRITERION and m < LINKK_MAX_M:
        m += 1
        ts = get_tc_distribution(f, m)
        # columns: R0, R_1..R_M, 1/C, L, each over |Z| (real and imaginary parts)
        a_re = np.zeros((f.size, m + 3))
        a_im = np.zeros((f.size, m + 3))
        a_im[:, -2] = -1 / (w * abs_z)
        a_re[:, 0] = 1 / abs_z
        a_im[:, -1] = w / abs_z
        k = 1 / (1 + 1j * np.outer(w, ts))
        a_re[:, 1 : m + 1] = k.real / abs_z[:, None]
        a_im[:, 1 : m + 1] = k.imag / abs_z[:, None]
        x = np.linalg.inv(a_re.T.dot(a_re) + a_im.T.dot(a_im))
        elements = x.dot(a_re.T.dot(b_re) + a_im.T.dot(b_im))
        mu = calc_mu(elements[1:-2])
    residuals = (z - linkk_model(elements, ts, f)) / abs_z
    return LinKKResult(
        M=m,
        mu=float(mu),
        residuals_real=residuals.real.tolist(),
        residuals_imag=residuals.imag.tolist(),
        threshold=threshold,
    )


def linkk_model(elements: np.ndarray, ts: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Impedance of a fitted Lin-KK model at ``f`` (Hz): what impedance.py's
    ``eval_linKK`` computes — R0 + sum of R_k / (1 + j w tau_k) + j w L, plus a series
    capacitance 1 / (j w C) with C = 1 / elements[-2] when ``elements`` has one (the
    ``add_cap`` fit: elements = R0, R_1..R_M, 1/C, L)."""
    w = 2 * np.pi * np.asarray(f, dtype=float)
    m = len(ts)
    z = elements[0] + (elements[1 : m + 1] / (1 + 1j * np.outer(w, ts))).sum(axis=1)
    z = z + 1j * w * elements[-1]
    if elements.size == m + 3:
        z = z + 1 / (1j * w * (1 / elements[-2]))
    return z


def _initial_guess(circuit: str, f: np.ndarray, z: np.ndarray) -> list[float]:
    """A data-driven start for the usual battery circuits (R, p(R,CPE), Wo elements).

    R0 from the high-frequency real part; the low-frequency real part beyond it is shared
    among the other resistances; time constants spread from f_max/30 down to f_min.
    """
    from impedance.models.circuits.elements import get_element_from_name
    from impedance.models.circuits.fitting import extract_circuit_elements

    r_hf = float(np.min(z.real))
    r_span = max(float(np.max(z.real)) - r_hf, 1e-6 * max(abs(r_hf), 1e-3))
    elements = extract_circuit_elements(circuit)
    n_slow = max(1, sum(1 for e in elements if get_element_from_name(e) in ("R", "CPE", "C")) // 2)
    taus = np.geomspace(1 / (2 * np.pi * f.max() / 30), 1 / (2 * np.pi * f.min()), n_slow + 1)
    guess: list[float] = []
    r_index = 0
    tau_index = 0
    r_share = r_span / (n_slow + 1)
    for name in elements:
        kind = get_element_from_name(name)
        if kind == "R":
            guess.append(r_hf if r_index == 0 else r_share)
            r_index += 1
        elif kind == "CPE":
            guess += [float(taus[min(tau_index, len(taus) - 1)] / r_share), 0.85]
            tau_index += 1
        elif kind == "C":
            guess.append(float(taus[min(tau_index, len(taus) - 1)] / r_share))
            tau_index += 1
        elif kind in ("Wo", "Ws"):
            guess += [r_share, float(1 / (2 * np.pi * f.min()))]
        elif kind == "W":
            guess.append(r_share)
        elif kind == "L":
            guess.append(1e-7)
        else:
            raise ValueError(f"no automatic initial guess for element {name!r}; pass initial_guess")
    return guess


def fit_circuit(
    spectrum: EisSpectrum,
    circuit: str = DEFAULT_CIRCUIT,
    *,
    initial_guess: list[float] | None = None,
    max_evaluations: int = 2000,
) -> CircuitFit:
    """Fit ``circuit`` (impedance.py syntax) to the valid points with ``CustomCircuit``.

    Returns the parameters with names, units and standard deviations, and the residual.
    Starts from the data-driven guess; only if that fit is poor (relative RMS above 5 %)
    tries a second start with halved capacitances, and keeps the better. Each attempt is
    bounded (``max_evaluations`` model evaluations). Raises ValueError if every attempt
    fails. (Importing impedance.py's circuits costs ~5 s once per process: it pulls in
    its matplotlib/pandas plotting module.)
    """
    _patch_impedance_for_numpy2()
    from impedance.models.circuits import CustomCircuit

    f, z = _valid_arrays(spectrum, 5)
    names, units = parameter_names(circuit)
    base = initial_guess or _initial_guess(circuit, f, z)
    if len(base) != len(names):
        raise ValueError(f"{circuit} has {len(names)} parameters, initial guess has {len(base)}")

    starts = [base] if initial_guess else [base, _second_start(circuit, base)]
    best: tuple[float, CustomCircuit] | None = None
    errors: list[str] = []
    for start in starts:
        if best is not None and best[0] <= 0.05:
            break
        model = CustomCircuit(circuit, initial_guess=list(start))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(f, z, maxfev=max_evaluations)
        except (RuntimeError, ValueError) as exc:
            errors.append(str(exc))
            continue
        rel = float(np.sqrt(np.mean(np.abs(model.predict(f) - z) ** 2 / np.abs(z) ** 2)))
        if np.isfinite(rel) and (best is None or rel < best[0]):
            best = (rel, model)
    if best is None:
        raise ValueError(f"circuit fit of {circuit} failed: {'; '.join(errors)}")
    rel, model = best
    popt = np.asarray(model.parameters_, dtype=float)
    perror = getattr(model, "conf_", None)
    parameters = [
        CircuitParameter(
            name=name,
            value=float(popt[i]),
            unit=unit,
            std=None if perror is None or not np.isfinite(perror[i]) else float(perror[i]),
        )
        for i, (name, unit) in enumerate(zip(names, units, strict=True))
    ]
    return CircuitFit(
        circuit=circuit,
        parameters=parameters,
        rmse_ohm=float(np.sqrt(np.mean(np.abs(model.predict(f) - z) ** 2))),
        relative_rmse=rel,
    )


def parameter_names(circuit: str) -> tuple[list[str], list[str]]:
    """Parameter names and units of ``circuit`` in impedance.py's order and naming
    (``R0``, ``CPE1_0``, ``CPE1_1``, ``Wo1_0`` …): ``CustomCircuit.get_param_names``."""
    _patch_impedance_for_numpy2()
    from impedance.models.circuits import CustomCircuit
    from impedance.models.circuits.fitting import calculateCircuitLength

    length = calculateCircuitLength(circuit)
    names, units = CustomCircuit(circuit, initial_guess=[1.0] * length).get_param_names()
    return list(names), list(units)


def _second_start(circuit: str, guess: list[float]) -> list[float]:
    """The guess with every capacitance-like parameter (CPE Q, C) halved."""
    from impedance.models.circuits.elements import get_element_from_name
    from impedance.models.circuits.fitting import extract_circuit_elements

    out = list(guess)
    index = 0
    for name in extract_circuit_elements(circuit):
        kind = get_element_from_name(name)
        if kind in ("CPE", "C"):
            out[index] *= 0.5
        index += {"CPE": 2, "Wo": 2, "Ws": 2}.get(kind, 1)
    return out
