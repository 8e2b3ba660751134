"""Search spaces: the Attia pool, the CC4 constraint and its reparametrisations."""

from __future__ import annotations

import numpy as np
import pytest

from voltloop.campaigns.spaces import (
    ATTIA_CC4_BOUNDS,
    ConstraintHandling,
    MixedSpace,
    SearchSpaceError,
    attia_continuous_space,
    attia_protocol_pool,
    cc4_from,
    continuous_space,
    discrete_space,
    index_space,
)


def test_attia_pool_has_224_protocols_with_cc4_in_bounds() -> None:
    pool = attia_protocol_pool()
    assert pool.size == 224
    cc4 = pool.derived["CC4"]
    assert np.all((cc4 >= ATTIA_CC4_BOUNDS[0]) & (cc4 <= ATTIA_CC4_BOUNDS[1]))
    assert len(set(pool.labels)) == 224
    # the single-rate baseline is left out unless asked for
    assert attia_protocol_pool(exclude_single_rate=False).size == 225


def test_cc4_formula_closes_the_ten_minute_budget() -> None:
    cc1, cc2, cc3 = 6.0, 5.6, 4.8
    cc4 = cc4_from(cc1, cc2, cc3)
    minutes = 60 * sum(0.2 / c for c in (cc1, cc2, cc3, cc4))
    assert minutes == pytest.approx(10.0)


@pytest.mark.parametrize("handling", list(ConstraintHandling))
def test_continuous_space_samples_are_feasible(handling: ConstraintHandling) -> None:
    space = attia_continuous_space(handling=handling)
    X = space.sample_feasible(200, seed=3)
    cc4 = cc4_from(X[:, 0], X[:, 1], X[:, 2])
    assert np.all((cc4 >= 0.1) & (cc4 <= 4.81 + 1e-9))
    assert np.all((X >= 3.0) & (X <= 8.0))


def test_budget_box_is_a_bijection_onto_the_feasible_set() -> None:
    space = attia_continuous_space()
    rng = np.random.default_rng(0)
    Z = rng.random((5000, 3))
    X = space.reparametrisation.to_physical(Z)
    assert space.feasible(X).all()
    assert np.allclose(space.reparametrisation.to_internal(X), Z, atol=1e-9)
    # and an infeasible point is reported as such
    assert not space.feasible(np.array([[3.0, 3.0, 3.0]])).any()


def test_derived_cc4_is_reported() -> None:
    space = attia_continuous_space()
    params = space.parameters(np.array([[6.0, 5.6, 4.8]]))[0]
    assert params["CC4"] == pytest.approx(cc4_from(6.0, 5.6, 4.8))


def test_bad_spaces_raise_clear_errors() -> None:
    with pytest.raises(SearchSpaceError, match="lower bound"):
        continuous_space({"CC1": (8.0, 3.0)})
    with pytest.raises(SearchSpaceError, match="at least one value"):
        discrete_space({"CC1": []})
    with pytest.raises(SearchSpaceError, match="CC4"):
        attia_continuous_space(3.0, 3.5)  # too slow to finish in ten minutes
    with pytest.raises(SearchSpaceError):
        index_space(0)


def test_mixed_space_enumerates_discrete_combinations() -> None:
    space = MixedSpace(attia_continuous_space(), {"chamber_C": (25.0, 30.0, 35.0)})
    combos = space.combinations()
    assert combos == [{3: 25.0}, {3: 30.0}, {3: 35.0}]
    X = np.array([[6.0, 5.6, 4.8, 30.0], [6.0, 5.6, 4.8, 31.0]])
    assert space.feasible(X).tolist() == [True, False]


def test_spaces_from_campaign_specs() -> None:
    from voltloop.campaigns.spaces import (
        BudgetBoxMap,
        ContinuousSpace,
        DiscreteSpace,
        space_from_spec,
    )
    from voltloop.campaigns.spec import ProtocolSpace

    preset = ProtocolSpace.model_validate({"preset": "attia2020"})
    pool = space_from_spec(preset)
    assert isinstance(pool, DiscreteSpace) and pool.size == 224
    assert np.allclose(
        np.sort(pool.candidates, axis=0), np.sort(attia_protocol_pool().candidates, axis=0)
    )
    fields = preset.model_dump(mode="json", exclude_none=True)
    fields.pop("preset")
    fields["exclude"] = []
    for p in fields["parameters"]:
        p.pop("values")
        p["bounds"] = [3.0, 8.0]
    box_spec = ProtocolSpace.model_validate(fields)
    box = space_from_spec(box_spec)
    assert isinstance(box, ContinuousSpace) and isinstance(box.reparametrisation, BudgetBoxMap)
    X = box.sample_feasible(30, seed=0)
    assert all(box_spec.is_feasible(dict(zip(box.names, x, strict=True))) for x in X)
    # a different charge budget falls back to the spec's own feasibility check
    fields["derived"][0]["total_time_min"] = 12.0
    other = space_from_spec(ProtocolSpace.model_validate(fields))
    assert other.reparametrisation is None and other.constraints[0].name == "spec_feasible"
    assert other.feasible(other.sample_feasible(10, seed=1)).all()
