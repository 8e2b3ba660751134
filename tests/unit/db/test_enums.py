"""Status enums: stored values and the experiment life-cycle."""

from __future__ import annotations

import pytest

from voltloop.db.enums import (
    CampaignKind,
    ChannelState,
    EventLevel,
    ExperimentStatus,
    InstrumentKind,
)
from voltloop.db.models import Base

S = ExperimentStatus


def test_experiment_statuses_are_those_of_the_design() -> None:
    assert [s.value for s in S] == [
        "proposed",
        "queued",
        "running",
        "early_predicted",
        "completed",
        "failed",
        "safety_stopped",
        "aborted",
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (S.PROPOSED, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.EARLY_PREDICTED),
        (S.EARLY_PREDICTED, S.COMPLETED),
        (S.RUNNING, S.COMPLETED),
        (S.RUNNING, S.SAFETY_STOPPED),
        (S.EARLY_PREDICTED, S.FAILED),
        (S.QUEUED, S.ABORTED),
    ],
)
def test_allowed_transitions(start: S, end: S) -> None:
    assert start.can_become(end)


@pytest.mark.parametrize(
    ("start", "end"),
    [(S.PROPOSED, S.RUNNING), (S.COMPLETED, S.RUNNING), (S.EARLY_PREDICTED, S.RUNNING)],
)
def test_forbidden_transitions(start: S, end: S) -> None:
    assert not start.can_become(end)


def test_terminal_statuses() -> None:
    assert {s for s in S if s.is_terminal} == {S.COMPLETED, S.FAILED, S.SAFETY_STOPPED, S.ABORTED}


def test_enum_values_are_stored_not_names() -> None:
    column = Base.metadata.tables["experiment"].c.status
    assert column.type.enums == [s.value for s in S]
    assert column.type.native_enum is False


def test_other_enums_have_the_documented_values() -> None:
    assert {k.value for k in CampaignKind} == {"protocol", "materials"}
    assert {k.value for k in InstrumentKind} == {"cycler", "potentiostat"}
    assert "waiting_eis" in {s.value for s in ChannelState}
    assert [level.value for level in EventLevel][-1] == "critical"
