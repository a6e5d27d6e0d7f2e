"""Evaluation details: fairness, diagnostics and explanations beside each evaluation record.

- `mlops_evaluations.fairness`: per sensitive column, each group's rows and rates and each fairness metric
  with the groups behind it.
- `mlops_evaluations.diagnostics`: per-class results, confusion matrix and calibration (classifiers), or
  the residual summary (regression).
- `mlops_evaluations.explanations`: permutation importance and, for xgboost, mean absolute contributions.

Three JSON columns rather than keys inside `metrics` or `slice_metrics`: those hold numbers that the pages,
the monitoring baseline and the lineage facets read as metric values. Existing rows keep NULL, which the
records read as empty.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("fairness", "diagnostics", "explanations")


def upgrade() -> None:
    with op.batch_alter_table("mlops_evaluations") as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("mlops_evaluations") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
