"""What a simulated campaign's answer is really worth: true cycle lives, simulated
on fresh virtual cells without the wire (``drivers/sim/truth.py``), for a dry run's
summary and ``voltloop bench loop``.

The cells are the same for every protocol (``truth-0``, ``truth-1``, ... seeded from the
campaign's seed), so protocols are compared on common cells; each cell's life does not
depend on the others in its bank. :class:`TruthPrefetch` simulates a confirmation
round's protocols on the other core while the round runs.
"""

from __future__ import annotations

from voltloop.campaigns.protocol_campaign import ProtocolCampaign
from voltloop.orchestrator.simulated_operator import cell_seed

#: Cycle budget when the simulator runs a protocol to its true end of life.
TRUTH_MAX_CYCLES = 4000


def true_life(spec: ProtocolCampaign, parameters: dict[str, float], cells: int = 4) -> float:
    """Mean simulated cycle life of ``parameters`` over ``cells`` fresh virtual cells."""
    return true_lives(spec, [parameters], cells)[0]


def true_lives(
    spec: ProtocolCampaign, protocols: list[dict[str, float]], cells: int = 4
) -> list[float]:
    """:func:`true_life` of each of ``protocols``, in one vectorised bank (each cell's
    life does not depend on the others in its bank)."""
    import numpy as np

    from voltloop.drivers.protocols import compile_candidate
    from voltloop.drivers.sim.truth import cycle_lives
    from voltloop.drivers.sim.virtual_lab import CellSpec

    # The ageing cycle alone: checkpoints (EIS, reference tests) pause or interleave
    # and are not part of what "cycle life under this protocol" means.
    ageing = spec.model_copy(update={"eis": None, "reference_test": None})
    specs, programs = [], []
    for parameters in protocols:
        text = compile_candidate(
            ageing, parameters, cycles=TRUTH_MAX_CYCLES
        ).protocol.model_dump_json()
        for i in range(cells):
            specs.append(
                CellSpec(
                    cell_id=f"truth-{i}",
                    kind=spec.cell.kind,
                    seed=cell_seed(spec.seed, f"truth-{i}"),
                    chamber_temperature_C=spec.cell.chamber_temperature_C,
                )
            )
            programs.append(text)
    run = cycle_lives(
        specs,
        programs,
        eol_fraction=spec.lifetime.end_of_life_capacity,
        max_cycles=TRUTH_MAX_CYCLES,
    )
    lives = run.lives.reshape(len(protocols), cells)
    return [float(np.nanmean(row)) if np.isfinite(row).any() else float("nan") for row in lives]


def _true_lives_of_data(spec_data: dict, protocols: list[dict[str, float]]) -> list[float]:
    """:func:`true_lives` from the spec's JSON form, for a worker process."""
    from voltloop.campaigns.loading import validate_campaign_data

    return true_lives(validate_campaign_data(spec_data), protocols)


class TruthPrefetch:
    """The true lives of a confirmation round's protocols, simulated in a worker
    process on the machine's other core while the round runs, so the summary need not
    wait for the recommendation's (one of them) at the end."""

    def __init__(self, spec: ProtocolCampaign, protocols: list[dict[str, float]]):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.protocols = protocols
        # spawn: the parent holds server threads and torch; a fork would copy their locks
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._future = self._pool.submit(
            _true_lives_of_data, spec.model_dump(mode="json"), protocols
        )

    def life_of(self, parameters: dict[str, float]) -> float | None:
        """The prefetched true life of ``parameters``; None if it is not among them or
        the worker failed (the caller simulates it itself)."""
        index = next(
            (
                i
                for i, p in enumerate(self.protocols)
                if p.keys() == parameters.keys()
                and all(abs(p[k] - float(parameters[k])) < 1e-9 for k in p)
            ),
            None,
        )
        if index is None:
            return None
        try:
            return self._future.result(timeout=600)[index]
        except Exception:  # noqa: BLE001 - a failed prefetch only costs the fallback
            return None

    def close(self) -> None:
        self._future.cancel()
        for process in list(getattr(self._pool, "_processes", {}).values()):
            process.terminate()  # a cancelled or abandoned run does not wait for it
        self._pool.shutdown(wait=True, cancel_futures=True)
