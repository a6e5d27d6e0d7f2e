"""Alias governance: approvals on the alias history, decision rows, alias-watcher cursors.

- `mlops_alias_events.approver/approval_comment/approved_at`: who approved the promotion a move
  carried out, with their comment; decision rows (kinds 'rejected', 'approval_refused',
  'approval_timeout') use the same columns and move nothing.
- `mlops_alias_cursors`: per alias watcher (an Airflow AssetWatcher following the history), the
  last event id it handed on, so a restarted triggerer neither loses nor repeats a move.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("mlops_alias_events") as batch:
        batch.add_column(sa.Column("approver", sa.String(250)))
        batch.add_column(sa.Column("approval_comment", sa.Text))
        batch.add_column(sa.Column("approved_at", TZ))
    op.create_table(
        "mlops_alias_cursors",
        sa.Column("stream", sa.String(250), primary_key=True),
        sa.Column("last_event_id", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mlops_alias_cursors")
    with op.batch_alter_table("mlops_alias_events") as batch:
        batch.drop_column("approved_at")
        batch.drop_column("approval_comment")
        batch.drop_column("approver")
