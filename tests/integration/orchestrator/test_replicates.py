"""Replicate cells: a protocol campaign may test a protocol again in a later round."""

from __future__ import annotations

import numpy as np

from voltloop.orchestrator.dry_run import load_dry_run_spec
from voltloop.orchestrator.observations import PEAK_TEMPERATURE
from voltloop.orchestrator.ports import Observation
from voltloop.orchestrator.proposing import ProtocolProposer


def _observations(proposer: ProtocolProposer) -> list[Observation]:
    """Noisy early predictions over 24 protocols: life grows with CC1, peaks at one."""
    rng = np.random.default_rng(0)
    pool = proposer.space.candidates[:: max(1, proposer.space.size // 24)][:24]
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
            q=12,
            seed=1,
        )
        tested = {tuple(sorted(o.parameters.items())) for o in observed}
        again = [p for p in batch.proposals if tuple(sorted(p.parameters.items())) in tested]
        if replicates:
            assert again, "no observed protocol was proposed again"
        else:
            assert not again
