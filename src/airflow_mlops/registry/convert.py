"""Rows to records: each record field read from the row's column of the same name."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, TypeVar

from airflow_mlops.registry.records import Approval

RecordT = TypeVar("RecordT")

_EMPTY = {"dict": dict, "list": list, "str": str}


@functools.cache
def _plan(record_type: type) -> tuple[tuple[str, Any, Any], ...]:
    """(field, value for NULL, factory for NULL) per field: a field that cannot be None gets its default, else
    the empty value of its type (a JSON column written before it existed holds NULL, the record an empty dict)."""
    plan = []
    for spec in dataclasses.fields(record_type):
        nullable = "None" in str(spec.type)
        default = None if nullable or spec.default is dataclasses.MISSING else spec.default
        factory = None if nullable or default is not None else _EMPTY.get(str(spec.type).split("[")[0])
        plan.append((spec.name, default, factory))
    return tuple(plan)


def to_record(record_type: type[RecordT], row: Any, **given: Any) -> RecordT:
    """`record_type` from `row` (an ORM row, a result row or a namespace); `given` fields win over the row's.

    JSON values are copied, so a record never shares a dict with a session's row.
    """
    values = dict(given)
    for name, default, factory in _plan(record_type):
        if name in values or not hasattr(row, name):
            continue
        value = getattr(row, name)
        if value is None:
            value = factory() if factory is not None else default
        elif isinstance(value, dict | list):
            value = type(value)(value)
        values[name] = value
    return record_type(**values)


def approval_columns(approval: Approval | None) -> dict[str, Any]:
    """The history row's approval columns for `approval` (none when the move needed no approval)."""
    if approval is None:
        return {}
    return {"approver": approval.approver, "approval_comment": approval.comment, "approved_at": approval.at}
