"""Where a phase ends: voltage cut-offs and safety limits searched on its grid.

A phase solve (phases.py) evaluates every segment's closed form on a grid of
K+1 points (denser towards its far end). The first grid point past a voltage cut-off
brackets the crossing, which is then refined on the closed form; safety limits
(voltage, temperature) are interpolated on the grid. Arrays with a segment axis
are flattened per channel, (S, n, K+1) -> (n, S*(K+1)), so a crossing is searched
along the chained segments in phase time (decisions 0031, 0033, 0036, 0037).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Closed-form evaluations that refine a voltage cut-off time (refine_cutoff).
CUTOFF_REFINE = 2


def cross_time(tau: np.ndarray, excess: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Linear interpolation of the crossing time inside grid interval (k-1, k]."""
    rows = np.arange(tau.shape[0])
    kl = np.maximum(k - 1, 0)
    e0, e1 = excess[rows, kl], excess[rows, k]
    t0, t1 = tau[rows, kl], tau[rows, k]
    w = np.where(e1 - e0 > 1e-15, -e0 / np.where(e1 - e0 > 1e-15, e1 - e0, 1.0), 1.0)
    return np.where(k == 0, 0.0, t0 + np.clip(w, 0.0, 1.0) * (t1 - t0))


def first_crossing(excess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First grid index where ``excess`` (n, K+1) is >= 0: (found, k) with k >= 0."""
    pos = excess >= 0.0
    k = np.argmax(pos, axis=1)
    found = pos[np.arange(pos.shape[0]), k]
    return found, k


def flat(x: np.ndarray) -> np.ndarray:
    """(S, n, K+1) -> (n, S*(K+1)): each slot's segments one after the other."""
    return x.transpose(1, 0, 2).reshape(x.shape[1], -1)


def refine_cutoff(
    voltage: Callable[[np.ndarray, np.ndarray], np.ndarray],
    coefs: np.ndarray,
    tau: np.ndarray,
    excess: np.ndarray,
    direction: np.ndarray,
    v_cut: np.ndarray,
    found: np.ndarray,
    k: np.ndarray,
    offset: np.ndarray,
    t_cut: np.ndarray,
) -> np.ndarray:
    """Voltage cut-off times ``t_cut`` (n,) refined on the closed form inside the
    bracketing grid interval: ``CUTOFF_REFINE`` evaluations of the segment's voltage
    (``voltage(c, t)``: closed-form voltage of coefficients ``c`` (NC, m) at times ``t``),
    the first at the straight-line crossing, each next one at the root of the parabola
    through the bracket's ends and the last point (inverse quadratic interpolation;
    the straight line where that root leaves the bracket). The grid's straight line
    alone stops a 4C discharge at 2.23 V instead of 2.0 V, where the voltage plunges.
    ``coefs`` (S, NC, n), ``tau`` (S, n, K+1) segment times, ``excess`` (n, S*(K+1))
    the signed overshoot on the grid, ``k`` its first crossing (flat index)."""
    k1 = tau.shape[-1]
    r = (found & (k % k1 > 0)).nonzero()[0]
    if not r.size:
        return t_cut
    kr = k[r]
    seg, j = kr // k1, kr % k1
    c = coefs[seg, :, r].T  # (NC, m)
    a, b = tau[seg, r, j - 1], tau[seg, r, j]
    fa, fb = excess[r, kr - 1], excess[r, kr]
    sign, target = direction[seg, r], v_cut[seg, r]
    t = secant(a, fa, b, fb)
    for _ in range(CUTOFF_REFINE):
        f = sign * (voltage(c, t) - target)
        t_next = inverse_quadratic(a, fa, t, f, b, fb)
        up = f >= 0.0  # past the cut-off: t is the new right end
        b, fb = np.where(up, t, b), np.where(up, f, fb)
        a, fa = np.where(up, a, t), np.where(up, fa, f)
        inside = (t_next > a) & (t_next < b)
        t = np.where(inside, t_next, secant(a, fa, b, fb))
    out = t_cut.copy()
    out[r] = offset[seg, r] + t
    return out


def secant(a: np.ndarray, fa: np.ndarray, b: np.ndarray, fb: np.ndarray) -> np.ndarray:
    """Root of the straight line through (a, fa) and (b, fb), inside [a, b]."""
    t = a - fa * (b - a) / np.where(fb - fa > 1e-15, fb - fa, 1.0)
    return np.minimum(np.maximum(t, a), b)


def inverse_quadratic(
    a: np.ndarray, fa: np.ndarray, t: np.ndarray, ft: np.ndarray, b: np.ndarray, fb: np.ndarray
) -> np.ndarray:
    """Time where the parabola t(f) through the three points has f = 0 (NaN where two
    values coincide)."""
    d_at, d_ab, d_tb = fa - ft, fa - fb, ft - fb
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            a * ft * fb / (d_at * d_ab) - t * fa * fb / (d_at * d_tb) + b * fa * ft / (d_ab * d_tb)
        )


def regula_falsi(tau: np.ndarray, excess: np.ndarray, k: np.ndarray) -> np.ndarray:
    """One regula falsi step on the bracketing grid interval (k-1, k] of the cut-off."""
    rows = np.arange(tau.shape[0])
    kl = np.maximum(k - 1, 0)
    a, b = tau[rows, kl], tau[rows, k]
    fa, fb = excess[rows, kl], excess[rows, k]
    denom = np.where(np.abs(fb - fa) > 1e-15, fb - fa, 1.0)
    t = np.clip(a - fa * (b - a) / denom, a, b)
    return np.where(k == 0, 0.0, t)


def safety_time(
    tg: np.ndarray,
    v: np.ndarray,
    temp: np.ndarray,
    cv: np.ndarray,
    active: np.ndarray,
    k_cut: np.ndarray,
    limits: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """First phase time a safety limit is crossed on the grid (inf if never) and its
    flat grid index; ``tg`` (n, S*(K+1)) are the grid times along the segments, ``v``
    and ``temp`` (S, n, K+1). Voltage limits apply only before the phase's own
    cut-off and never to CV segments."""
    v_lo, v_hi, t_hi = limits
    shape = v.shape
    volt_ok = flat(np.broadcast_to((active & ~cv)[:, :, None], shape))
    temp_ok = flat(np.broadcast_to(active[:, :, None], shape))
    t_safe = np.full(v.shape[1], np.inf)
    k_safe = np.zeros(v.shape[1], dtype=np.intp)
    for excess, ok, voltage in (
        (v - v_hi[:, None], volt_ok, True),
        (v_lo[:, None] - v, volt_ok, True),
        (temp - t_hi[:, None], temp_ok, False),
    ):
        excess = np.where(ok, flat(excess), -1.0)
        found, k = first_crossing(excess)
        if voltage:  # a cut-off inside the limits ends the phase first
            found &= k < k_cut
        if np.count_nonzero(found):
            t = cross_time(tg, excess, k)
            first = found & (t < t_safe)
            t_safe = np.where(first, t, t_safe)
            k_safe = np.where(first, k, k_safe)
    return t_safe, k_safe
