"""Small synthetic campaigns for the proposer tests (fast: few points, few GP iterations)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voltloop.campaigns.spaces import cc4_from
from voltloop.surrogates.proposer import ProposalOptions


def life(X: np.ndarray) -> np.ndarray:
    """A smooth stand-in cycle life over (CC1, CC2, CC3), best near (5, 4.5, 4.2)."""
    X = np.atleast_2d(X)
    cc4 = cc4_from(X[:, 0], X[:, 1], X[:, 2])
    return (
        1100
        - 40 * (X[:, 0] - 5) ** 2
        - 30 * (X[:, 1] - 4.5) ** 2
        - 20 * (X[:, 2] - 4.2) ** 2
        - 25 * (cc4 - 3) ** 2
    )


def peak_temperature(X: np.ndarray) -> np.ndarray:
    """A stand-in peak cell temperature rising with the early charge rates."""
    X = np.atleast_2d(X)
    return 30 + 1.6 * X[:, 0] + 1.0 * X[:, 1] + 0.5 * X[:, 2]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def fast_options() -> ProposalOptions:
    return ProposalOptions(gp_max_iter=30, mc_samples=32, candidate_samples=128, seed=1)
