"""Replicate cells: a protocol campaign may test a protocol again in a later round."""

from __future__ import annotations

import numpy as np

from voltloop.orchestrator.dry_run import load_dry_run_spec
from voltloop.orchestrator.observations import PEAK_TEMPERATURE
from voltloop.orchestrator.ports import Observation
from voltloop.orchestrator.proposing import ProtocolProposer


def _observations(proposer: ProtocolProposer) -> list[Observation]:
    """Noisy early predictions over all but the last 4 protocols of the pool."""
    rng = np.random.default_rng(0)
    pool = proposer.space.candidates[:-4]
    rows = []
    for i, x in enumerate(pool):
        parameters = dict(zip(proposer.names, map(float, x), strict=True))
        life = 800.0 + 100.0 * parameters["CC1"] + rng.normal(0, 60)
        rows.append(
            Observation(
                candidate_id=i + 1,
                parameters=parameters,
                objective=life,
                noise_std=150.0,  # an early guess: a replicate is worth having
                outcomes={PEAK_TEMPERATURE: 35.0},
            )
        )
    return rows


def test_replicates_let_a_later_batch_retest_and_off_forbids_it() -> None:
    spec = load_dry_run_spec(None)
    for replicates in (True, False):
        proposer = ProtocolProposer(spec.model_copy(update={"replicates": replicates}))
        observed = _observations(proposer)
        batch = proposer.propose(
            observations=observed,
            pending=[],
            tested=[o.parameters for o in observed],
            q=8,
            seed=1,
        )
        tested = {tuple(sorted(o.parameters.items())) for o in observed}
        again = [p for p in batch.proposals if tuple(sorted(p.parameters.items())) in tested]
        if replicates:  # the 4 untested protocols cannot fill a batch of 8 alone
            assert len(batch.proposals) == 8 and len(again) >= 4
        else:
            assert not again and len(batch.proposals) == 4
