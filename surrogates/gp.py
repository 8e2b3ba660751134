"""Gaussian-process surrogates for protocol campaigns (BoTorch ``SingleTaskGP``).

One GP per outcome: the objective (e.g. cycle life) and each constraint outcome
(e.g. peak cell temperature) get their own ``SingleTaskGP`` with a ``Normalize``
input transform (over the space's bounds) and a ``Standardize`` outcome transform,
combined into a ``ModelListGP`` whose output ``i`` is outcome ``i``. Each GP is fit
on the rows where its outcome is finite, so a cell that died before its temperature
log arrived still teaches the lifetime model.

Noise: when an outcome comes with per-observation variances (an early-life
prediction with its predicted std², a measured life with a small variance) the GP
uses them as fixed heteroskedastic observation noise — an early guess weighs less
than a measured life. Without variances the noise level is inferred.

Shapes: ``X`` is ``n × d`` (float64), outcomes ``n``; posterior queries take
``b × q × d`` and return ``b × q × m``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from botorch.exceptions.warnings import InputDataWarning, OptimizationWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood

DTYPE = torch.float64
#: Smallest observation variance passed to a fixed-noise GP (standardised units stay > 0).
MIN_NOISE_VAR = 1e-6


class SurrogateInputError(ValueError):
    """Observations a surrogate cannot be fit on (shape mismatch, NaN inputs, ...)."""

    exit_code = 2


@dataclass(frozen=True)
class OutcomeSeries:
    """One outcome's observations.

    Attributes:
        name: outcome name ("cycle_life", "peak_temperature_C").
        values: shape ``n``; NaN where not (yet) observed.
        variances: shape ``n`` observation-noise variances, or None to infer the noise.
            NaN entries are filled with ``default_variance``.
        default_variance: variance for rows without one (a measured outcome).
    """

    name: str
    values: np.ndarray
    variances: np.ndarray | None = None
    default_variance: float = MIN_NOISE_VAR


def as_tensor(X: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``X`` as a float64 tensor (no copy when it already is one)."""
    if isinstance(X, torch.Tensor):
        return X.to(DTYPE)
    return torch.as_tensor(np.asarray(X, dtype=float), dtype=DTYPE)


def fit_outcome_gp(
    X: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    bounds: np.ndarray | torch.Tensor,
    y_var: np.ndarray | torch.Tensor | None = None,
    *,
    max_iter: int = 200,
) -> SingleTaskGP:
    """Fit a ``SingleTaskGP`` on ``X`` (``n × d``) and ``y`` (``n``).

    ``bounds`` (``2 × d``) fix the input normalisation to the search space, so the
    length-scale priors mean the same thing in every round. ``y_var`` (``n``) switches
    on fixed heteroskedastic noise. Raises :class:`SurrogateInputError` for non-finite
    data or mismatched shapes.
    """
    X_t = as_tensor(X)
    y_t = as_tensor(y).reshape(-1, 1)
    b_t = as_tensor(bounds)
    if X_t.ndim != 2 or X_t.shape[0] != y_t.shape[0]:
        raise SurrogateInputError(
            f"X must be n × d with one row per outcome value; got X {tuple(X_t.shape)}, "
            f"y {tuple(y_t.shape)}"
        )
    if X_t.shape[0] == 0:
        raise SurrogateInputError("cannot fit a GP on zero observations")
    if not torch.isfinite(X_t).all() or not torch.isfinite(y_t).all():
        raise SurrogateInputError("GP inputs and outcomes must be finite (drop NaN rows first)")
    yvar_t = None
    if y_var is not None:
        yvar_t = as_tensor(y_var).reshape(-1, 1)
        if yvar_t.shape != y_t.shape or not torch.isfinite(yvar_t).all() or (yvar_t < 0).any():
            raise SurrogateInputError("observation variances must be finite, ≥ 0, one per row")
        yvar_t = yvar_t.clamp_min(MIN_NOISE_VAR)
    model = SingleTaskGP(
        X_t,
        y_t,
        train_Yvar=yvar_t,
        input_transform=Normalize(d=X_t.shape[-1], bounds=b_t),
        outcome_transform=Standardize(m=1),
    )
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    with warnings.catch_warnings():
        # Small or constant data sets trigger BoTorch's advisory warnings; the proposer
        # checks for those cases itself and reports them in its reason string.
        warnings.simplefilter("ignore", InputDataWarning)
        warnings.simplefilter("ignore", OptimizationWarning)
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": max_iter}})
    model.eval()
    return model


def fit_outcome_models(
    X: np.ndarray | torch.Tensor,
    outcomes: list[OutcomeSeries],
    bounds: np.ndarray | torch.Tensor,
    *,
    max_iter: int = 200,
) -> ModelListGP:
    """One GP per outcome (each on its finite rows), as a ``ModelListGP``.

    Output ``i`` of the returned model is ``outcomes[i]``. Raises
    :class:`SurrogateInputError` if an outcome has no finite value.
    """
    X_np = np.asarray(X, dtype=float)
    models = []
    for outcome in outcomes:
        values = np.asarray(outcome.values, dtype=float)
        if values.shape != (len(X_np),):
            raise SurrogateInputError(
                f"outcome {outcome.name!r} has shape {values.shape}, expected ({len(X_np)},)"
            )
        rows = np.isfinite(values)
        if not rows.any():
            raise SurrogateInputError(f"outcome {outcome.name!r} has no finite observation")
        variances = None
        if outcome.variances is not None:
            variances = np.asarray(outcome.variances, dtype=float)
            variances = np.where(np.isfinite(variances), variances, outcome.default_variance)
            variances = variances[rows]
        models.append(
            fit_outcome_gp(X_np[rows], values[rows], bounds, variances, max_iter=max_iter)
        )
    return ModelListGP(*models)


def posterior_mean_std(
    model: torch.nn.Module, X: torch.Tensor, output: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of output ``output`` at ``X`` (``n × d``) → two ``n`` tensors."""
    with torch.no_grad():
        posterior = model.posterior(X.unsqueeze(-2) if X.ndim == 2 else X)
        mean = posterior.mean[..., 0, output] if X.ndim == 2 else posterior.mean[..., output]
        var = posterior.variance[..., 0, output] if X.ndim == 2 else posterior.variance[..., output]
    return mean, var.clamp_min(0.0).sqrt()


def hyperparameters(model: torch.nn.Module) -> dict[str, list[float] | float]:
    """Fitted hyper-parameters of a ``SingleTaskGP`` or ``ModelListGP`` (for the registry)."""
    found: dict[str, list[float] | float] = {}
    sub_models = getattr(model, "models", [model])
    for i, sub in enumerate(sub_models):
        covar = sub.covar_module
        kernel = getattr(covar, "base_kernel", covar)
        lengthscale = getattr(kernel, "lengthscale", None)
        if lengthscale is not None:
            found[f"output{i}.lengthscale"] = lengthscale.detach().flatten().tolist()
        outputscale = getattr(covar, "outputscale", None)
        if outputscale is not None:
            found[f"output{i}.outputscale"] = float(outputscale.detach())
        noise = getattr(sub.likelihood, "noise", None)
        if noise is not None and noise.numel() == 1:
            found[f"output{i}.noise"] = float(noise.detach())
    return found
