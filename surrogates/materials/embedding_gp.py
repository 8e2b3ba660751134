"""A GP on learned crystal embeddings (the GNN as a feature extractor).

The ensemble's member-averaged pooled embeddings (``n × hidden``) are the GP inputs;
a ``SingleTaskGP`` (surrogates/gp.py: Normalize + Standardize, inferred noise) gives
mean and std for every pool candidate. Among uncertainty choices for crystal BO this
is one of the better calibrated (field notes); the benchmark reports its 90 %-interval
coverage beside the recalibrated ensemble's.
"""

from __future__ import annotations

import numpy as np
import torch

from voltloop.surrogates.gp import fit_outcome_gp


def embedding_gp_predict(
    train_embeddings: np.ndarray,
    y: np.ndarray,
    query_embeddings: np.ndarray,
    *,
    max_iter: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit on ``train_embeddings`` (``n × h``), ``y`` (``n``); mean/std at ``m × h`` queries.

    The std includes the fitted observation noise (a prediction of a new measurement).
    """
    both = np.concatenate([train_embeddings, query_embeddings])
    lo, hi = both.min(axis=0), both.max(axis=0)
    hi = np.where(hi > lo, hi, lo + 1.0)
    model = fit_outcome_gp(train_embeddings, y, np.stack([lo, hi]), max_iter=max_iter)
    X = torch.as_tensor(query_embeddings, dtype=torch.float64)
    means, stds = [], []
    with torch.no_grad():
        for part in X.split(1024):
            post = model.posterior(part, observation_noise=True)
            means.append(post.mean.squeeze(-1))
            stds.append(post.variance.clamp_min(0).sqrt().squeeze(-1))
    return torch.cat(means).numpy(), torch.cat(stds).numpy()
