"""Login attempts counted in the database, and a token version per user.

`login_attempts` keeps the login limit's counters (per username and address, and per
address) so that a restart or a second worker does not reset them; `users.token_version`
is carried by every token and page session and raised on logout, password change, role
change and deactivation, which ends every token and session issued before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_attempts")),
    )
    op.create_index(op.f("ix_login_attempts_window_start"), "login_attempts", ["window_start"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("token_version", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_version")
    op.drop_index(op.f("ix_login_attempts_window_start"), table_name="login_attempts")
    op.drop_table("login_attempts")
