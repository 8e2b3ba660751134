"""Round kind: a search round (the optimiser proposes) or a confirmation round (the
best tested protocols again, on fresh cells run to end of life; decision 0085).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 15:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen here, as in 0001: VARCHAR(32) + CHECK on both engines
ROUND_KIND = sa.Enum(
    "search", "confirmation", name="round_kind", native_enum=False, create_constraint=True,
    length=32,
)  # fmt: skip


def upgrade() -> None:
    # batch mode: SQLite adds a column with a CHECK constraint by copying the table
    with op.batch_alter_table("round") as batch:
        batch.add_column(
            sa.Column("kind", ROUND_KIND, nullable=False, server_default="search")
        )


def downgrade() -> None:
    with op.batch_alter_table("round") as batch:
        batch.drop_constraint(op.f("ck_round_round_kind"), type_="check")
        batch.drop_column("kind")
