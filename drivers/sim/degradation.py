"""Ageing rates of a bank of cells, evaluated pointwise along a phase trajectory.

Four coupled mechanisms (docs/simulator.md, "Degradation"), every rate in Ah/s:

* SEI growth, parabolic in the SEI amount (so Q_sei ~ sqrt(t)) and Arrhenius in T,
  faster at high graphite lithiation::

      r_sei = k_sei * A(E_sei, T) * (1 + g_soc * x) / (Q_sei + Q0)

* SEI on graphite surface freshly exposed by cracking, driven by the same stress
  as the cracking itself (below)::

      r_crack = k_crack * C_n * c^p * A(E_lam, T) / 3600      (c = charging C-rate)

* Lithium plating, a soft Butler-Volmer-like onset when the graphite potential
  under load, phi = U_n(x) - eta_n, falls below a threshold::

      r_pl = k_pl * softplus((phi_th - phi) / phi0) / 3600      (charging only)

  eta_n grows with current and with resistance (Arrhenius: cold => more plating),
  U_n falls at high lithiation: high C-rate, high SOC and low temperature all plate.

* Loss of graphite active material from particle cracking under fast lithiation
  (charging only), superlinear in C-rate, plus pore clogging by plated lithium::

      r_lam = k_lam * C_n * c^p * A(E_lam, T) / 3600 + k_lam_pl * r_pl

``ageing_rates`` evaluates them on a phase's grid (shapes ([S,] n, K+1) for S chained
steps of n cells), ``sei_growth`` integrates the parabolic SEI law exactly over the
phase and ``apply_ageing`` writes the result into the cells' fields (phases.py).
"""

from __future__ import annotations

import numpy as np

from voltloop.drivers.sim.cell_model import ROW
from voltloop.drivers.sim.chemistry import GAS_CONSTANT, KELVIN

_Q, _NLI, _CPOS, _CNEG, _NOM = (
    ROW["q"],
    ROW["n_li"],
    ROW["c_pos"],
    ROW["c_neg"],
    ROW["nominal_Ah"],
)
_NEG_EA2 = slice(ROW["neg_sei_ea"], ROW["neg_lam_ea"] + 1)


def arrhenius(ea_J_mol: np.ndarray, t_C: np.ndarray, t_ref_C: np.ndarray) -> np.ndarray:
    """exp(Ea/R (1/T_ref - 1/T)): > 1 above the reference temperature for Ea > 0."""
    return np.exp(ea_J_mol / GAS_CONSTANT * (1.0 / (t_ref_C + KELVIN) - 1.0 / (t_C + KELVIN)))


def ageing_rates(
    d: np.ndarray,
    col: np.ndarray,
    i0: np.ndarray,
    a: np.ndarray,
    tau: np.ndarray,
    *,
    e_a: np.ndarray,
    phi: np.ndarray,
    x: np.ndarray,
    inv_t: np.ndarray,
    decaying: bool = True,
) -> np.ndarray:
    """Ageing rates (Ah/s) along the grid, shape (5, [S,] n, K+1): SEI, plating, LAM_NE,
    LAM_PE, SEI on cracked surface (degradation.Rates; the first row is the parabolic
    SEI drive in Ah^2/s, see _sei_growth).

    ``d``/``col`` are the cells' fields as (NF, n)/(NF, n, 1); within a phase the
    current I0 exp(-a t) keeps its sign, so ``|c|^p`` is ``|c0|^p exp(-a p t)`` and
    every charging-only term is a per-cell factor. ``e_a`` is the current along the
    grid (or (n, 1) when constant), ``phi`` the graphite potential, ``x`` its
    lithiation, ``inv_t`` the Arrhenius variable; ``decaying=False`` says that a = 0
    for every cell (constant current). When no cell charges, the charging-only rows
    are zero without being evaluated.
    """
    out = np.empty((5, *tau.shape))
    charging = i0 > 0.0
    any_charging = np.count_nonzero(charging) > 0
    # Arrhenius factors of SEI and cracking; cracking also carries exp(-a p t)
    arr = inv_t * d[_NEG_EA2].reshape(2, *([1] * (tau.ndim - 2)), -1, 1)  # (2, ..., n, K+1)
    if any_charging:
        p = d[ROW["lam_exp"]]
        if decaying:
            arr[1] -= (a * p)[..., None] * tau
        np.exp(arr, out=arr)
        crate0 = np.abs(i0) / d[_NOM]  # (n,) C-rate at the phase start
        stress = (charging * crate0**p * d[_CNEG] * (1.0 / 3600.0))[..., None] * arr[1]
    else:
        np.exp(arr[0], out=arr[0])
    # parabolic SEI: the drive k(t) = k_sei A(T) (1 + g x) in Ah^2/s (phase_ageing
    # integrates dQ (Q + Q0) = k dt exactly); SEI on cracked surface adds linearly
    out[0] = (1.0 + col[ROW["sei_soc_gain"]] * x) * arr[0]
    out[0] *= col[ROW["sei_k"]]
    if any_charging:
        np.multiply(col[ROW["crack_sei"]], stress, out=out[4])
        # softplus log(1 + e^z), z = (phi_th - phi)/phi0 (bounded only against overflow)
        onset = np.minimum((col[ROW["pl_threshold"]] - phi) / col[ROW["pl_phi0"]], 700.0)
        np.log1p(np.exp(onset, out=onset), out=onset)
        np.multiply((charging * d[ROW["pl_k"]] * (1.0 / 3600.0))[..., None], onset, out=out[1])
        out[2] = col[ROW["lam_k"]] * stress + col[ROW["lam_pl"]] * out[1]
    else:  # plating, cracking and its SEI need a charging current
        out[1] = out[2] = out[4] = 0.0
    np.multiply(
        (d[ROW["lam_p_k"]] * d[_CPOS] / (3600.0 * d[_NOM]))[:, None], np.abs(e_a), out=out[3]
    )
    return out


def sei_growth(d: np.ndarray, integrals: np.ndarray) -> np.ndarray:
    """(4, n) Ah of SEI, plating, LAM_NE, LAM_PE from the phase integrals (5, n).

    Parabolic SEI growth dQ/dt = k(t) / (Q + Q0) integrates exactly to
    (Q + Q0)^2 = (Q_s + Q0)^2 + 2 int k dt over the phase (Q_s at its start), so the
    result does not depend on how the time is cut into phases.
    """
    base = d[ROW["q_sei"]] + d[ROW["sei_q0"]]
    out = integrals[:4].copy()
    out[0] = np.sqrt(base * base + 2.0 * integrals[0]) - base + integrals[4]
    return out


def apply_ageing(
    d: np.ndarray,
    q: np.ndarray,
    d_sei: np.ndarray,
    d_pl: np.ndarray,
    d_lam_n: np.ndarray,
    d_lam_p: np.ndarray,
) -> None:
    """Write the aged state into the fields ``d`` (NF, n): LLI from SEI and plating,
    lithiated graphite LAM, films.

    Plated lithium came from the charge current but never entered the graphite, and
    graphite that loses contact takes its lithium with it (docs/simulator.md).
    """
    x = np.minimum(np.maximum(q / d[_CNEG], 0.0), 1.0)
    li_in_lost_graphite = x * d_lam_n
    d[_Q] = q - d_sei - d_pl - li_in_lost_graphite
    d[_NLI] -= d_sei + d[ROW["pl_dead"]] * d_pl + li_in_lost_graphite
    d[_CNEG] -= d_lam_n
    d[_CPOS] -= d_lam_p
    d[ROW["q_sei"]] += d_sei
    d[ROW["q_pl"]] += d_pl
    d[ROW["lam_neg"]] += d_lam_n
    d[ROW["lam_pos"]] += d_lam_p
    d[ROW["r_film"]] += d[ROW["film_sei"]] * d_sei + d[ROW["film_pl"]] * d_pl
