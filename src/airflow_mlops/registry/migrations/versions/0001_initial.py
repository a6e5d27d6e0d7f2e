"""The registry's tables: models, versions, aliases, alias history, evaluations, drift.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _model_fk() -> sa.Column:
    return sa.Column("model_id", sa.Integer, sa.ForeignKey("mlops_models.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "mlops_models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "mlops_model_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_fk(),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("artifact_uri", sa.Text, nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("flavor", sa.String(40), nullable=False),
        sa.Column("task", sa.String(60), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("datasets", sa.JSON, nullable=False),
        sa.Column("code_version", sa.String(100)),
        sa.Column("library_versions", sa.JSON, nullable=False),
        sa.Column("dag_id", sa.String(250)),
        sa.Column("run_id", sa.String(250)),
        sa.Column("task_id", sa.String(250)),
        sa.Column("created_by", sa.String(250)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_version_number"),
        sa.UniqueConstraint("model_id", "dag_id", "run_id", "task_id", name="uq_version_per_task_run"),
    )
    op.create_table(
        "mlops_aliases",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_fk(),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.UniqueConstraint("model_id", "alias", name="uq_alias"),
    )
    op.create_table(
        "mlops_alias_events",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_fk(),
        sa.Column("alias", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("from_version", sa.Integer),
        sa.Column("to_version", sa.Integer),
        sa.Column("actor", sa.String(250), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("dag_id", sa.String(250)),
        sa.Column("run_id", sa.String(250)),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_alias_events_model_alias", "mlops_alias_events", ["model_id", "alias", "id"])
    op.create_table(
        "mlops_evaluations",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_fk(),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("dataset_fingerprint", sa.String(64)),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("slice_metrics", sa.JSON, nullable=False),
        sa.Column("compared_to_version", sa.Integer),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("report_uri", sa.Text),
        sa.Column("run_id", sa.String(250)),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_evaluations_model_version", "mlops_evaluations", ["model_id", "version"])
    op.create_table(
        "mlops_drift_records",
        sa.Column("id", sa.Integer, primary_key=True),
        _model_fk(),
        sa.Column("version", sa.Integer),
        sa.Column("reference_fingerprint", sa.String(64)),
        sa.Column("current_fingerprint", sa.String(64)),
        sa.Column("drift_share", sa.Float, nullable=False),
        sa.Column("drifted_columns", sa.JSON, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("report_uri", sa.Text),
        sa.Column("run_id", sa.String(250)),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_drift_model", "mlops_drift_records", ["model_id", "id"])


def downgrade() -> None:
    for index, table in (
        ("ix_drift_model", "mlops_drift_records"),
        ("ix_evaluations_model_version", "mlops_evaluations"),
        ("ix_alias_events_model_alias", "mlops_alias_events"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "mlops_drift_records",
        "mlops_evaluations",
        "mlops_alias_events",
        "mlops_aliases",
        "mlops_model_versions",
        "mlops_models",
    ):
        op.drop_table(table)
