"""Profile a dataset and suggest a starter `expectations:` block for the pipeline file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

MAX_SET = 20


def _round_out(value: float, down: bool) -> float:
    import math

    if value == 0:
        return 0.0
    magnitude = 10 ** math.floor(math.log10(abs(value)))
    return float((math.floor if down else math.ceil)(value / magnitude) * magnitude)


def suggest_expectations(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Expectations the data meets today, with margins: a starting point for a person to edit."""
    suggestions: list[dict[str, Any]] = [
        {"expect": "row_count_between", "min": max(1, len(df) // 2)},
        {"expect": "columns_present", "columns": [str(c) for c in df.columns]},
    ]
    for column in df.columns:
        series = df[column]
        name = str(column)
        if series.notna().all():
            suggestions.append({"expect": "not_null", "column": name})
        values = series.dropna()
        if values.empty:
            continue
        if series.dtype.kind in "iuf":
            low, high = float(values.min()), float(values.max())
            span = (high - low) or abs(high) or 1.0
            floor = _round_out(low - 0.1 * span, down=True)
            # Non-negative data (counts, sizes) keeps a floor of 0 rather than a negative margin.
            suggestions.append({
                "expect": "between", "column": name,
                "min": max(floor, 0.0) if low >= 0 else floor,
                "max": _round_out(high + 0.1 * span, down=False),
            })
        if values.nunique() <= MAX_SET and series.dtype.kind not in "f":
            distinct = sorted(v.item() if hasattr(v, "item") else v for v in values.unique())
            suggestions.append({"expect": "in_set", "column": name, "values": distinct})
        id_like = series.dtype.kind in "iuO" or "id" in name.lower()
        if values.is_unique and len(values) == len(series) > MAX_SET and id_like:
            suggestions.append({"expect": "unique", "column": name})
    return suggestions


def expectations_yaml(suggestions: list[dict[str, Any]]) -> str:
    """The block to paste under `validation:` in a pipeline file."""
    import yaml

    lines = ["expectations:"]
    for item in suggestions:
        lines.append("  - " + yaml.safe_dump(item, default_flow_style=True, sort_keys=False, width=1000).strip())
    return "\n".join(lines) + "\n"
