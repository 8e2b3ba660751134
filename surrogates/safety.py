"""Safe mode: a candidate is proposed only if every safety model is confidently within limit.

A *safety constraint* is an outcome with a hard upper limit that must not be crossed on
a real cell (peak cell temperature, maximum pressure, gas evolution). In safe mode a
candidate ``x`` may enter a batch only if, for every safety model ``i``,

    UCB_i(x) = μ_i(x) + β · σ_i(x) ≤ limit_i

where ``μ_i`` and ``σ_i`` are the GP's *predictive* mean and standard deviation of the
outcome a newly built cell will show — latent posterior plus the fitted observation
noise, because each cell, not only the protocol's mean, must stay within the limit —
and ``β`` (``DEFAULT_SAFETY_BETA`` = 3.0, i.e. about 99.87 % one-sided
confidence for a Gaussian posterior) is stated in every proposal that used it. This
is the safe-set rule of SafeOpt (Sui et al. 2015) applied as a filter on the
candidates an acquisition function may choose from; it never clamps silently —
candidates that fail are removed and counted.

Lower limits (e.g. "at least 3.0 V") are expressed as upper limits on the negated
outcome by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

#: Multiplier of the posterior std in the safety upper confidence bound.
DEFAULT_SAFETY_BETA = 3.0  # 2.0 let 3 of 5,760 benchmark proposals over the limit (decision 0062)


@dataclass(frozen=True)
class SafetyLimit:
    """Outcome ``output`` of the model must stay ``≤ upper`` (named ``name``)."""

    name: str
    output: int
    upper: float


def upper_confidence_bound(
    model: torch.nn.Module, X: torch.Tensor, output: int, beta: float = DEFAULT_SAFETY_BETA
) -> torch.Tensor:
    """``μ + β σ`` of output ``output`` at each row of ``X`` (``n × d``) → shape ``n``.

    ``σ`` is the predictive std of a new observation (posterior plus observation noise;
    a fixed-noise GP uses its mean training noise).
    """
    if beta < 0:
        raise ValueError(f"safety beta must be ≥ 0, got {beta}")
    with torch.no_grad():
        try:
            posterior = model.posterior(X.unsqueeze(-2), observation_noise=True)
        except (NotImplementedError, TypeError):  # models without a noise model
            posterior = model.posterior(X.unsqueeze(-2))
        mean = posterior.mean[..., 0, output]
        std = posterior.variance[..., 0, output].clamp_min(0.0).sqrt()
    return mean + beta * std


def safe_mask(
    model: torch.nn.Module,
    X: torch.Tensor,
    limits: list[SafetyLimit],
    beta: float = DEFAULT_SAFETY_BETA,
    chunk: int = 4096,
) -> torch.Tensor:
    """Boolean mask, shape ``n``: rows of ``X`` whose every safety UCB is within its limit."""
    mask = torch.ones(X.shape[0], dtype=torch.bool)
    for start in range(0, X.shape[0], chunk):
        part = X[start : start + chunk]
        for limit in limits:
            ucb = upper_confidence_bound(model, part, limit.output, beta)
            mask[start : start + chunk] &= ucb <= limit.upper
    return mask


def observed_safe(
    constraint_values: Mapping[str, np.ndarray], limits: list[SafetyLimit], n: int
) -> np.ndarray:
    """Rows (shape ``n``) whose measured safety outcomes are all known and within limit.

    A row with a missing (NaN) safety outcome is *not* known to be safe.
    """
    ok = np.ones(n, dtype=bool)
    for limit in limits:
        values = np.asarray(constraint_values[limit.name], dtype=float)
        ok &= np.isfinite(values) & (values <= limit.upper)
    return ok
