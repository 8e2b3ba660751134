"""Leases: exclusive, expiring ownership of a resource, held in the database.

A lease names a resource by key (``channel:<id>`` for a cycler channel, so no
two dispatchers load one channel; ``campaign:<name>`` so one orchestrator runs a
campaign), a holder id (e.g. ``host:pid:uuid``) and an expiry. Holders renew
(heartbeat) well before expiry; a crashed holder's lease expires and can then
be taken over. Each call is one short transaction of conditional UPDATE /
INSERT ... ON CONFLICT DO NOTHING statements whose RETURNING rows say whether
it won, which is atomic on PostgreSQL (row locks, re-checked WHERE) and on
SQLite (``BEGIN IMMEDIATE`` serialises writers). Expiry compares the callers'
clocks: keep hosts NTP-synchronised and TTLs far above any skew.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import Engine, bindparam, case, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .engine import read_session, write_session
from .errors import InvalidRecordError, LeaseHeldError, LeaseLostError
from .models import Lease
from .types import utcnow

_LEASE = Lease.__table__


def channel_key(channel_id: int) -> str:
    """Resource key of a cycler channel (its ``channel.id``)."""
    return f"channel:{int(channel_id)}"


def campaign_key(campaign_name: str) -> str:
    """Resource key that gives one orchestrator a whole campaign."""
    return f"campaign:{campaign_name}"


@dataclasses.dataclass(frozen=True)
class LeaseInfo:
    resource_key: str
    holder: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime
    expires_at: dt.datetime
    channel_id: int | None = None
    experiment_id: str | None = None

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires_at <= (now or utcnow())


def _ttl(ttl_s: float) -> dt.timedelta:
    if not ttl_s > 0:
        raise InvalidRecordError(f"lease ttl_s must be > 0 s, got {ttl_s!r}")
    return dt.timedelta(seconds=float(ttl_s))


def _info(row: object) -> LeaseInfo:
    return LeaseInfo(
        resource_key=row.resource_key,  # type: ignore[attr-defined]
        holder=row.holder,  # type: ignore[attr-defined]
        acquired_at=row.acquired_at,  # type: ignore[attr-defined]
        heartbeat_at=row.heartbeat_at,  # type: ignore[attr-defined]
        expires_at=row.expires_at,  # type: ignore[attr-defined]
        channel_id=row.channel_id,  # type: ignore[attr-defined]
        experiment_id=row.experiment_id,  # type: ignore[attr-defined]
    )


def acquire_lease(
    engine: Engine,
    resource_key: str,
    holder: str,
    ttl_s: float,
    *,
    channel_id: int | None = None,
    experiment_id: str | None = None,
    now: dt.datetime | None = None,
) -> LeaseInfo:
    """Take the lease on ``resource_key`` for ``holder`` until now + ``ttl_s``.

    Succeeds if nobody holds it, if its lease expired, or if ``holder`` already
    holds it (then it is renewed). Raises :class:`LeaseHeldError` naming the
    current holder and expiry otherwise.
    """
    if not resource_key or not holder:
        raise InvalidRecordError("a lease needs a non-empty resource key and holder")
    now = now or utcnow()
    expires = now + _ttl(ttl_s)
    columns = list(_LEASE.c)
    with write_session(engine) as session:
        connection = session.connection()
        taken = connection.execute(
            update(_LEASE)
            .where(_LEASE.c.resource_key == resource_key)
            .where(or_(_LEASE.c.holder == holder, _LEASE.c.expires_at <= now))
            .values(
                # a takeover starts a new lease; the same holder keeps its start time
                acquired_at=case(
                    (_LEASE.c.holder == holder, _LEASE.c.acquired_at),
                    else_=bindparam(None, now, type_=_LEASE.c.acquired_at.type),
                ),
                holder=holder,
                heartbeat_at=now,
                expires_at=expires,
                channel_id=channel_id,
                experiment_id=experiment_id,
            )
            .returning(*columns)
        ).first()
        if taken is not None:
            return _info(taken)
        insert = (postgresql if connection.dialect.name == "postgresql" else sqlite).insert
        created = connection.execute(
            insert(_LEASE)
            .values(
                resource_key=resource_key,
                holder=holder,
                acquired_at=now,
                heartbeat_at=now,
                expires_at=expires,
                channel_id=channel_id,
                experiment_id=experiment_id,
            )
            .on_conflict_do_nothing(index_elements=["resource_key"])
            .returning(*columns)
        ).first()
        if created is not None:
            return _info(created)
        current = connection.execute(
            select(_LEASE).where(_LEASE.c.resource_key == resource_key)
        ).first()
    if current is None:  # released between our statements: the caller may simply retry
        raise LeaseHeldError(f"lease {resource_key!r} changed hands during acquisition; retry")
    raise LeaseHeldError(
        f"lease {resource_key!r} is held by {current.holder!r} until "
        f"{current.expires_at.isoformat()}"
    )


def renew_lease(
    engine: Engine, resource_key: str, holder: str, ttl_s: float, *, now: dt.datetime | None = None
) -> LeaseInfo:
    """Heartbeat: extend ``holder``'s lease to now + ``ttl_s``.

    Raises :class:`LeaseLostError` if ``holder`` no longer holds it (released, or
    expired and taken over by someone else). A lease that expired but that nobody
    took over is still the holder's and is renewed.
    """
    now = now or utcnow()
    expires = now + _ttl(ttl_s)
    with write_session(engine) as session:
        renewed = (
            session.connection()
            .execute(
                update(_LEASE)
                .where(_LEASE.c.resource_key == resource_key, _LEASE.c.holder == holder)
                .values(heartbeat_at=now, expires_at=expires)
                .returning(*_LEASE.c)
            )
            .first()
        )
    if renewed is None:
        raise LeaseLostError(f"{holder!r} no longer holds lease {resource_key!r}")
    return _info(renewed)


def release_lease(engine: Engine, resource_key: str, holder: str) -> bool:
    """Give the lease up; False if ``holder`` did not hold it (nothing changes then)."""
    with write_session(engine) as session:
        gone = (
            session.connection()
            .execute(
                delete(_LEASE)
                .where(_LEASE.c.resource_key == resource_key, _LEASE.c.holder == holder)
                .returning(_LEASE.c.id)
            )
            .first()
        )
    return gone is not None


def take_over_leases(
    engine: Engine, dead_holder: str, holder: str, ttl_s: float, *, now: dt.datetime | None = None
) -> int:
    """Move every lease ``dead_holder`` holds to ``holder`` (until now + ``ttl_s``); the
    number moved. Only for a holder known to be dead (its process is gone): the update
    is conditional on the old holder, so a lease renewed or released meanwhile by a
    live holder is left alone."""
    if not dead_holder or not holder:
        raise InvalidRecordError("a takeover needs both holders")
    now = now or utcnow()
    expires = now + _ttl(ttl_s)
    with write_session(engine) as session:
        moved = (
            session.connection()
            .execute(
                update(_LEASE)
                .where(_LEASE.c.holder == dead_holder)
                .values(holder=holder, acquired_at=now, heartbeat_at=now, expires_at=expires)
                .returning(_LEASE.c.id)
            )
            .all()
        )
    return len(moved)


def current_lease(session: Session, resource_key: str) -> LeaseInfo | None:
    """The stored lease on ``resource_key`` (expired or not), or None."""
    row = (
        session.connection()
        .execute(select(_LEASE).where(_LEASE.c.resource_key == resource_key))
        .first()
    )
    return None if row is None else _info(row)


def active_leases(
    engine_or_session: Engine | Session, prefix: str = "", *, now: dt.datetime | None = None
) -> list[LeaseInfo]:
    """Unexpired leases whose key starts with ``prefix`` (e.g. ``"channel:"``)."""
    now = now or utcnow()
    statement = (
        select(_LEASE)
        .where(_LEASE.c.expires_at > now, _LEASE.c.resource_key.startswith(prefix, autoescape=True))
        .order_by(_LEASE.c.resource_key)
    )
    if isinstance(engine_or_session, Session):
        return [_info(r) for r in engine_or_session.connection().execute(statement)]
    with read_session(engine_or_session) as session:
        return [_info(r) for r in session.connection().execute(statement)]
