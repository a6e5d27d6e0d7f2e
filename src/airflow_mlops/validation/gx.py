"""Great Expectations 1.x behind our gate contract: an ephemeral context, no project folder."""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from airflow_mlops.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

_CONTEXT: Any = None
_LOCK = threading.Lock()
GX_LOGGERS = ("great_expectations", "great_expectations.core", "great_expectations.data_context", "great_expectations.expectations")


def quiet_great_expectations() -> None:
    """Keep task logs readable: no analytics, no progress bars, GX's loggers at WARNING."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in GX_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _context() -> Any:
    global _CONTEXT
    with _LOCK:
        if _CONTEXT is None:
            quiet_great_expectations()
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            quiet_great_expectations()  # GX sets its own levels on import
            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
            _CONTEXT = context
        return _CONTEXT


def _expectation(name: str, kwargs: dict[str, Any], label: str) -> Any:
    import great_expectations.expectations as gxe

    cls = getattr(gxe, name, None)
    if cls is None:
        raise ConfigError(f"validation: {label}: Great Expectations has no expectation named {name}")
    try:
        return cls(**kwargs, meta={"label": label})
    except Exception as exc:  # pydantic errors of GX's own models
        raise ConfigError(f"validation: {label}: invalid arguments for {name}: {exc}") from None


def build_expectations(expectations: list[Any]) -> list[Any]:
    """GX expectation objects for the pipeline file's `validation.expectations`."""
    built = []
    for item in expectations:
        kind = item.expect
        mostly = {"mostly": item.mostly} if getattr(item, "mostly", None) is not None else {}
        if kind == "row_count_between":
            built.append(_expectation("ExpectTableRowCountToBeBetween", {"min_value": item.min, "max_value": item.max}, "row_count_between"))
        elif kind == "columns_present":
            built += [_expectation("ExpectColumnToExist", {"column": c}, "columns_present") for c in item.columns]
        elif kind == "not_null":
            built.append(_expectation("ExpectColumnValuesToNotBeNull", {"column": item.column, **mostly}, f"not_null({item.column})"))
        elif kind == "between":
            built.append(_expectation(
                "ExpectColumnValuesToBeBetween",
                {"column": item.column, "min_value": item.min, "max_value": item.max, **mostly},
                f"between({item.column})",
            ))
        elif kind == "in_set":
            built.append(_expectation(
                "ExpectColumnValuesToBeInSet", {"column": item.column, "value_set": list(item.values), **mostly}, f"in_set({item.column})"
            ))
        elif kind == "unique":
            built.append(_expectation("ExpectColumnValuesToBeUnique", {"column": item.column, **mostly}, f"unique({item.column})"))
        elif kind == "matches_regex":
            built.append(_expectation(
                "ExpectColumnValuesToMatchRegex", {"column": item.column, "regex": item.regex, **mostly}, f"matches_regex({item.column})"
            ))
        elif kind == "dtype":
            built.append(_expectation("ExpectColumnValuesToBeOfType", {"column": item.column, "type_": item.dtype}, f"dtype({item.column})"))
        else:
            label = f"{kind}({', '.join(f'{k}={v!r}' for k, v in item.kwargs.items())})"
            built.append(_expectation(kind, dict(item.kwargs), label))
    return built


def suite_expectations(suite: dict[str, Any]) -> list[Any]:
    """Expectations of a GX suite JSON file (`{"expectations": [{"type": ..., "kwargs": ...}]}`)."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    built = []
    for index, item in enumerate(suite.get("expectations", [])):
        try:
            config = ExpectationConfiguration(type=item["type"], kwargs=item.get("kwargs", {}), meta=item.get("meta") or {})
            expectation = config.to_domain_obj()
        except Exception as exc:
            raise ConfigError(f"validation.suite: expectation {index} ({item.get('type')!r}) is invalid: {exc}") from None
        expectation.meta = {**(expectation.meta or {}), "label": item["type"]}
        built.append(expectation)
    return built


def run_expectations(df: pd.DataFrame, expectations: list[Any]) -> list[Any]:
    """Validate `df`; returns GX's per-expectation results."""
    import great_expectations as gx

    context = _context()
    with _LOCK:
        source = context.data_sources.add_or_update_pandas("airflow_mlops")
        asset_name = f"frame_{threading.get_ident()}"
        try:
            asset = source.get_asset(asset_name)
        except LookupError:
            asset = source.add_dataframe_asset(name=asset_name)
        try:
            definition = asset.get_batch_definition("whole")
        except (KeyError, LookupError, ValueError):
            definition = asset.add_batch_definition_whole_dataframe("whole")
    batch = definition.get_batch(batch_parameters={"dataframe": df})
    suite = gx.ExpectationSuite(name="airflow_mlops", expectations=expectations)
    return list(batch.validate(suite, result_format="SUMMARY").results)
