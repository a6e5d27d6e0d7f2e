"""Validation gates: the pipeline's expectations on a DataFrame or a dataset URI."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ArtifactNotFoundError, DataError
from airflow_mlops.refs import GateResult

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.config import ValidationConfig
    from airflow_mlops.storage import ArtifactStore


def _sample(values: list[Any], limit: int = 3) -> str:
    return ", ".join(repr(v) for v in values[:limit])


def describe(result: Any, columns: dict[str, str] | None = None) -> str:
    """One sentence per failed expectation: which check, what was observed, what was allowed."""
    config = result.expectation_config
    kwargs = config.kwargs
    label = (config.meta or {}).get("label") or config.type
    info = result.result or {}
    column = kwargs.get("column")
    if column is not None and columns is not None and column not in columns and config.type != "expect_column_to_exist":
        return f"{label}: column {column!r} is missing from the data"
    if result.exception_info and result.exception_info.get("raised_exception"):
        column = kwargs.get("column")
        message = str(result.exception_info.get("exception_message", ""))
        if column is not None and ("not found" in message.lower() or "column" in message.lower()):
            return f"{label}: column {column!r} is missing from the data"
        return f"{label}: could not be evaluated: {message.splitlines()[0] if message else 'unknown error'}"
    unexpected = info.get("unexpected_count")
    total = info.get("element_count")
    percent = info.get("unexpected_percent")
    mostly = kwargs.get("mostly")
    allowed = f"allowed {100 * (1 - mostly):.1f}%" if mostly is not None else "allowed 0%"
    examples = info.get("partial_unexpected_list") or []
    kind = config.type
    if kind == "expect_column_to_exist":
        return f"columns_present: missing column {kwargs['column']!r}"
    if kind == "expect_table_row_count_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        bound = f"at least {low}" if high is None else f"at most {high}" if low is None else f"between {low} and {high}"
        return f"{label}: {info.get('observed_value')} rows, expected {bound}"
    if kind == "expect_column_values_to_be_of_type":
        found = info.get("observed_value") or (columns or {}).get(kwargs["column"], "other types")
        return f"{label}: expected {kwargs['type_']}, found {found}"
    if kind == "expect_column_values_to_not_be_null" and total:
        return f"{label}: {unexpected} of {total} rows are null ({percent:.1f}%), {allowed}"
    if kind == "expect_column_values_to_be_between" and total:
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        return (f"{label}: {unexpected} of {total} values outside [{low}, {high}] ({percent:.1f}%), {allowed}; "
                f"e.g. {_sample(examples)}")
    if kind == "expect_column_values_to_be_in_set":
        unknown = sorted({repr(v) for v in examples})
        return f"{label}: unexpected values {', '.join(unknown)} ({unexpected} rows, {percent:.1f}%), {allowed}"
    if kind == "expect_column_values_to_be_unique":
        return f"{label}: {unexpected} rows hold duplicated values ({percent:.1f}%), e.g. {_sample(examples)}"
    if kind == "expect_column_values_to_match_regex":
        return (f"{label}: {unexpected} of {total} values do not match {kwargs['regex']!r} ({percent:.1f}%), "
                f"{allowed}; e.g. {_sample(examples)}")
    observed = info.get("observed_value")
    detail = f"observed {observed!r}" if observed is not None else (
        f"{unexpected} of {total} values failed, e.g. {_sample(examples)}" if unexpected is not None else "failed"
    )
    return f"{label}: {detail}"


def render_report(title: str, rows: list[tuple[str, bool, str]], summary: str) -> str:
    """A self-contained HTML report (every value escaped)."""
    body = "".join(
        f"<tr class={'pass' if ok else 'fail'}><td>{html.escape(name)}</td><td>{'pass' if ok else 'FAIL'}</td>"
        f"<td>{html.escape(detail)}</td></tr>"
        for name, ok, detail in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}.fail{background:#fde2e2}"
        ".pass{background:#e6f6e6}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"
        f"<table><tr><th>check</th><th>result</th><th>observed</th></tr>{body}</table></body></html>"
    )


def _observed(result: Any) -> str:
    info = result.result or {}
    if "observed_value" in info:
        return f"observed {info['observed_value']!r}"
    if "unexpected_count" in info:
        return f"{info['unexpected_count']} unexpected of {info.get('element_count')}"
    return ""


def scoring_checks(config: ValidationConfig, target: str) -> ValidationConfig:
    """The expectations that apply to data to score: none on the target (it is absent)
    and no row counts (a batch or a chunk has any size)."""
    kept = []
    for expectation in config.expectations:
        if expectation.expect == "row_count_between":
            continue
        if expectation.expect == "columns_present":
            columns = [c for c in expectation.columns if c != target]
            if columns:
                kept.append(expectation.model_copy(update={"columns": columns}))
            continue
        column = getattr(expectation, "column", None) or getattr(expectation, "kwargs", {}).get("column")
        if column != target:
            kept.append(expectation)
    return config.model_copy(update={"expectations": kept})


def validate_dataframe(
    df: pd.DataFrame,
    config: ValidationConfig,
    store: ArtifactStore,
    *,
    report_path: str,
    dataset_name: str = "data",
    suite_json: dict[str, Any] | None = None,
) -> GateResult:
    """Run the configured expectations (and an optional GX suite) on `df`."""
    from airflow_mlops.validation.gx import build_expectations, run_expectations, suite_expectations

    expectations = build_expectations(config.expectations)
    if suite_json is None and config.suite:
        suite_json = store.read_json(config.suite)
    if suite_json:
        expectations += suite_expectations(suite_json)
    if not expectations:
        summary = f"{dataset_name}: no expectations configured; {len(df)} rows accepted as they are"
        report = store.write_bytes(report_path, render_report(f"Validation of {dataset_name}", [], summary).encode())
        return GateResult(gate="validation", passed=True, policy=config.on_failure, summary=summary,
                          metrics={"rows": len(df), "evaluated": 0, "failed": 0}, report=report)
    results = run_expectations(df, expectations)
    columns = {str(c): str(t) for c, t in df.dtypes.items()}
    failures = [describe(r, columns) for r in results if not r.success]
    passed = not failures
    summary = (
        f"{dataset_name}: {len(results) - len(failures)} of {len(results)} expectations passed on {len(df)} rows"
    )
    rows = [((r.expectation_config.meta or {}).get("label", r.expectation_config.type), bool(r.success),
             describe(r, columns) if not r.success else _observed(r)) for r in results]
    report = store.write_bytes(report_path, render_report(f"Validation of {dataset_name}", rows, summary).encode())
    return GateResult(
        gate="validation",
        passed=passed,
        policy=config.on_failure,
        summary=summary,
        metrics={"rows": len(df), "evaluated": len(results), "failed": len(failures)},
        failures=failures,
        report=report,
    )


def validate_dataset(
    uri: str,
    config: ValidationConfig,
    store: ArtifactStore,
    *,
    report_path: str,
    max_rows: int | None = None,
) -> GateResult:
    """Validate a dataset by URI. Data that cannot be read (missing, empty, not parquet,
    malformed csv) is a failed gate naming the problem, so the configured policy applies."""
    from airflow_mlops.data import iter_batches, read_table

    try:
        if max_rows is None:
            frame = read_table(uri, store)
        else:
            import pyarrow as pa

            batches, rows = [], 0
            for batch in iter_batches(uri, store):
                batches.append(batch)
                rows += batch.num_rows
                if rows >= max_rows:
                    break
            if not batches:
                raise DataError(f"{store.uri(uri)}: the dataset is empty (0 rows)")
            frame = pa.Table.from_batches(batches).slice(0, max_rows).to_pandas()
    except (DataError, ArtifactNotFoundError) as exc:
        summary = f"{uri}: the data cannot be validated: {exc}"
        report = store.write_bytes(report_path, render_report(f"Validation of {uri}", [], summary).encode())
        return GateResult(gate="validation", passed=False, policy=config.on_failure, summary=summary,
                          failures=[str(exc)], metrics={"rows": 0}, report=report)
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return validate_dataframe(frame, config, store, report_path=report_path, dataset_name=name)
