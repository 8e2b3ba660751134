"""Search spaces a proposer works over: discrete pools, continuous boxes, mixed.

A space says which inputs the surrogate sees (``names``, ``d`` columns) and which
points are allowed. It holds NumPy arrays only (no torch), so campaign code and the
CLI can build and inspect spaces without importing BoTorch.

- :class:`DiscreteSpace` — an enumerated pool, ``candidates`` of shape ``n × d``
  (the 224 Attia protocols; a materials pool, whose single column is the candidate
  index the GNN surrogate maps to a crystal graph).
- :class:`ContinuousSpace` — a box ``lower ≤ x ≤ upper`` with nonlinear inequality
  constraints (``slack(x) ≥ 0``) and, optionally, a :class:`Reparametrisation` under
  which the constraints are linear (docs/decisions/0061).
- :class:`MixedSpace` — a continuous part plus discrete dimensions taking listed values
  (optimised per discrete combination, as BayBE and BoTorch's ``optimize_acqf_mixed`` do).

The ten-minute fast-charge space of Attia et al. (Nature 578, 2020): CC1–CC3 each
charge 20 % SOC; CC4 is derived so that 0→80 % SOC takes ten minutes,
``CC4 = 0.2 / (1/6 − 0.2/CC1 − 0.2/CC2 − 0.2/CC3)``, and a protocol is kept only if
``0.1 ≤ CC4 ≤ 4.81``C. With the published value lists this leaves 224 of 432.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class SearchSpaceError(ValueError):
    """A search space that cannot be built (empty pool, inverted bounds, ...)."""

    exit_code = 2


class SpaceKind(enum.StrEnum):
    DISCRETE = "discrete"
    CONTINUOUS = "continuous"
    MIXED = "mixed"


# --- the Attia et al. ten-minute space -------------------------------------------------

#: C-rate values of the published design (field notes).
ATTIA_CC1_VALUES: tuple[float, ...] = (3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0, 8.0)
ATTIA_CC2_VALUES: tuple[float, ...] = (3.6, 4.0, 4.4, 4.8, 5.2, 5.6, 6.0, 7.0)
ATTIA_CC3_VALUES: tuple[float, ...] = (3.6, 4.0, 4.4, 4.8, 5.2, 5.6)
ATTIA_CC4_BOUNDS: tuple[float, float] = (0.1, 4.81)
#: Charge time budget 0→80 % SOC (h) and SOC window of each CC step (fraction).
ATTIA_CHARGE_TIME_H = 1.0 / 6.0
ATTIA_SOC_STEP = 0.2
CC_NAMES: tuple[str, str, str] = ("CC1", "CC2", "CC3")


def cc4_from(
    cc1: Any,
    cc2: Any,
    cc3: Any,
    *,
    charge_time_h: float = ATTIA_CHARGE_TIME_H,
    soc_step: float = ATTIA_SOC_STEP,
) -> Any:
    """CC4 (C-rate) that completes the charge in ``charge_time_h``.

    Works element-wise on floats, NumPy arrays or torch tensors of equal shape.
    Returns ``inf`` or a negative value where the first three steps already use up
    the time budget (such a protocol is infeasible).
    """
    remaining_h = charge_time_h - soc_step / cc1 - soc_step / cc2 - soc_step / cc3
    return soc_step / remaining_h


@dataclass(frozen=True)
class LinearInequality:
    """``sum_i coefficients[i] * x[indices[i]] >= rhs`` (BoTorch's convention)."""

    indices: tuple[int, ...]
    coefficients: tuple[float, ...]
    rhs: float

    def satisfied(self, X: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """Boolean mask, shape ``n``, for ``X`` of shape ``n × d``."""
        lhs = np.asarray(X)[:, list(self.indices)] @ np.asarray(self.coefficients)
        return lhs >= self.rhs - tol


@dataclass(frozen=True)
class SpaceConstraint:
    """A nonlinear inequality ``slack(X) >= 0`` on physical coordinates.

    ``slack`` maps ``... × d`` to ``...`` and must work on NumPy arrays and on torch
    tensors (plain arithmetic only), so the optimiser can differentiate it.
    """

    name: str
    slack: Callable[[Any], Any]
    description: str = ""


@dataclass(frozen=True)
class Reparametrisation:
    """Element-wise inverse map ``u = 1 / x`` (C-rate → hours per unit charge).

    Under it the ten-minute budget is linear in ``u``: ``0.2 (u1 + u2 + u3) + 0.2 u4 = 1/6``,
    so the CC4 bounds become two linear inequalities on ``u1 + u2 + u3``
    (``ContinuousSpace.linear_constraints``).
    """

    name: str = "inverse_rate"

    @staticmethod
    def to_internal(X: Any) -> Any:
        return 1.0 / X

    @staticmethod
    def to_physical(U: Any) -> Any:
        return 1.0 / U

    def internal_bounds(self, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        a, b = self.to_internal(lower), self.to_internal(upper)
        return np.stack([np.minimum(a, b), np.maximum(a, b)])


@dataclass(frozen=True)
class BudgetBoxMap:
    """A bijection from the unit cube onto ``{u ∈ [a, b] : s_min ≤ Σu ≤ s_max}``, ``u = 1/x``.

    Coordinates are filled in order with conditional bounds (as in stick-breaking):
    ``u_i ∈ [max(a_i, s_min − Σ_{j<i} u_j − Σ_{j>i} b_j), min(b_i, s_max − Σ_{j<i} u_j −
    Σ_{j>i} a_j)]`` and ``z_i`` is ``u_i``'s position in that interval. Every ``z`` in
    ``[0, 1]^d`` maps to a feasible point and every feasible point has one ``z``, so the
    optimiser works in a plain box (L-BFGS-B, no constraint handling) and the surrogate
    is fit in ``z`` (docs/decisions/0061). Arrays are ``n × d``.
    """

    a: tuple[float, ...]
    b: tuple[float, ...]
    s_min: float
    s_max: float
    name: str = "budget_box"

    def _interval(self, i: int, partial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rest_a = sum(self.a[i + 1 :])
        rest_b = sum(self.b[i + 1 :])
        lo = np.maximum(self.a[i], self.s_min - partial - rest_b)
        hi = np.minimum(self.b[i], self.s_max - partial - rest_a)
        return lo, np.maximum(hi, lo + 1e-12)

    def to_internal(self, X: np.ndarray) -> np.ndarray:
        U = 1.0 / np.asarray(X, dtype=float)
        Z = np.empty_like(U)
        partial = np.zeros(len(U))
        for i in range(U.shape[1]):
            lo, hi = self._interval(i, partial)
            Z[:, i] = np.clip((U[:, i] - lo) / (hi - lo), 0.0, 1.0)
            partial = partial + U[:, i]
        return Z

    def to_physical(self, Z: np.ndarray) -> np.ndarray:
        Z = np.clip(np.asarray(Z, dtype=float), 0.0, 1.0)
        U = np.empty_like(Z)
        partial = np.zeros(len(Z))
        for i in range(Z.shape[1]):
            lo, hi = self._interval(i, partial)
            U[:, i] = lo + Z[:, i] * (hi - lo)
            partial = partial + U[:, i]
        return 1.0 / U

    def internal_bounds(self, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        d = len(lower)
        return np.stack([np.zeros(d), np.ones(d)])


@dataclass(frozen=True)
class ContinuousSpace:
    """A box in physical units with optional nonlinear constraints.

    Attributes:
        names: input names, length ``d``.
        lower, upper: bounds, shape ``d``.
        constraints: nonlinear inequalities on physical coordinates.
        reparametrisation: optional map under which ``linear_constraints`` express the
            same feasible set exactly (in internal coordinates).
        linear_constraints: the constraints as linear inequalities in internal coordinates.
        derived: extra reported parameters, name → function of ``n × d`` physical inputs.
    """

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    constraints: tuple[SpaceConstraint, ...] = ()
    reparametrisation: Reparametrisation | BudgetBoxMap | None = None
    linear_constraints: tuple[LinearInequality, ...] = ()
    derived: dict[str, Callable[[np.ndarray], np.ndarray]] = field(default_factory=dict)
    kind: SpaceKind = SpaceKind.CONTINUOUS

    def __post_init__(self) -> None:
        lower = np.asarray(self.lower, dtype=float)
        upper = np.asarray(self.upper, dtype=float)
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        if lower.shape != (len(self.names),) or upper.shape != (len(self.names),):
            raise SearchSpaceError(
                f"bounds must have one entry per input {self.names}; got {lower}, {upper}"
            )
        bad = [n for n, lo, hi in zip(self.names, lower, upper, strict=True) if not lo < hi]
        if bad:
            raise SearchSpaceError(f"lower bound must be below upper bound for {bad}")

    @property
    def d(self) -> int:
        return len(self.names)

    @property
    def bounds(self) -> np.ndarray:
        """Physical bounds, shape ``2 × d``."""
        return np.stack([self.lower, self.upper])

    def internal_bounds(self) -> np.ndarray:
        """Bounds in the coordinates the optimiser uses, shape ``2 × d``."""
        if self.reparametrisation is None:
            return self.bounds
        return self.reparametrisation.internal_bounds(self.lower, self.upper)

    def feasible(self, X: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        """Boolean mask, shape ``n``: inside the box and every constraint satisfied."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        ok = np.all((self.lower - tol <= X) & (self.upper + tol >= X), axis=1)
        for constraint in self.constraints:
            with np.errstate(divide="ignore", invalid="ignore"):
                ok &= np.nan_to_num(constraint.slack(X), nan=-1.0) >= -tol
        return ok

    def parameters(self, X: np.ndarray) -> list[dict[str, float]]:
        """Named parameters (inputs and derived) for each row of ``X`` (``n × d``)."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        extra = {name: np.asarray(fn(X), dtype=float) for name, fn in self.derived.items()}
        return [
            {
                **dict(zip(self.names, map(float, row), strict=True)),
                **{k: float(v[i]) for k, v in extra.items()},
            }
            for i, row in enumerate(X)
        ]

    def sample_feasible(self, n: int, seed: int = 0, max_draws: int = 200_000) -> np.ndarray:
        """``n`` feasible points, shape ``n × d``, from a scrambled Sobol sequence."""
        from scipy.stats import qmc

        sampler = qmc.Sobol(d=self.d, scramble=True, seed=seed)
        found: list[np.ndarray] = []
        total = 0
        draws = 1 << max(6, int(np.ceil(np.log2(max(n, 1) * 4))))
        while sum(len(f) for f in found) < n and total < max_draws:
            U = sampler.random(draws)
            total += draws
            X = qmc.scale(U, self.lower, self.upper)
            found.append(X[self.feasible(X)])
        pool = np.concatenate(found) if found else np.empty((0, self.d))
        if len(pool) < n:
            raise SearchSpaceError(
                f"only {len(pool)} of {total} space-filling draws satisfy the constraints "
                f"{[c.name for c in self.constraints]}; the feasible region is empty or tiny"
            )
        return pool[:n]


@dataclass(frozen=True)
class DiscreteSpace:
    """An enumerated pool: ``candidates`` of shape ``n × d``, one row per candidate.

    ``labels`` name the candidates (protocol ids, material formulas); ``derived`` holds
    extra reported columns (e.g. CC4), each of shape ``n``.
    """

    names: tuple[str, ...]
    candidates: np.ndarray
    labels: tuple[str, ...] = ()
    derived: dict[str, np.ndarray] = field(default_factory=dict)
    kind: SpaceKind = SpaceKind.DISCRETE

    def __post_init__(self) -> None:
        X = np.asarray(self.candidates, dtype=float)
        if X.ndim != 2 or X.shape[1] != len(self.names):
            raise SearchSpaceError(
                f"candidates must be n × {len(self.names)} for inputs {self.names}, got {X.shape}"
            )
        if len(X) == 0:
            raise SearchSpaceError("a discrete search space needs at least one candidate")
        if not np.all(np.isfinite(X)):
            raise SearchSpaceError("candidate pool contains NaN or infinite values")
        if self.labels and len(self.labels) != len(X):
            raise SearchSpaceError(f"{len(self.labels)} labels for {len(X)} candidates")
        object.__setattr__(self, "candidates", X)

    @property
    def d(self) -> int:
        return len(self.names)

    @property
    def size(self) -> int:
        return len(self.candidates)

    @property
    def bounds(self) -> np.ndarray:
        """Bounds of the pool, shape ``2 × d`` (widened where a column is constant)."""
        lo, hi = self.candidates.min(axis=0), self.candidates.max(axis=0)
        flat = hi <= lo
        return np.stack([np.where(flat, lo - 0.5, lo), np.where(flat, hi + 0.5, hi)])

    def index_of(self, X: np.ndarray, tol: float = 1e-6) -> np.ndarray:
        """Pool index of each row of ``X`` (``m × d``), or -1 where it is not in the pool."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        if X.size == 0:
            return np.empty(0, dtype=int)
        dist = np.abs(X[:, None, :] - self.candidates[None, :, :]).max(axis=-1)
        idx = dist.argmin(axis=1)
        return np.where(dist[np.arange(len(X)), idx] <= tol, idx, -1)

    def parameters(self, indices: Sequence[int]) -> list[dict[str, float]]:
        """Named parameters (inputs and derived columns) of the given candidates."""
        return [
            {
                **dict(zip(self.names, map(float, self.candidates[i]), strict=True)),
                **{k: float(v[i]) for k, v in self.derived.items()},
            }
            for i in indices
        ]


@dataclass(frozen=True)
class MixedSpace:
    """Continuous inputs plus discrete ones that take listed values.

    The model sees ``continuous.names + discrete names`` in that order (``d`` columns).
    """

    continuous: ContinuousSpace
    discrete: dict[str, tuple[float, ...]]
    kind: SpaceKind = SpaceKind.MIXED

    def __post_init__(self) -> None:
        for name, values in self.discrete.items():
            if len(values) == 0:
                raise SearchSpaceError(f"discrete input {name!r} has no values")

    @property
    def names(self) -> tuple[str, ...]:
        return self.continuous.names + tuple(self.discrete)

    @property
    def d(self) -> int:
        return len(self.names)

    @property
    def bounds(self) -> np.ndarray:
        """Bounds, shape ``2 × d``."""
        lo = [min(v) for v in self.discrete.values()]
        hi = [max(v) if max(v) > min(v) else min(v) + 1.0 for v in self.discrete.values()]
        return np.concatenate([self.continuous.bounds, np.array([lo, hi])], axis=1)

    def combinations(self) -> list[dict[int, float]]:
        """Every discrete combination as ``{column index: value}`` (fixed features)."""
        offset = self.continuous.d
        keys = list(self.discrete)
        return [
            {offset + j: float(v) for j, v in enumerate(values)}
            for values in itertools.product(*(self.discrete[k] for k in keys))
        ]

    def feasible(self, X: np.ndarray, tol: float = 1e-9) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        ok = self.continuous.feasible(X[:, : self.continuous.d], tol)
        for j, values in enumerate(self.discrete.values()):
            col = X[:, self.continuous.d + j]
            ok &= np.any(np.abs(col[:, None] - np.asarray(values)[None, :]) <= tol, axis=1)
        return ok

    def parameters(self, X: np.ndarray) -> list[dict[str, float]]:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        base = self.continuous.parameters(X[:, : self.continuous.d])
        for row, params in zip(X, base, strict=True):
            for j, name in enumerate(self.discrete):
                params[name] = float(row[self.continuous.d + j])
        return base


SearchSpace = DiscreteSpace | ContinuousSpace | MixedSpace


# --- builders --------------------------------------------------------------------------


def _cc4_column(X: Any) -> Any:
    return cc4_from(X[..., 0], X[..., 1], X[..., 2])


def attia_protocol_pool(
    cc1_values: Sequence[float] = ATTIA_CC1_VALUES,
    cc2_values: Sequence[float] = ATTIA_CC2_VALUES,
    cc3_values: Sequence[float] = ATTIA_CC3_VALUES,
    cc4_bounds: tuple[float, float] = ATTIA_CC4_BOUNDS,
    *,
    exclude_single_rate: bool = True,
) -> DiscreteSpace:
    """The enumerated Attia pool: every (CC1, CC2, CC3) whose derived CC4 is in bounds.

    432 combinations leave 225 with CC4 in bounds; one of them, 4.8-4.8-4.8-4.8C, is a
    single constant-current charge — the baseline the published study ran beside the
    search rather than as a candidate. ``exclude_single_rate`` drops it, leaving the
    published 224. Labels read ``"CC1-CC2-CC3-CC4"`` with CC4 to three decimals.
    """
    grid = np.array(list(itertools.product(cc1_values, cc2_values, cc3_values)), dtype=float)
    with np.errstate(divide="ignore"):
        cc4 = _cc4_column(grid)
    keep = (cc4 >= cc4_bounds[0]) & (cc4 <= cc4_bounds[1])
    if exclude_single_rate:
        keep &= ~np.all(np.isclose(np.column_stack([grid, cc4]), grid[:, :1]), axis=1)
    if not keep.any():
        raise SearchSpaceError(f"no protocol has CC4 within {cc4_bounds}C")
    grid, cc4 = grid[keep], cc4[keep]
    labels = tuple(f"{a:g}-{b:g}-{c:g}-{d:.3f}" for (a, b, c), d in zip(grid, cc4, strict=True))
    return DiscreteSpace(names=CC_NAMES, candidates=grid, labels=labels, derived={"CC4": cc4})


def cc4_budget_constraints(
    cc4_bounds: tuple[float, float] = ATTIA_CC4_BOUNDS,
    *,
    charge_time_h: float = ATTIA_CHARGE_TIME_H,
    soc_step: float = ATTIA_SOC_STEP,
) -> tuple[tuple[SpaceConstraint, ...], tuple[LinearInequality, ...]]:
    """The CC4 bounds as nonlinear constraints on C-rates and as linear ones on ``1/C``.

    With ``u_i = 1/CC_i`` (hours per C), ``CC4 = s / (T − s (u1+u2+u3))`` for step SOC
    ``s`` and budget ``T``; ``lo ≤ CC4 ≤ hi`` holds exactly when
    ``T/s − 1/lo ≤ u1+u2+u3 ≤ T/s − 1/hi``.
    """
    lo, hi = cc4_bounds
    if not 0 < lo < hi:
        raise SearchSpaceError(f"CC4 bounds must satisfy 0 < low < high, got {cc4_bounds}")
    u_max = charge_time_h / soc_step - 1.0 / hi
    u_min = charge_time_h / soc_step - 1.0 / lo

    def rate_sum(X: Any) -> Any:
        return 1.0 / X[..., 0] + 1.0 / X[..., 1] + 1.0 / X[..., 2]

    nonlinear = (
        SpaceConstraint(
            name="CC4_max",
            slack=lambda X: u_max - rate_sum(X),
            description=f"CC4 ≤ {hi}C (equivalently 1/CC1+1/CC2+1/CC3 ≤ {u_max:.4f} h)",
        ),
        SpaceConstraint(
            name="CC4_min",
            slack=lambda X: rate_sum(X) - u_min,
            description=f"CC4 ≥ {lo}C (and the first three steps leave time for a fourth)",
        ),
    )
    linear = (
        LinearInequality((0, 1, 2), (-1.0, -1.0, -1.0), -u_max),
        LinearInequality((0, 1, 2), (1.0, 1.0, 1.0), u_min),
    )
    return nonlinear, linear


class ConstraintHandling(enum.StrEnum):
    """How the optimiser keeps CC4 in bounds (docs/decisions/0061)."""

    BUDGET_BOX = "budget_box"  # unit cube mapped onto the feasible set (default)
    LINEAR = "linear"  # 1/C coordinates, two linear inequalities (SLSQP)
    NONLINEAR = "nonlinear"  # C-rate coordinates, nonlinear inequalities (SLSQP)


def attia_continuous_space(
    lower: float = 3.0,
    upper: float = 8.0,
    cc4_bounds: tuple[float, float] = ATTIA_CC4_BOUNDS,
    *,
    handling: ConstraintHandling = ConstraintHandling.BUDGET_BOX,
) -> ContinuousSpace:
    """CC1–CC3 continuous in ``[lower, upper]``C, CC4 derived and bounded.

    ``handling`` picks the coordinates the surrogate and optimiser use; the feasible
    set is the same in all three (``constraints`` always holds the exact check).
    """
    nonlinear, linear = cc4_budget_constraints(cc4_bounds)
    reparametrisation: Reparametrisation | BudgetBoxMap | None = None
    if handling is ConstraintHandling.BUDGET_BOX:
        s_max = -linear[0].rhs
        s_min = linear[1].rhs
        reparametrisation = BudgetBoxMap(
            a=(1.0 / upper,) * 3, b=(1.0 / lower,) * 3, s_min=s_min, s_max=s_max
        )
        if 3.0 / upper > s_max or 3.0 / lower < s_min:
            raise SearchSpaceError(
                f"no CC1–CC3 in [{lower}, {upper}]C gives CC4 within {cc4_bounds}C"
            )
    elif handling is ConstraintHandling.LINEAR:
        reparametrisation = Reparametrisation()
    return ContinuousSpace(
        names=CC_NAMES,
        lower=np.full(3, lower),
        upper=np.full(3, upper),
        constraints=nonlinear,
        reparametrisation=reparametrisation,
        linear_constraints=linear if handling is ConstraintHandling.LINEAR else (),
        derived={"CC4": _cc4_column},
    )


def continuous_space(
    bounds: dict[str, tuple[float, float]],
    constraints: Sequence[SpaceConstraint] = (),
) -> ContinuousSpace:
    """A box from ``{name: (low, high)}`` with optional nonlinear constraints."""
    if not bounds:
        raise SearchSpaceError("a continuous search space needs at least one input")
    names = tuple(bounds)
    return ContinuousSpace(
        names=names,
        lower=np.array([bounds[n][0] for n in names], dtype=float),
        upper=np.array([bounds[n][1] for n in names], dtype=float),
        constraints=tuple(constraints),
    )


def discrete_space(
    values: dict[str, Sequence[float]], feasible: Callable[[np.ndarray], np.ndarray] | None = None
) -> DiscreteSpace:
    """The full grid over ``{name: values}``, optionally filtered by ``feasible(X) -> mask``."""
    if not values or any(len(v) == 0 for v in values.values()):
        raise SearchSpaceError(f"every discrete input needs at least one value: {values}")
    names = tuple(values)
    grid = np.array(list(itertools.product(*(values[n] for n in names))), dtype=float)
    if feasible is not None:
        grid = grid[np.asarray(feasible(grid), dtype=bool)]
    return DiscreteSpace(names=names, candidates=grid)


def index_space(n: int, labels: Sequence[str] = ()) -> DiscreteSpace:
    """A pool addressed by candidate index (one column ``candidate`` = 0..n-1).

    Used for materials: the surrogate maps each index to its crystal graph.
    """
    if n <= 0:
        raise SearchSpaceError("a candidate pool needs at least one candidate")
    return DiscreteSpace(
        names=("candidate",),
        candidates=np.arange(n, dtype=float)[:, None],
        labels=tuple(labels),
    )


# --- from a campaign spec ------------------------------------------------------------------


def _spec_feasibility(spec_space: Any) -> Callable[[Any], Any]:
    """A slack function (+1 feasible, −1 not) from the spec's own candidate check."""
    names = spec_space.parameter_names

    def slack(X: Any) -> Any:
        rows = np.atleast_2d(np.asarray(X, dtype=float))
        ok = [spec_space.is_feasible(dict(zip(names, map(float, r), strict=True))) for r in rows]
        return np.where(ok, 1.0, -1.0).reshape(np.shape(X)[:-1])

    return slack


def space_from_spec(spec_space: Any) -> SearchSpace:
    """The search space of a campaign's ``space`` section (``campaigns.spec.ProtocolSpace``).

    - every parameter has ``values`` → :class:`DiscreteSpace` of the spec's enumerated,
      feasible, non-excluded candidates (the ``attia2020`` preset gives the 224 pool),
      with derived parameters as extra columns;
    - every parameter has ``bounds`` → :class:`ContinuousSpace`; the Attia shape (three
      C-rates over equal 20 % SOC steps and a derived fourth completing the charge in
      ten minutes) gets the budget-box reparametrisation, any other derived rule a
      feasibility constraint evaluated by the spec itself (checked on sampled points);
    - a mix → :class:`MixedSpace` (derived parameters are not supported there yet).
    """
    names = spec_space.parameter_names
    if spec_space.discrete:
        rows = spec_space.enumerate()
        if not rows:
            raise SearchSpaceError("the campaign's space has no feasible candidate")
        X = np.array([[row[n] for n in names] for row in rows], dtype=float)
        derived = {d: np.array([row[d] for row in rows]) for d in spec_space.derived_names}
        labels = tuple("-".join(f"{row[n]:g}" for n in (*names, *derived)) for row in rows)
        return DiscreteSpace(names=names, candidates=X, labels=labels, derived=derived)
    continuous = [p for p in spec_space.parameters if not p.discrete]
    discrete = [p for p in spec_space.parameters if p.discrete]
    if discrete:
        if spec_space.derived:
            raise SearchSpaceError(
                "a space mixing listed values and bounds cannot have derived parameters yet"
            )
        box = continuous_space({p.name: (p.lower, p.upper) for p in continuous})
        return MixedSpace(box, {p.name: tuple(p.values) for p in discrete})
    bounds = {p.name: (p.lower, p.upper) for p in continuous}
    if _is_attia_shape(spec_space):
        (low, high), *_ = bounds.values()
        space = attia_continuous_space(low, high, tuple(spec_space.derived[0].bounds))
        return ContinuousSpace(
            names=names,
            lower=space.lower,
            upper=space.upper,
            constraints=space.constraints,
            reparametrisation=space.reparametrisation,
            derived={spec_space.derived[0].name: _cc4_column},
        )
    constraints = ()
    if spec_space.derived:
        constraints = (
            SpaceConstraint(
                "spec_feasible",
                _spec_feasibility(spec_space),
                "derived parameters within their bounds",
            ),
        )
    return continuous_space(bounds, constraints)


def _is_attia_shape(spec_space: Any) -> bool:
    params = spec_space.parameters
    if len(params) != 3 or len(spec_space.derived) != 1:
        return False
    derived = spec_space.derived[0]
    if abs(derived.total_time_min - 10.0) > 1e-9 or len({(p.lower, p.upper) for p in params}) != 1:
        return False
    steps = [s for s in spec_space.charge if getattr(s, "soc_delta", None) is not None]
    rates = [getattr(s, "rate_C", None) for s in steps]
    socs = [s.soc_delta for s in steps]
    return (
        rates == [*spec_space.parameter_names, derived.name]
        and all(isinstance(v, float | int) and abs(v - ATTIA_SOC_STEP) < 1e-9 for v in socs)
        and len(spec_space.charge) == 4
    )
