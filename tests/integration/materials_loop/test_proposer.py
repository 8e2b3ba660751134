"""The materials proposer on its own: synthetic observations, no instruments."""

from __future__ import annotations

import math

import pytest

from voltloop.campaigns.base import Direction
from voltloop.campaigns.materials_pool import build_pool
from voltloop.drivers.sim.materials_mapping import material_properties
from voltloop.orchestrator.materials_proposing import (
    MaterialsProposer,
    PoolMember,
    SurrogateSettings,
)
from voltloop.orchestrator.ports import Observation

SMALL = SurrogateSettings(members=2, epochs=15)


@pytest.fixture(scope="module")
def members(ci_spec) -> list[PoolMember]:
    return [
        PoolMember(100 + i, c.label, c.formula, c.structure)
        for i, c in enumerate(build_pool(ci_spec))
    ]


def _observed(members: list[PoolMember], labels: list[str]) -> list[Observation]:
    """Theoretical specific energy (capacity × voltage) as the measured objective."""
    out = []
    for n, member in enumerate(m for m in members if m.label in labels):
        p = material_properties(member.structure)
        value = p.capacity_mAh_g * p.average_voltage_V
        retention = 0.85 if member.label == "LiFePO4" else 0.99
        out.append(
            Observation(
                n,
                {"material_id": float(member.material_id)},
                value,
                None,
                {"specific_energy": value, "capacity_retention": retention + 0.001 * n},
                material_id=member.material_id,
            )
        )
    return out


def _propose(proposer: MaterialsProposer, observed, pending, q=3):
    return proposer.propose(
        observations=observed,
        pending=pending,
        tested=[o.parameters for o in observed] + pending,
        q=q,
        seed=1,
    )


def test_a_model_based_batch_avoids_tested_pending_and_excluded(ci_spec, members) -> None:
    proposer = MaterialsProposer(ci_spec, members, cathode_mass_g=20.0, settings=SMALL)
    assert sorted(members[i].label for i in proposer.excluded) == ["LiCoO2", "LiNiO2"]
    observed = _observed(members, ["LiFePO4", "LiMnPO4", "LiCoPO4", "LiNiPO4", "LiMn0.5Fe0.5PO4"])
    pending = [{"material_id": float(m.material_id)} for m in members[1:3]]
    batch = _propose(proposer, observed, pending)
    ids = [p.material_id for p in batch.proposals]
    assert len(ids) == len(set(ids)) == 3
    forbidden = {o.material_id for o in observed} | {int(p["material_id"]) for p in pending}
    forbidden |= {members[i].material_id for i in proposer.excluded}
    assert not forbidden & set(ids)
    assert "space-filling" not in batch.reason
    for proposal in batch.proposals:
        assert proposal.parameters == {"material_id": float(proposal.material_id)}
        assert 0.0 < proposal.predicted_mean < 1500.0 and proposal.predicted_std > 0.0
        assert math.isfinite(proposal.acquisition_value)


def test_minimising_keeps_the_predictions_in_physical_units(ci_spec, members) -> None:
    first = ci_spec.objectives[0].model_copy(update={"direction": Direction.MINIMIZE})
    spec = ci_spec.model_copy(update={"objectives": [first, *ci_spec.objectives[1:]]})
    proposer = MaterialsProposer(spec, members, cathode_mass_g=20.0, settings=SMALL)
    observed = _observed(members, ["LiFePO4", "LiMnPO4", "LiCoPO4", "LiNiPO4", "LiMn0.5Fe0.5PO4"])
    batch = _propose(proposer, observed, [])
    assert all(0.0 < p.predicted_mean < 1500.0 for p in batch.proposals)


def test_too_few_observations_give_a_space_filling_batch(ci_spec, members) -> None:
    proposer = MaterialsProposer(ci_spec, members, cathode_mass_g=20.0, settings=SMALL)
    batch = _propose(proposer, _observed(members, ["LiFePO4"]), [], q=4)
    assert "space-filling" in batch.reason and len(batch.proposals) == 4
    assert all(p.predicted_mean is None for p in batch.proposals)


def test_an_empty_pool_is_refused(ci_spec) -> None:
    from voltloop.orchestrator.materials_proposing import MaterialsPoolError

    with pytest.raises(MaterialsPoolError, match="the materials pool is empty") as caught:
        MaterialsProposer(ci_spec, [], cathode_mass_g=20.0)
    assert caught.value.exit_code == 2
    with pytest.raises(MaterialsPoolError, match="needs the cells' cathode mass"):
        MaterialsProposer(ci_spec, [PoolMember(1, "x", "x", {})], cathode_mass_g=None)
