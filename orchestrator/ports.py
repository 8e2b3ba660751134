"""What the campaign engine needs besides instruments, as small interfaces.

The engine proposes through a :class:`Proposer`, predicts lifetimes through a
:class:`LifetimePredictor`, and asks an :class:`Operator` to build and load cells.
Dry runs, real runs and tests plug different implementations into the same engine
(docs/decisions/0002-campaign-engine.md). Instruments are reached through
``voltloop.drivers.interfaces.Cycler`` and ``Potentiostat``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Observation:
    """What a tested candidate taught us.

    ``objective`` is the campaign's objective value (e.g. cycle life). ``noise_std``
    is its standard deviation: small for a measured end of life, the predictor's
    std for an early prediction. ``outcomes`` carries constraint metrics such as
    ``peak_temperature_C``.
    """

    candidate_id: int
    parameters: dict[str, float]
    objective: float
    noise_std: float | None = None
    outcomes: dict[str, float] = field(default_factory=dict)
    material_id: int | None = None


@dataclass(frozen=True)
class Proposal:
    parameters: dict[str, float]
    acquisition_value: float | None = None
    predicted_mean: float | None = None
    predicted_std: float | None = None
    material_id: int | None = None


@dataclass(frozen=True)
class ProposalBatch:
    """A batch and how it was made: ``reason`` explains fallbacks (e.g. a
    space-filling batch while there are too few observations for a model)."""

    proposals: list[Proposal]
    reason: str = ""
    model_version_ids: list[int] = field(default_factory=list)


@runtime_checkable
class Proposer(Protocol):
    def propose(
        self,
        *,
        observations: Sequence[Observation],
        pending: Sequence[dict[str, float]],
        tested: Sequence[dict[str, float]],
        q: int,
        seed: int,
    ) -> ProposalBatch:
        """Propose ``q`` new candidates; never one in ``pending`` or ``tested``."""
        ...


@dataclass(frozen=True)
class LifetimeEstimate:
    cycles_seen: int
    predicted_life_cycles: float
    predicted_life_std: float | None
    model_version_id: int
    extrapolated: bool = False  # the cell's features lay outside what the model was fit on
    note: str = ""


@runtime_checkable
class LifetimePredictor(Protocol):
    def prepare(self, session: Any, campaign_id: int) -> str:
        """Retrain on everything measured so far (called before each proposal); a note
        for the audit trail says what was done."""
        ...

    def predict(self, session: Any, experiment_id: str, cycles_seen: int) -> LifetimeEstimate:
        """Predict an experiment's cycle life from its first ``cycles_seen`` stored cycles
        and store the prediction row (with its model version)."""
        ...


class HealthAction(enum.StrEnum):
    CONTINUE = "continue"
    REVIEW = "review"  # flag the cell for a person to look at
    STOP = "stop"  # stop cycling the cell


@dataclass(frozen=True)
class HealthVerdict:
    """A cell-health model's view of a live cell after an EIS checkpoint."""

    action: HealthAction
    failure_score: float  # > 0: on the failing side
    anomaly_score: float  # < 0: unlike the healthy cells the model was trained on
    model_version_id: int


@runtime_checkable
class HealthMonitor(Protocol):
    def prepare(self, session: Any, campaign_id: int) -> str:
        """Retrain on everything measured so far (called before each proposal)."""
        ...

    def assess(self, session: Any, experiment_id: str) -> HealthVerdict | None:
        """The verdict on a live cell from its latest spectrum; None without a model."""
        ...


class LoadOutcome(enum.StrEnum):
    LOADED = "loaded"
    NOT_BUILT = "not_built"
    DAMAGED = "damaged"
    WAITING = "waiting"  # the operator has not answered yet


@dataclass(frozen=True)
class LoadingSlot:
    """One line of a round's loading sheet: which cell goes into which channel."""

    experiment_id: str
    cell_id: str
    cycler_url: str
    channel: int
    parameters: dict[str, Any]
    material: dict[str, Any] | None = None


@runtime_checkable
class Operator(Protocol):
    """The person (or, in a dry run, the simulated loader) who builds and loads cells."""

    def load(self, slots: Sequence[LoadingSlot]) -> dict[str, LoadOutcome]:
        """Outcome per experiment id; ``WAITING`` until the operator confirms."""
        ...

    def attach_potentiostat(self, cycler_url: str, channel: int) -> None:
        """Route the potentiostat to a channel's cell before an EIS checkpoint."""
        ...
