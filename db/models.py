"""The typed ORM of the campaign database: the domain model of design.md.

Tables: campaign, round, candidate, material, instrument, channel, lease,
experiment, cycle, eis_spectrum, model_version, prediction, event. The schema
is created and changed only by the Alembic migrations in ``db/migrations``;
``tests/integration/db/test_migrations.py`` checks they agree with this module.
Column names carry their units (``_Ah``, ``_Wh``, ``_s``, ``_C``, ``_ohm``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .enums import (
    CampaignKind,
    CampaignStatus,
    CandidateStatus,
    ChannelState,
    EventLevel,
    ExperimentStatus,
    InstrumentKind,
    RoundKind,
    RoundStatus,
)
from .types import BigId, PortableJSON, UTCDateTime, str_enum, utcnow

#: Deterministic constraint names, so migrations (and SQLite batch mode) can find them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_experiment_id() -> str:
    """A fresh experiment UUID in its canonical string form (36 characters)."""
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: PortableJSON, dt.datetime: UTCDateTime}


class Campaign(Base):
    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[CampaignKind] = mapped_column(str_enum(CampaignKind, "campaign_kind"))
    spec: Mapped[dict[str, Any]]  # the validated campaign spec, as JSON
    status: Mapped[CampaignStatus] = mapped_column(
        str_enum(CampaignStatus, "campaign_status"), default=CampaignStatus.CREATED
    )
    seed: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    rounds: Mapped[list[Round]] = relationship(
        back_populates="campaign", order_by="Round.round_index"
    )


class Round(Base):
    __tablename__ = "round"
    __table_args__ = (UniqueConstraint("campaign_id", "round_index"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    round_index: Mapped[int] = mapped_column(Integer)  # 0, 1, 2, ... per campaign
    status: Mapped[RoundStatus] = mapped_column(
        str_enum(RoundStatus, "round_status"), default=RoundStatus.PLANNED
    )
    kind: Mapped[RoundKind] = mapped_column(
        str_enum(RoundKind, "round_kind"),
        default=RoundKind.SEARCH,
        server_default=RoundKind.SEARCH.value,
    )
    #: ids of the model_version rows whose surrogates proposed this round's batch
    model_version_ids: Mapped[list[int]] = mapped_column(PortableJSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]

    campaign: Mapped[Campaign] = relationship(back_populates="rounds")


class Material(Base):
    __tablename__ = "material"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    formula: Mapped[str] = mapped_column(String(128), index=True)
    structure: Mapped[dict[str, Any]]  # pymatgen Structure.as_dict()
    structure_hash: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(256), default="")  # file, substitution rule...
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Candidate(Base):
    __tablename__ = "candidate"
    __table_args__ = (Index(None, "campaign_id", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    round_id: Mapped[int | None] = mapped_column(
        ForeignKey("round.id", ondelete="CASCADE"), index=True
    )
    parameters: Mapped[dict[str, Any]]  # e.g. {"CC1": 5.2, "CC2": 4.8, "CC3": 4.0}
    material_id: Mapped[int | None] = mapped_column(ForeignKey("material.id"), index=True)
    acquisition_value: Mapped[float | None] = mapped_column(Float)
    predicted_mean: Mapped[float | None] = mapped_column(Float)
    predicted_std: Mapped[float | None] = mapped_column(Float)
    status: Mapped[CandidateStatus] = mapped_column(
        str_enum(CandidateStatus, "candidate_status"), default=CandidateStatus.PROPOSED
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Instrument(Base):
    __tablename__ = "instrument"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[InstrumentKind] = mapped_column(str_enum(InstrumentKind, "instrument_kind"))
    url: Mapped[str] = mapped_column(String(512), unique=True)  # pyserial URL
    identity: Mapped[str | None] = mapped_column(String(256))  # reply to *IDN? / `t`
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    channels: Mapped[list[Channel]] = relationship(
        back_populates="instrument", order_by="Channel.channel_index"
    )


class Channel(Base):
    __tablename__ = "channel"
    __table_args__ = (UniqueConstraint("instrument_id", "channel_index"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instrument.id", ondelete="CASCADE"))
    channel_index: Mapped[int] = mapped_column(Integer)
    state: Mapped[ChannelState] = mapped_column(
        str_enum(ChannelState, "channel_state"), default=ChannelState.UNKNOWN
    )
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    instrument: Mapped[Instrument] = relationship(back_populates="channels")


class Experiment(Base):
    __tablename__ = "experiment"
    __table_args__ = (Index(None, "campaign_id", "status"),)

    #: UUID in canonical string form; also the id the cycler runs the cell under.
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_experiment_id)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    candidate_id: Mapped[int | None] = mapped_column(
        ForeignKey("candidate.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channel.id"), index=True)
    cell_id: Mapped[str | None] = mapped_column(String(128))
    protocol: Mapped[dict[str, Any] | None]  # aurora_unicycler CyclingProtocol JSON
    status: Mapped[ExperimentStatus] = mapped_column(
        str_enum(ExperimentStatus, "experiment_status"), default=ExperimentStatus.PROPOSED
    )
    end_reason: Mapped[str | None] = mapped_column(Text)
    #: cycler records ingested so far: the next fetch asks for records from this index
    records_ingested: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[dt.datetime | None]
    started_at: Mapped[dt.datetime | None]
    ended_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __init__(self, **kwargs: Any) -> None:
        # the UUID exists from construction on, before any flush (dispatch uses it)
        kwargs.setdefault("id", new_experiment_id())
        super().__init__(**kwargs)


class Lease(Base):
    """Exclusive, expiring ownership of a resource key (db/leases.py)."""

    __tablename__ = "lease"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    #: e.g. "channel:3" or "campaign:fastcharge-1"
    resource_key: Mapped[str] = mapped_column(String(256), unique=True)
    holder: Mapped[str] = mapped_column(String(256))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channel.id", ondelete="CASCADE"))
    experiment_id: Mapped[str | None] = mapped_column(
        ForeignKey("experiment.id", ondelete="SET NULL")
    )
    acquired_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


class Cycle(Base):
    """One cycle of one experiment: its summary columns (raw series in ``cycle_series``)."""

    __tablename__ = "cycle"
    __table_args__ = (UniqueConstraint("experiment_id", "cycle_index"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"))
    cycle_index: Mapped[int] = mapped_column(Integer)
    charge_capacity_ah: Mapped[float] = mapped_column(Float)
    discharge_capacity_ah: Mapped[float] = mapped_column(Float)
    charge_energy_wh: Mapped[float] = mapped_column(Float)
    discharge_energy_wh: Mapped[float] = mapped_column(Float)
    coulombic_efficiency: Mapped[float | None] = mapped_column(Float)  # Q_dis / Q_ch
    temperature_max_c: Mapped[float | None] = mapped_column(Float)
    temperature_mean_c: Mapped[float | None] = mapped_column(Float)
    temperature_min_c: Mapped[float | None] = mapped_column(Float)
    internal_resistance_ohm: Mapped[float | None] = mapped_column(Float)
    charge_time_s: Mapped[float | None] = mapped_column(Float)
    cv_time_s: Mapped[float | None] = mapped_column(Float)
    t_start_s: Mapped[float] = mapped_column(Float)  # test time at the cycle's first sample
    t_end_s: Mapped[float] = mapped_column(Float)
    sample_count: Mapped[int] = mapped_column(Integer)


class CycleSeries(Base):
    """The raw sample series of one cycle, as one voltloop array blob (db/blobs.py).

    Kept 1:1 beside ``cycle`` rather than in it so that summary rows stay small
    and reading 10,000 cycles' summaries touches a few hundred pages, not the
    blobs (docs/decisions/0011-array-blob-format.md).
    """

    __tablename__ = "cycle_series"

    cycle_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("cycle.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[bytes] = mapped_column(LargeBinary)


class EisSpectrum(Base):
    __tablename__ = "eis_spectrum"
    __table_args__ = (UniqueConstraint("experiment_id", "cycle_index"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"))
    cycle_index: Mapped[int] = mapped_column(Integer)
    n_points: Mapped[int] = mapped_column(Integer)
    #: Lin-KK residual (max of |real| and |imag| relative residuals), None if not run
    linkk_residual: Mapped[float | None] = mapped_column(Float)
    circuit: Mapped[str | None] = mapped_column(String(256))  # e.g. "R0-p(R1,CPE1)-W1"
    circuit_parameters: Mapped[dict[str, Any] | None]
    measured_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: frequency_Hz, z_real_ohm, z_imag_ohm as a voltloop array blob
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ModelVersion(Base):
    __tablename__ = "model_version"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(64))  # lifetime, protocol_gp, materials_gnn, ...
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    training_set_hash: Mapped[str] = mapped_column(String(128))
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    #: how ``artifact`` is encoded: "safetensors", "skops", "json" (never pickle)
    artifact_format: Mapped[str | None] = mapped_column(String(32))
    artifact: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    __tablename__ = "prediction"
    __table_args__ = (UniqueConstraint("experiment_id", "model_version_id", "cycles_seen"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment_id: Mapped[str] = mapped_column(
        ForeignKey("experiment.id", ondelete="CASCADE"), index=True
    )
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_version.id", ondelete="CASCADE"), index=True
    )
    cycles_seen: Mapped[int] = mapped_column(Integer)
    predicted_life_cycles: Mapped[float] = mapped_column(Float)
    predicted_life_std: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Event(Base):
    """The audit trail: what happened, when, to which campaign/experiment."""

    __tablename__ = "event"
    __table_args__ = (Index(None, "campaign_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    experiment_id: Mapped[str | None] = mapped_column(
        ForeignKey("experiment.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[EventLevel] = mapped_column(str_enum(EventLevel, "event_level"))
    kind: Mapped[str] = mapped_column(String(64))  # dispatch, ingest, safety_stop, retrain...
    message: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None]


#: Table names in dependency order (parents first).
TABLE_NAMES = tuple(table.name for table in Base.metadata.sorted_tables)
