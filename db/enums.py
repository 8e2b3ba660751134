"""Explicit status and kind enums of the campaign database.

Every enum is a ``StrEnum`` whose *values* are what the database stores (as a
string column with a CHECK constraint, identical on SQLite and PostgreSQL; see
docs/decisions/0010-database-schema.md). Adding a value needs a migration that
widens the CHECK constraint.
"""

from __future__ import annotations

import enum


class CampaignKind(enum.StrEnum):
    """What a campaign searches over."""

    PROTOCOL = "protocol"  # cycling protocols (e.g. fast-charge CC1-CC4)
    MATERIALS = "materials"  # candidate cathode/anode structures


class CampaignStatus(enum.StrEnum):
    CREATED = "created"  # stored, no round started
    RUNNING = "running"
    PAUSED = "paused"  # stopped on purpose; `voltloop resume` continues it
    COMPLETED = "completed"  # every round finished
    FAILED = "failed"
    ABORTED = "aborted"


class RoundStatus(enum.StrEnum):
    PLANNED = "planned"
    TRAINING = "training"  # surrogates retrained on everything measured so far
    PROPOSING = "proposing"  # acquisition optimisation running
    DISPATCHING = "dispatching"  # experiments being loaded onto channels
    RUNNING = "running"  # cells cycling
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"


class RoundKind(enum.StrEnum):
    SEARCH = "search"  # the optimiser proposes new candidates
    CONFIRMATION = "confirmation"  # the best tested protocols again, run to end of life


class CandidateStatus(enum.StrEnum):
    PROPOSED = "proposed"  # suggested by the optimiser
    REJECTED = "rejected"  # failed a constraint/safety check before dispatch
    SCHEDULED = "scheduled"  # has an experiment waiting for a channel
    RUNNING = "running"
    OBSERVED = "observed"  # objective measured or early-predicted
    FAILED = "failed"


class ExperimentStatus(enum.StrEnum):
    """design.md: proposed -> queued -> running -> early_predicted -> completed,
    or failed, safety_stopped, aborted."""

    PROPOSED = "proposed"
    QUEUED = "queued"
    RUNNING = "running"
    EARLY_PREDICTED = "early_predicted"
    COMPLETED = "completed"
    FAILED = "failed"
    SAFETY_STOPPED = "safety_stopped"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        """True when nothing more will happen to the experiment."""
        return self in _TERMINAL_EXPERIMENT

    def can_become(self, target: ExperimentStatus) -> bool:
        """Whether the life-cycle allows moving from this status to ``target``."""
        return target in _EXPERIMENT_TRANSITIONS[self]


_TERMINAL_EXPERIMENT = frozenset(
    {
        ExperimentStatus.COMPLETED,
        ExperimentStatus.FAILED,
        ExperimentStatus.SAFETY_STOPPED,
        ExperimentStatus.ABORTED,
    }
)
_ENDINGS = frozenset(
    {ExperimentStatus.FAILED, ExperimentStatus.SAFETY_STOPPED, ExperimentStatus.ABORTED}
)
_EXPERIMENT_TRANSITIONS: dict[ExperimentStatus, frozenset[ExperimentStatus]] = {
    ExperimentStatus.PROPOSED: frozenset({ExperimentStatus.QUEUED, ExperimentStatus.ABORTED}),
    ExperimentStatus.QUEUED: frozenset(
        {ExperimentStatus.RUNNING, ExperimentStatus.FAILED, ExperimentStatus.ABORTED}
    ),
    ExperimentStatus.RUNNING: frozenset(
        {ExperimentStatus.EARLY_PREDICTED, ExperimentStatus.COMPLETED} | _ENDINGS
    ),
    ExperimentStatus.EARLY_PREDICTED: frozenset({ExperimentStatus.COMPLETED} | _ENDINGS),
    ExperimentStatus.COMPLETED: frozenset(),
    ExperimentStatus.FAILED: frozenset(),
    ExperimentStatus.SAFETY_STOPPED: frozenset(),
    ExperimentStatus.ABORTED: frozenset(),
}


class InstrumentKind(enum.StrEnum):
    CYCLER = "cycler"
    POTENTIOSTAT = "potentiostat"


class ChannelState(enum.StrEnum):
    """Last known state of a cycler channel (the values the cycler reports, plus
    ``unknown`` before the first status poll and ``offline`` when unreachable)."""

    UNKNOWN = "unknown"
    OFFLINE = "offline"
    EMPTY = "empty"
    IDLE = "idle"
    RUNNING = "running"
    WAITING_EIS = "waiting_eis"
    COMPLETED = "completed"
    STOPPED = "stopped"
    SAFETY_STOPPED = "safety_stopped"
    FAULT = "fault"


class EventLevel(enum.StrEnum):
    """Severity of an audit-trail event (the names of Python's logging levels)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"
