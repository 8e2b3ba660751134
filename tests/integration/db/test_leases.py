"""Leases: one holder at a time, expiry and takeover, heartbeats, races."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine

from voltloop.db.errors import LeaseHeldError, LeaseLostError
from voltloop.db.leases import (
    acquire_lease,
    active_leases,
    campaign_key,
    channel_key,
    release_lease,
    renew_lease,
    take_over_leases,
)

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 5, 1, 8, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_acquire_hold_expire_takeover(engine: Engine) -> None:
    key = channel_key(3)
    first = acquire_lease(engine, key, "orchestrator-a", 30, now=at(0))
    assert (first.holder, first.expires_at) == ("orchestrator-a", at(30))
    with pytest.raises(LeaseHeldError, match="held by 'orchestrator-a' until 2026-05-01T08:00:30"):
        acquire_lease(engine, key, "orchestrator-b", 30, now=at(10))
    again = acquire_lease(engine, key, "orchestrator-a", 30, now=at(10))  # re-entrant: renews
    assert again.acquired_at == at(0) and again.expires_at == at(40)
    taken = acquire_lease(engine, key, "orchestrator-b", 30, now=at(41))  # expired: takeover
    assert (taken.holder, taken.acquired_at, taken.expires_at) == ("orchestrator-b", at(41), at(71))
    with pytest.raises(LeaseLostError, match="orchestrator-a"):
        renew_lease(engine, key, "orchestrator-a", 30, now=at(42))


def test_heartbeat_and_release(engine: Engine) -> None:
    key = campaign_key("fastcharge-2026")
    acquire_lease(engine, key, "h1", 10, now=at(0))
    renewed = renew_lease(engine, key, "h1", 10, now=at(8))
    assert (renewed.heartbeat_at, renewed.expires_at) == (at(8), at(18))
    # expired but nobody took it over: still the holder's
    assert renew_lease(engine, key, "h1", 10, now=at(30)).expires_at == at(40)
    assert not release_lease(engine, key, "someone-else")
    assert [lease.holder for lease in active_leases(engine, "campaign:", now=at(31))] == ["h1"]
    assert release_lease(engine, key, "h1")
    assert active_leases(engine, now=at(31)) == []
    assert acquire_lease(engine, key, "h2", 10, now=at(31)).holder == "h2"


def test_bad_ttl_and_empty_names_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        acquire_lease(engine, "channel:1", "h", 0)
    with pytest.raises(ValueError, match="non-empty"):
        acquire_lease(engine, "", "h", 5)


def _race(engine: Engine, key: str, holders: list[str], now: dt.datetime) -> list[str]:
    winners: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(holders))

    def contend(holder: str) -> None:
        try:
            barrier.wait(timeout=10)
            acquire_lease(engine, key, holder, 60, now=now)
            winners.append(holder)
        except LeaseHeldError:
            pass
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=contend, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return winners


def test_racing_acquirers_get_exactly_one_winner(engine: Engine) -> None:
    holders = [f"worker-{i}" for i in range(6)]
    for attempt in range(3):
        key = channel_key(100 + attempt)
        winners = _race(engine, key, holders, at(0))
        assert len(winners) == 1
        assert [lease.holder for lease in active_leases(engine, key, now=at(1))] == winners


def test_racing_takeover_of_an_expired_lease_has_one_winner(engine: Engine) -> None:
    key = channel_key(7)
    acquire_lease(engine, key, "crashed-host", 5, now=at(0))
    winners = _race(engine, key, [f"worker-{i}" for i in range(6)], at(100))
    assert len(winners) == 1
    assert active_leases(engine, key, now=at(101))[0].holder == winners[0]


def test_a_dead_holders_leases_move_to_the_new_holder(engine: Engine) -> None:
    acquire_lease(engine, campaign_key("c"), "dead", 60, now=at(0))
    acquire_lease(engine, channel_key(1), "dead", 60, now=at(0))
    acquire_lease(engine, channel_key(2), "alive", 60, now=at(0))
    assert take_over_leases(engine, "dead", "new", 30, now=at(5)) == 2
    held = {lease.resource_key: lease for lease in active_leases(engine, now=at(6))}
    assert held[campaign_key("c")].holder == "new" and held[channel_key(2)].holder == "alive"
    moved = held[channel_key(1)]
    assert (moved.holder, moved.expires_at) == ("new", at(35))
    assert take_over_leases(engine, "dead", "new", 30, now=at(7)) == 0  # nothing left
