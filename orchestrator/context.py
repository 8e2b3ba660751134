"""Everything one campaign engine works with, gathered in one object.

The engine's phases (rounds, dispatch, polling) are functions of an
:class:`EngineContext`; none keeps state of its own — the database does.
"""

from __future__ import annotations

import enum
import hashlib
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from voltloop.campaigns.base import CampaignBase
from voltloop.db.enums import EventLevel
from voltloop.db.ingest import record_event
from voltloop.drivers.interfaces import Cycler, Potentiostat
from voltloop.orchestrator.ports import HealthMonitor, LifetimePredictor, Operator, Proposer


class StepKind(enum.StrEnum):
    """What one call of ``CampaignEngine.step()`` did."""

    OPEN_ROUND = "open_round"
    PROPOSE = "propose"
    DISPATCH = "dispatch"  # load cells (operator) and start experiments
    POLL = "poll"
    CLOSE_ROUND = "close_round"
    FINALISE = "finalise"
    WAIT = "wait"  # nothing due now: cells are cycling or the operator has not answered


@dataclass(frozen=True)
class StepResult:
    kind: StepKind
    message: str = ""
    finished: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineSettings:
    lease_ttl_s: float = 120.0  # campaign and channel leases expire this long after a heartbeat
    heartbeat_s: float = 30.0
    fetch_limit: int | None = None  # records per fetch (None: all available)


def new_holder_id() -> str:
    """Who holds the leases: this host and process, plus a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(holder: str) -> bool:
    """True if ``holder`` (``host:pid:random`` of :func:`new_holder_id`) names a process
    on this host that no longer exists — an orchestrator killed without releasing its
    leases. Unknown formats, other hosts and live (or unknowable) pids are not dead."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return False


def runs_to_end_of_life(seed: int, experiment_id: str, share: float) -> bool:
    """Seeded, reproducible draw: does this cell run on to end of life?

    A function of (campaign seed, experiment UUID) only, so a resumed run makes the
    same decision without storing it.
    """
    digest = hashlib.sha256(f"{seed}:{experiment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


@dataclass
class EngineContext:
    db: Engine
    campaign_id: int
    campaign_name: str
    spec: CampaignBase
    cyclers: Mapping[str, Cycler]  # by URL, as in the spec
    potentiostat: Potentiostat | None
    proposer: Proposer
    predictor: LifetimePredictor | None
    operator: Operator
    #: (candidate parameters, runs to end of life?) → the compiled protocol as JSON
    #: (``drivers.protocols.CompiledProtocol``: ``protocol`` is the unicycler protocol,
    #: ``safety`` voltloop's safety block); raises ValueError naming the step and limit
    #: if the protocol is not dispatchable. Stored as ``experiment.protocol``.
    compile_protocol: Callable[[dict[str, float], bool], dict[str, Any]]
    holder: str = field(default_factory=new_holder_id)
    settings: EngineSettings = field(default_factory=EngineSettings)
    eis_spec: Any = None  # drivers.eis.EisSpec for checkpoints, when a potentiostat is used
    #: cell-health verdicts after EIS checkpoints; None: the predictor's own monitor
    #: (its ``health`` attribute), if it has one
    health: HealthMonitor | None = None
    #: per experiment: (step kinds, checkpoint steps) of its compiled protocol, parsed
    #: once (orchestrator/polling.py)
    step_info: dict[str, tuple] = field(default_factory=dict, repr=False)
    #: per experiment, once it has its early prediction: does it run on to end of
    #: life (orchestrator/polling.py)
    run_on: dict[str, bool] = field(default_factory=dict, repr=False)

    @property
    def health_monitor(self) -> HealthMonitor | None:
        return self.health or getattr(self.predictor, "health", None)

    @property
    def eol_threshold_ah(self) -> float:
        return self.spec.lifetime.end_of_life_capacity * self.spec.cell.nominal_capacity_Ah

    def end_experiment(
        self,
        session: Session,
        experiment: Any,
        status: Any,
        reason: str,
        *,
        kind: str,
        level: EventLevel,
        observed: bool = False,
    ) -> None:
        """Give an experiment its final status and reason, settle its candidate
        (observed, or failed), and record why in the audit trail."""
        from voltloop.db.enums import CandidateStatus
        from voltloop.db.models import Candidate
        from voltloop.db.types import utcnow

        experiment.status = status
        experiment.end_reason = reason
        experiment.ended_at = utcnow()
        candidate = session.get(Candidate, experiment.candidate_id)
        if candidate is not None:
            candidate.status = CandidateStatus.OBSERVED if observed else CandidateStatus.FAILED
        self.event(
            session,
            kind,
            reason,
            level=level,
            experiment_id=experiment.id,
            payload={"status": status.value},
        )

    def event(
        self,
        session: Session,
        kind: str,
        message: str,
        *,
        level: EventLevel = EventLevel.INFO,
        experiment_id: str | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> None:
        record_event(
            session,
            level,
            kind,
            message,
            campaign_id=self.campaign_id,
            experiment_id=experiment_id,
            payload=payload,
        )
