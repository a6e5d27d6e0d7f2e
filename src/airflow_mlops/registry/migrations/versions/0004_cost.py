"""Cost: what training a version and scoring a batch cost.

- `mlops_model_versions.cost`: the training task's wall time, CPU-seconds and peak memory
  (JSON; null for versions registered before 0004).
- `mlops_scoring_runs.cpu_seconds/peak_memory_bytes`: a committed batch's summed CPU-seconds over
  its chunks and the largest peak memory of any chunk (null for runs committed before 0004).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-15
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mlops_model_versions") as batch:
        batch.add_column(sa.Column("cost", sa.JSON))
    with op.batch_alter_table("mlops_scoring_runs") as batch:
        batch.add_column(sa.Column("cpu_seconds", sa.Float))
        batch.add_column(sa.Column("peak_memory_bytes", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("mlops_scoring_runs") as batch:
        batch.drop_column("peak_memory_bytes")
        batch.drop_column("cpu_seconds")
    with op.batch_alter_table("mlops_model_versions") as batch:
        batch.drop_column("cost")
