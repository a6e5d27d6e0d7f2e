"""Monitoring: scoring runs, performance records, drift kind, stored test predictions.

- `mlops_drift_records.kind`: 'data' (inputs) or 'prediction' (outputs); existing rows are 'data'.
- `mlops_evaluations.predictions_uri/_sha256`: the version's held-out test predictions.
- `mlops_scoring_runs`: one row per committed batch-inference run (idempotent per run).
- `mlops_performance_records`: realized and estimated performance per version.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _model_fk() -> sa.Column:
    return sa.Column("model_id", sa.Integer, sa.ForeignKey("mlops_models.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("mlops_drift_records") as batch:
        batch.add_column(sa.Column("kind", sa.String(20), nullable=False, server_default="data"))
    with op.batch_alter_table("mlops_evaluations") as batch:
        batch.add_column(sa.Column("predictions_uri", sa.Text))
        batch.add_column(sa.Column("predictions_sha256", sa.String(64)))
    op.create_table(
        "mlops_scoring_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_fk(),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("manifest_uri", sa.Text, nullable=False),
        sa.Column("output_prefix", sa.Text, nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("seconds", sa.Float),
        sa.Column("input_fingerprint", sa.String(64)),
        sa.Column("committed_at", TZ, nullable=False),
        sa.UniqueConstraint("model_id", "dag_id", "run_id", name="uq_scoring_run"),
    )
    op.create_index("ix_scoring_runs_model_committed", "mlops_scoring_runs", ["model_id", "committed_at"])
    op.create_table(
        "mlops_performance_records",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_fk(),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("dag_id", sa.String(250)),
        sa.Column("run_id", sa.String(250)),
        sa.Column("scoring_run_id", sa.String(250)),
        sa.Column("period_start", TZ),
        sa.Column("period_end", TZ),
        sa.Column("labels_fingerprint", sa.String(64)),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("labelled_rows", sa.BigInteger),
        sa.Column("coverage", sa.Float),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("slice_metrics", sa.JSON, nullable=False),
        sa.Column("bands", sa.JSON, nullable=False),
        sa.Column("notes", sa.JSON, nullable=False),
        sa.Column("passed", sa.Boolean),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("report_uri", sa.Text),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_performance_model_kind", "mlops_performance_records", ["model_id", "kind", "id"])


def downgrade() -> None:
    op.drop_index("ix_performance_model_kind", table_name="mlops_performance_records")
    op.drop_table("mlops_performance_records")
    op.drop_index("ix_scoring_runs_model_committed", table_name="mlops_scoring_runs")
    op.drop_table("mlops_scoring_runs")
    with op.batch_alter_table("mlops_evaluations") as batch:
        batch.drop_column("predictions_sha256")
        batch.drop_column("predictions_uri")
    with op.batch_alter_table("mlops_drift_records") as batch:
        batch.drop_column("kind")
