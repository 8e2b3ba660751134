"""Initial schema: the whole domain model of design.md.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22 04:47:21.435190
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Types frozen here (not imported from voltloop.db) so this revision never changes
# when the models do: status values are VARCHAR(32) + CHECK on both engines.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def status_enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", status_enum("campaign_kind", "protocol", "materials"), nullable=False),
        sa.Column("spec", JSON, nullable=False),
        sa.Column(
            "status",
            status_enum(
                "campaign_status", "created", "running", "paused", "completed", "failed", "aborted"
            ),
            nullable=False,
        ),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign")),
        sa.UniqueConstraint("name", name=op.f("uq_campaign_name")),
    )
    op.create_table(
        "instrument",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("kind", status_enum("instrument_kind", "cycler", "potentiostat"), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("identity", sa.String(length=256), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instrument")),
        sa.UniqueConstraint("url", name=op.f("uq_instrument_url")),
    )
    op.create_table(
        "material",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("formula", sa.String(length=128), nullable=False),
        sa.Column("structure", JSON, nullable=False),
        sa.Column("structure_hash", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_material")),
        sa.UniqueConstraint("structure_hash", name=op.f("uq_material_structure_hash")),
    )
    op.create_index(op.f("ix_material_formula"), "material", ["formula"])

    op.create_table(
        "channel",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("instrument_id", BIG_ID, nullable=False),
        sa.Column("channel_index", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            status_enum(
                "channel_state",
                "unknown",
                "offline",
                "empty",
                "idle",
                "running",
                "waiting_eis",
                "completed",
                "stopped",
                "safety_stopped",
                "fault",
            ),
            nullable=False,
        ),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["instrument_id"],
            ["instrument.id"],
            name=op.f("fk_channel_instrument_id_instrument"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel")),
        sa.UniqueConstraint(
            "instrument_id", "channel_index", name=op.f("uq_channel_instrument_id_channel_index")
        ),
    )
    op.create_table(
        "model_version",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("campaign_id", BIG_ID, nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("training_set_hash", sa.String(length=128), nullable=False),
        sa.Column("hyperparameters", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=False),
        sa.Column("artifact_format", sa.String(length=32), nullable=True),
        sa.Column("artifact", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_model_version_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_version")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_model_version_name_version")),
    )
    op.create_index(op.f("ix_model_version_campaign_id"), "model_version", ["campaign_id"])

    op.create_table(
        "round",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("campaign_id", BIG_ID, nullable=False),
        sa.Column("round_index", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            status_enum(
                "round_status",
                "planned",
                "training",
                "proposing",
                "dispatching",
                "running",
                "completed",
                "failed",
                "aborted",
            ),
            nullable=False,
        ),
        sa.Column("model_version_ids", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_round_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round")),
        sa.UniqueConstraint(
            "campaign_id", "round_index", name=op.f("uq_round_campaign_id_round_index")
        ),
    )
    op.create_table(
        "candidate",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("campaign_id", BIG_ID, nullable=False),
        sa.Column("round_id", BIG_ID, nullable=True),
        sa.Column("parameters", JSON, nullable=False),
        sa.Column("material_id", BIG_ID, nullable=True),
        sa.Column("acquisition_value", sa.Float(), nullable=True),
        sa.Column("predicted_mean", sa.Float(), nullable=True),
        sa.Column("predicted_std", sa.Float(), nullable=True),
        sa.Column(
            "status",
            status_enum(
                "candidate_status",
                "proposed",
                "rejected",
                "scheduled",
                "running",
                "observed",
                "failed",
            ),
            nullable=False,
        ),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_candidate_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["material_id"], ["material.id"], name=op.f("fk_candidate_material_id_material")
        ),
        sa.ForeignKeyConstraint(
            ["round_id"], ["round.id"], name=op.f("fk_candidate_round_id_round"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candidate")),
    )
    op.create_index(op.f("ix_candidate_campaign_id_status"), "candidate", ["campaign_id", "status"])
    op.create_index(op.f("ix_candidate_material_id"), "candidate", ["material_id"])
    op.create_index(op.f("ix_candidate_round_id"), "candidate", ["round_id"])

    op.create_table(
        "experiment",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("campaign_id", BIG_ID, nullable=False),
        sa.Column("candidate_id", BIG_ID, nullable=True),
        sa.Column("channel_id", BIG_ID, nullable=True),
        sa.Column("cell_id", sa.String(length=128), nullable=True),
        sa.Column("protocol", JSON, nullable=True),
        sa.Column(
            "status",
            status_enum(
                "experiment_status",
                "proposed",
                "queued",
                "running",
                "early_predicted",
                "completed",
                "failed",
                "safety_stopped",
                "aborted",
            ),
            nullable=False,
        ),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("records_ingested", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("queued_at", TIMESTAMP, nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_experiment_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["candidate_id"],
            ["candidate.id"],
            name=op.f("fk_experiment_candidate_id_candidate"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channel.id"], name=op.f("fk_experiment_channel_id_channel")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment")),
    )
    op.create_index(
        op.f("ix_experiment_campaign_id_status"), "experiment", ["campaign_id", "status"]
    )
    op.create_index(op.f("ix_experiment_candidate_id"), "experiment", ["candidate_id"])
    op.create_index(op.f("ix_experiment_channel_id"), "experiment", ["channel_id"])

    op.create_table(
        "cycle",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("experiment_id", sa.String(length=36), nullable=False),
        sa.Column("cycle_index", sa.Integer(), nullable=False),
        sa.Column("charge_capacity_ah", sa.Float(), nullable=False),
        sa.Column("discharge_capacity_ah", sa.Float(), nullable=False),
        sa.Column("charge_energy_wh", sa.Float(), nullable=False),
        sa.Column("discharge_energy_wh", sa.Float(), nullable=False),
        sa.Column("coulombic_efficiency", sa.Float(), nullable=True),
        sa.Column("temperature_max_c", sa.Float(), nullable=True),
        sa.Column("temperature_mean_c", sa.Float(), nullable=True),
        sa.Column("temperature_min_c", sa.Float(), nullable=True),
        sa.Column("internal_resistance_ohm", sa.Float(), nullable=True),
        sa.Column("charge_time_s", sa.Float(), nullable=True),
        sa.Column("cv_time_s", sa.Float(), nullable=True),
        sa.Column("t_start_s", sa.Float(), nullable=False),
        sa.Column("t_end_s", sa.Float(), nullable=False),
        sa.Column("sample_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_cycle_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycle")),
        sa.UniqueConstraint(
            "experiment_id", "cycle_index", name=op.f("uq_cycle_experiment_id_cycle_index")
        ),
    )
    op.create_table(
        "cycle_series",
        sa.Column("cycle_id", BIG_ID, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"],
            ["cycle.id"],
            name=op.f("fk_cycle_series_cycle_id_cycle"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("cycle_id", name=op.f("pk_cycle_series")),
    )
    op.create_table(
        "eis_spectrum",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("experiment_id", sa.String(length=36), nullable=False),
        sa.Column("cycle_index", sa.Integer(), nullable=False),
        sa.Column("n_points", sa.Integer(), nullable=False),
        sa.Column("linkk_residual", sa.Float(), nullable=True),
        sa.Column("circuit", sa.String(length=256), nullable=True),
        sa.Column("circuit_parameters", JSON, nullable=True),
        sa.Column("measured_at", TIMESTAMP, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_eis_spectrum_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eis_spectrum")),
        sa.UniqueConstraint(
            "experiment_id", "cycle_index", name=op.f("uq_eis_spectrum_experiment_id_cycle_index")
        ),
    )
    op.create_table(
        "event",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("campaign_id", BIG_ID, nullable=True),
        sa.Column("experiment_id", sa.String(length=36), nullable=True),
        sa.Column(
            "level",
            status_enum("event_level", "debug", "info", "warning", "error", "critical"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_event_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_event_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event")),
    )
    op.create_index(op.f("ix_event_campaign_id_created_at"), "event", ["campaign_id", "created_at"])
    op.create_index(op.f("ix_event_created_at"), "event", ["created_at"])
    op.create_index(op.f("ix_event_experiment_id"), "event", ["experiment_id"])

    op.create_table(
        "lease",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("resource_key", sa.String(length=256), nullable=False),
        sa.Column("holder", sa.String(length=256), nullable=False),
        sa.Column("channel_id", BIG_ID, nullable=True),
        sa.Column("experiment_id", sa.String(length=36), nullable=True),
        sa.Column("acquired_at", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channel.id"],
            name=op.f("fk_lease_channel_id_channel"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_lease_experiment_id_experiment"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lease")),
        sa.UniqueConstraint("resource_key", name=op.f("uq_lease_resource_key")),
    )
    op.create_index(op.f("ix_lease_expires_at"), "lease", ["expires_at"])

    op.create_table(
        "prediction",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("experiment_id", sa.String(length=36), nullable=False),
        sa.Column("model_version_id", BIG_ID, nullable=False),
        sa.Column("cycles_seen", sa.Integer(), nullable=False),
        sa.Column("predicted_life_cycles", sa.Float(), nullable=False),
        sa.Column("predicted_life_std", sa.Float(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_prediction_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_prediction_model_version_id_model_version"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction")),
        sa.UniqueConstraint(
            "experiment_id",
            "model_version_id",
            "cycles_seen",
            name=op.f("uq_prediction_experiment_id_model_version_id_cycles_seen"),
        ),
    )
    op.create_index(op.f("ix_prediction_experiment_id"), "prediction", ["experiment_id"])
    op.create_index(op.f("ix_prediction_model_version_id"), "prediction", ["model_version_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_prediction_model_version_id"), table_name="prediction")
    op.drop_index(op.f("ix_prediction_experiment_id"), table_name="prediction")

    op.drop_table("prediction")
    op.drop_index(op.f("ix_lease_expires_at"), table_name="lease")

    op.drop_table("lease")
    op.drop_index(op.f("ix_event_experiment_id"), table_name="event")
    op.drop_index(op.f("ix_event_created_at"), table_name="event")
    op.drop_index(op.f("ix_event_campaign_id_created_at"), table_name="event")

    op.drop_table("event")
    op.drop_table("eis_spectrum")
    op.drop_table("cycle_series")
    op.drop_table("cycle")
    op.drop_index(op.f("ix_experiment_channel_id"), table_name="experiment")
    op.drop_index(op.f("ix_experiment_candidate_id"), table_name="experiment")
    op.drop_index(op.f("ix_experiment_campaign_id_status"), table_name="experiment")

    op.drop_table("experiment")
    op.drop_index(op.f("ix_candidate_round_id"), table_name="candidate")
    op.drop_index(op.f("ix_candidate_material_id"), table_name="candidate")
    op.drop_index(op.f("ix_candidate_campaign_id_status"), table_name="candidate")

    op.drop_table("candidate")
    op.drop_table("round")
    op.drop_index(op.f("ix_model_version_campaign_id"), table_name="model_version")

    op.drop_table("model_version")
    op.drop_table("channel")
    op.drop_index(op.f("ix_material_formula"), table_name="material")

    op.drop_table("material")
    op.drop_table("instrument")
    op.drop_table("campaign")
