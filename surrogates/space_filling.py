"""Space-filling designs: the fallback batch when there is nothing to model yet.

- :func:`sobol_in_space` — scrambled Sobol points satisfying a continuous or mixed
  space's constraints (discrete inputs drawn uniformly from their values).
- :func:`farthest_point_subset` — greedy max-min (farthest-point) subset of a pool in
  normalised coordinates, pushed away from already tested and pending points.
"""

from __future__ import annotations

import numpy as np

from voltloop.campaigns.spaces import ContinuousSpace, MixedSpace


def sobol_in_space(space: ContinuousSpace | MixedSpace, n: int, seed: int = 0) -> np.ndarray:
    """``n`` feasible points (``n × d``, physical coordinates)."""
    if isinstance(space, ContinuousSpace):
        return space.sample_feasible(n, seed=seed)
    rng = np.random.default_rng(seed)
    cont = space.continuous.sample_feasible(n, seed=seed)
    cols = [
        rng.choice(np.asarray(values, dtype=float), size=n) for values in space.discrete.values()
    ]
    return np.column_stack([cont, *cols]) if cols else cont


def farthest_point_subset(
    points: np.ndarray,
    k: int,
    bounds: np.ndarray,
    avoid: np.ndarray | None = None,
    seed: int = 0,
) -> list[int]:
    """Indices of ``k`` rows of ``points`` (``n × d``) chosen greedily to maximise the
    minimum distance to each other and to ``avoid`` (``m × d``), in coordinates
    normalised by ``bounds`` (``2 × d``). Without ``avoid`` the first pick is random."""
    if k <= 0 or len(points) == 0:
        return []
    span = np.where(bounds[1] > bounds[0], bounds[1] - bounds[0], 1.0)
    Z = (points - bounds[0]) / span
    if avoid is not None and len(avoid):
        A = (np.asarray(avoid, dtype=float) - bounds[0]) / span
        dmin = np.min(np.linalg.norm(Z[:, None, :] - A[None, :, :], axis=-1), axis=1)
    else:
        dmin = np.full(len(Z), np.inf)
        first = int(np.random.default_rng(seed).integers(len(Z)))
        dmin = np.minimum(dmin, np.linalg.norm(Z - Z[first], axis=1))
        dmin[first] = -1.0
        chosen = [first]
        k -= 1
        return chosen + _greedy(Z, dmin, k)
    return _greedy(Z, dmin, k)


def _greedy(Z: np.ndarray, dmin: np.ndarray, k: int) -> list[int]:
    chosen: list[int] = []
    for _ in range(min(k, int((dmin >= 0).sum()))):
        i = int(np.argmax(dmin))
        chosen.append(i)
        dmin = np.minimum(dmin, np.linalg.norm(Z - Z[i], axis=1))
        dmin[i] = -1.0
    return chosen
