"""EIS models (JSON round trip, validation) and analysis (Lin-KK, circuit fit)."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from voltloop.drivers.eis import (
    DEFAULT_CIRCUIT,
    EisSpec,
    EisSpectrum,
    fit_circuit,
    lin_kk,
    parameter_names,
)

TRUE = {"R0": 0.020, "R1": 0.010, "R2": 0.015}


def battery_impedance(f: np.ndarray) -> np.ndarray:
    """R0 + R1||CPE1 + R2||CPE2 + finite-length Warburg (open), shape (n,)."""
    w = 2 * np.pi * f

    def r_cpe(r: float, q: float, a: float) -> np.ndarray:
        return r / (1 + r * q * (1j * w) ** a)

    x = np.sqrt(1j * w * 50.0)
    return (
        TRUE["R0"]
        + r_cpe(TRUE["R1"], 0.1, 0.9)
        + r_cpe(TRUE["R2"], 5.0, 0.85)
        + 0.02 / np.tanh(x) / x
    )


def noisy_spectrum(seed: int = 0, **kwargs: object) -> EisSpectrum:
    spec = EisSpec()
    f = spec.frequencies_Hz
    rng = np.random.default_rng(seed)
    z = battery_impedance(f) * (1 + 0.001 * rng.standard_normal(f.size))
    return EisSpectrum.from_arrays(f, z, spec=spec, **kwargs)


def test_spec_defaults_follow_field_practice() -> None:
    spec = EisSpec()
    assert spec.n_points == 61  # 10 kHz -> 10 mHz, 10 points per decade
    f = spec.frequencies_Hz
    assert f[0] == pytest.approx(1e4) and f[-1] == pytest.approx(1e-2)
    assert spec.amplitude_Vrms == 5e-3 and spec.dc_potential_V is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"f_start_Hz": 1.0, "f_end_Hz": 10.0}, "f_end_Hz"),
        ({"amplitude_Vrms": 0}, "amplitude_Vrms"),
        ({"amplitude_Vrms": -5e-3}, "amplitude_Vrms"),
        ({"points_per_decade": float("nan")}, "points_per_decade"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_spec_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        EisSpec(**kwargs)


def test_spec_and_spectrum_round_trip_through_json() -> None:
    spec = EisSpec(f_start_Hz=1e3, f_end_Hz=1.0, dc_potential_V=3.3, fit_circuit=DEFAULT_CIRCUIT)
    assert EisSpec.model_validate_json(spec.model_dump_json()) == spec
    spectrum = noisy_spectrum(status=np.zeros(61, dtype=int), instrument="es4_hr1.3")
    back = EisSpectrum.model_validate_json(spectrum.model_dump_json())
    assert back == spectrum
    np.testing.assert_array_equal(back.impedance, spectrum.impedance)


def test_spectrum_arrays_must_agree() -> None:
    with pytest.raises(pydantic.ValidationError, match="differ in length"):
        EisSpectrum(
            frequencies_Hz=[1.0, 2.0], z_real_ohm=[1.0], z_imag_ohm=[0.0, 0.0], status=[0, 0]
        )


def test_flagged_and_nan_points_are_not_valid() -> None:
    spectrum = noisy_spectrum()
    status = [0] * 61
    status[3] = 2  # overload
    z_real = list(spectrum.z_real_ohm)
    z_real[5] = float("nan")
    flagged = spectrum.model_copy(update={"status": status, "z_real_ohm": z_real})
    mask = flagged.valid_mask
    assert mask.sum() == 59 and not mask[3] and not mask[5]


def test_lin_kk_accepts_a_causal_spectrum_and_rejects_a_drifting_one() -> None:
    good = lin_kk(noisy_spectrum(), threshold=0.01)
    assert good.passed and good.max_residual < 0.005
    assert len(good.residuals_real) == 61
    spectrum = noisy_spectrum()
    z = spectrum.impedance
    drift = np.linspace(0, 0.01, z.size)  # cell relaxing during the sweep: not KK-compliant
    bad = lin_kk(EisSpectrum.from_arrays(spectrum.frequencies, z + drift), threshold=0.01)
    assert not bad.passed and bad.max_residual > 0.01


def test_circuit_fit_recovers_the_model_resistances() -> None:
    fit = fit_circuit(noisy_spectrum(seed=1), DEFAULT_CIRCUIT)
    for name, value in TRUE.items():
        assert fit.value(name) == pytest.approx(value, rel=0.03)
    assert fit.relative_rmse < 0.005
    names = [p.name for p in fit.parameters]
    assert names == parameter_names(DEFAULT_CIRCUIT)[0]
    units = {p.name: p.unit for p in fit.parameters}
    assert units["R0"] == "Ohm" and units["Wo1_1"] == "sec"
    with pytest.raises(KeyError, match="R9"):
        fit.value("R9")


def test_analysed_spectrum_keeps_check_and_fit_through_json() -> None:
    spectrum = noisy_spectrum(seed=2).analysed(circuit=DEFAULT_CIRCUIT)
    assert spectrum.linkk is not None and spectrum.linkk.passed
    assert spectrum.fit is not None and spectrum.fit.circuit == DEFAULT_CIRCUIT
    assert EisSpectrum.model_validate_json(spectrum.model_dump_json()) == spectrum


def test_numpy2_patch_is_applied_in_one_place() -> None:
    from impedance.validation import circuit_elements

    fit_circuit(noisy_spectrum(), DEFAULT_CIRCUIT)
    assert circuit_elements["np"] is np


@pytest.mark.parametrize("seed", [0, 3])
def test_lin_kk_equals_impedance_py_linkk(seed: int) -> None:
    """Same element count, mu and residuals as impedance.py's own ``linKK`` (whose
    fitted-model evaluation we replace), on a causal and a drifting spectrum."""
    import contextlib
    import io

    from impedance.validation import linKK

    from voltloop.drivers.eis import _patch_impedance_for_numpy2

    _patch_impedance_for_numpy2()  # linKK's own evaluation needs it under NumPy 2
    spectrum = noisy_spectrum(seed=seed)
    z = spectrum.impedance
    drifting = EisSpectrum.from_arrays(spectrum.frequencies, z + np.linspace(0, 0.01, z.size))
    for case in (spectrum, drifting):
        ours = lin_kk(case)
        with contextlib.redirect_stdout(io.StringIO()):
            m, mu, _, res_real, res_imag = linKK(
                case.frequencies, case.impedance, c=0.85, max_M=100, fit_type="complex",
                add_cap=True,
            )  # fmt: skip
        assert (ours.M, ours.mu) == (m, pytest.approx(mu, rel=1e-12))
        np.testing.assert_allclose(ours.residuals_real, res_real, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.residuals_imag, res_imag, rtol=1e-9, atol=1e-12)
