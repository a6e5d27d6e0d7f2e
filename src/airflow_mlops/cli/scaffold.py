"""`airflow-mlops init`: a first pipeline file for a dataset, inferred from the data.

`plan_pipeline` reads the data (a seeded random sample of big data), infers the
task from the target, the kind of every column, suggests expectations, picks a
model, metrics and gates; `render_pipeline_file` writes it as commented YAML a
person can read and edit; `write_pipeline_file` refuses to overwrite. The file
it writes loads with `load_pipeline_config` unchanged.

No Airflow import here; pandas, pyarrow and numpy are imported inside functions.
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from airflow_mlops.config.schema import NAME_PATTERN, Flavor, Task
from airflow_mlops.errors import ArtifactNotFoundError, ConfigError, DataError
from airflow_mlops.settings import configs_folder, dag_id

if TYPE_CHECKING:
    import pandas as pd

    from airflow_mlops.storage import ArtifactStore

TASKS = get_args(Task)
TASK_ALIASES = {"binary": "binary_classification", "multiclass": "multiclass_classification"}
FLAVORS = get_args(Flavor)
#: Above this many rows, the profile is a seeded random sample of about this many rows.
SAMPLE_ROWS = 100_000
#: Below this many rows the model gets smaller trees and a higher learning rate.
SMALL_DATA_ROWS = 1_000
#: An integer target with at most this many distinct values is read as classes.
MAX_INTEGER_CLASSES = 20
#: A text target with more distinct values than this is refused unless --task says so.
MAX_TEXT_CLASSES = 100
#: A text column with more distinct values than this (and mostly distinct) is text-like, not a category.
MAX_CATEGORIES = 100

_ID_WORDS = {"id", "uuid", "guid", "key", "index", "rowid", "row_id", "row_number", "record_id"}
_ID_NAME = re.compile(r"(^|[_\-\s.])(id|uuid|guid|key)$|^(id|uuid|guid)[_\-\s.]|[a-z](Id|ID|Key)$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


@dataclass
class Column:
    """One column of the data and what the pipeline file does with it."""

    name: str
    role: str  # target | numeric | categorical | id | excluded
    dtype: str
    note: str = ""


@dataclass
class PipelinePlan:
    """Everything `init` inferred; `render_pipeline_file` turns it into the YAML file."""

    name: str
    data: str
    target: str
    task: str
    task_reason: str
    rows: int
    sampled: bool
    columns: list[Column]
    expectations: list[dict[str, Any]]
    flavor: str
    estimator: str | None
    params: dict[str, Any]
    model_reason: str
    primary_metric: str
    metrics: list[str]
    thresholds: dict[str, dict[str, float]]
    stratify: bool
    slices: list[str] = field(default_factory=list)
    id_candidates: list[str] = field(default_factory=list)
    owner: str = "airflow"
    description: str = ""
    warnings: list[str] = field(default_factory=list)
    command: str = ""
    unlabelled: int = 0  # rows without a target in what init read

    @property
    def features(self) -> list[Column]:
        return [c for c in self.columns if c.role in ("numeric", "categorical")]

    @property
    def ids(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "id"]

    @property
    def excluded(self) -> list[Column]:
        return [c for c in self.columns if c.role == "excluded"]

    def summary(self) -> str:
        kinds = [c.role for c in self.features]
        parts = [
            f"{self.task} on {self.target!r} ({self.task_reason})",
            f"{kinds.count('numeric')} numeric and {kinds.count('categorical')} categorical features",
        ]
        if self.ids:
            parts.append(f"ids {', '.join(self.ids)}")
        if self.excluded:
            parts.append(f"left out {', '.join(c.name for c in self.excluded)}")
        parts.append(f"{len(self.expectations)} expectations, model {self.flavor}, gate on {self.primary_metric}")
        return "; ".join(parts)


# ----------------------------------------------------------------------- names and tasks


def check_name(name: str) -> str:
    """The pipeline name, or a ConfigError saying what a valid one looks like."""
    if re.fullmatch(NAME_PATTERN.strip("^$"), name or "") and len(name) <= 200:
        return name
    suggestion = re.sub(r"[^a-z0-9_\-]+", "_", (name or "").lower()).strip("_-")[:200]
    hint = f" (e.g. {suggestion!r})" if suggestion and suggestion != name else ""
    raise ConfigError(
        f"pipeline name {name!r} is not valid: use lowercase letters, digits, _ and -, starting with a "
        f"letter or digit, at most 200 characters{hint}; it is also the registered model name and part of the DAG ids"
    )


def normalize_task(task: str | None) -> str | None:
    if task is None:
        return None
    value = TASK_ALIASES.get(task.strip().lower(), task.strip().lower())
    if value not in TASKS:
        raise ConfigError(
            f"--task: expected one of {', '.join(TASKS)} (or binary, multiclass), got {task!r}"
        )
    return value


def _values(series: pd.Series) -> list[Any]:
    return [v.item() if hasattr(v, "item") else v for v in series]


def _show(values: list[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")


def infer_task(series: pd.Series, task: str | None = None) -> tuple[str, str]:
    """(task, why) from the target column; `task` overrides the inference but must fit the data."""
    name = str(series.name)
    values = series.dropna()
    if values.empty:
        raise DataError(f"the target {name!r} has no values (every row is null): there is nothing to learn")
    distinct = values.nunique()
    if distinct < 2:
        raise DataError(
            f"the target {name!r} holds one value ({_values(values.iloc[:1])[0]!r}) in every row: a model cannot "
            "learn from a constant; pick another --target or add rows with other outcomes"
        )
    kind = values.dtype.kind
    numeric = kind in "iuf"
    integral = kind in "iu" or (kind == "f" and bool((values == values.round()).all()))
    what = "boolean" if kind == "b" else "text" if not numeric else "integer" if integral else "number"
    task = normalize_task(task)
    if task is not None:
        if task == "regression" and not numeric:
            raise DataError(
                f"--task regression needs a numeric target; {name!r} is {what} "
                f"(e.g. {_show(_values(values.drop_duplicates()), 3)}): use a classification task"
            )
        if task == "binary_classification" and distinct != 2:
            classes = sorted(map(str, values.unique()))
            raise DataError(
                f"--task binary_classification needs exactly 2 classes; {name!r} has {distinct}: "
                f"{_show(classes)} (use multiclass_classification)"
            )
        return task, f"{what} with {distinct} distinct values, --task {task}"
    if distinct == 2:
        return "binary_classification", f"{what} with 2 classes"
    if not numeric:
        if distinct > MAX_TEXT_CLASSES:
            raise DataError(
                f"the target {name!r} is text with {distinct} distinct values: too many to be classes. If it holds "
                "numbers, store them as numbers; to classify anyway pass --task multiclass_classification"
            )
        return "multiclass_classification", f"{what} with {distinct} classes"
    if integral and distinct <= MAX_INTEGER_CLASSES and distinct <= max(2, len(values) // 10):
        return "multiclass_classification", (
            f"{what} with {distinct} distinct values (pass --task regression to predict it as a number)"
        )
    return "regression", f"{what} with {distinct} distinct values"


# -------------------------------------------------------------------------------- columns


def _looks_like_id_name(name: str) -> bool:
    return name.lower() in _ID_WORDS or bool(_ID_NAME.search(name))


def _is_datetime(series: pd.Series) -> bool:
    import datetime as dt

    if series.dtype.kind in "mM":
        return True
    if series.dtype.kind != "O":
        return False
    sample = series.dropna().head(200).tolist()
    if not sample:
        return False
    if all(isinstance(v, (dt.date, dt.datetime)) for v in sample):
        return True
    return all(isinstance(v, str) and _ISO_DATE.match(v.strip()) for v in sample)


def classify_column(series: pd.Series) -> tuple[str, str]:
    """(role, note) of one non-target column: numeric, categorical, id or excluded."""
    name = str(series.name)
    values = series.dropna()
    kind = series.dtype.kind
    if values.empty:
        return "excluded", "every value is null"
    distinct = values.nunique()
    if distinct == 1:
        return "excluded", f"constant ({_values(values.iloc[:1])[0]!r} in every row): carries no information"
    if _is_datetime(series):
        return "excluded", (
            "datetime: derive numbers from it (age in days, day of week, ...) where the data is written, "
            "then list them as features"
        )
    if kind == "m":
        return "excluded", "duration: convert it to a number (e.g. seconds) to use it"
    ratio = distinct / len(values)
    if kind != "f" and _looks_like_id_name(name) and ratio >= 0.5:
        return "id", "id-like name with mostly distinct values"
    if kind in "OSU" and ratio == 1.0 and len(values) > 20:
        return "id", "a different text value in every row"
    if kind in "iu" and ratio == 1.0 and len(values) > 20 and int(values.max()) - int(values.min()) + 1 == len(values):
        return "id", "a running number (every integer in its range once)"
    if kind in "iufb":
        return "numeric", ""
    if kind == "c":
        return "excluded", "complex numbers are not supported"
    if distinct > MAX_CATEGORIES and ratio > 0.5:
        return "excluded", f"text-like: {distinct} distinct values in {len(values)} rows, too many for categories"
    return "categorical", f"{distinct} values"


def _unique(series: pd.Series) -> bool:
    return not series.isna().any() and series.nunique() == len(series)


def id_candidates(df: pd.DataFrame, columns: list[Column]) -> list[str]:
    """Numeric features that could be ids: integers, a different one in every row. Kept as features (a
    unique integer may be a measurement) but named in the file, since monitoring needs an id to join on."""
    return [c.name for c in columns if c.role == "numeric" and df[c.name].dtype.kind in "iu"
            and len(df) > 20 and _unique(df[c.name])]


def classify_columns(df: pd.DataFrame, target: str) -> list[Column]:
    columns = []
    for column in df.columns:
        name = str(column)
        dtype = str(df[column].dtype)
        if name == target:
            columns.append(Column(name, "target", dtype))
            continue
        role, note = classify_column(df[column])
        columns.append(Column(name, role, dtype, note))
    return columns


# ----------------------------------------------------------------------------- the data


def resolve_data(data: str, root: str | None = None) -> tuple[str, ArtifactStore]:
    """The URI to write into the pipeline file and the store to read it with.

    A relative path is relative to the artifact root (as in the pipeline file); one
    that is not there but exists from the current folder is written as an absolute path.
    """
    from airflow_mlops.storage import open_store

    if data.startswith("s3://") and not (root or "").startswith("s3://"):
        bucket = data[len("s3://") :].split("/", 1)[0]
        return data, open_store(f"s3://{bucket}")
    store = open_store(root)
    if "://" in data or os.path.isabs(data):
        return data, store
    if not store.exists(data) and not store.is_dir(data) and Path(data).exists():
        return str(Path(data).resolve()), store
    return data, store


def count_rows(uri: str, store: ArtifactStore) -> int:
    from airflow_mlops.data import list_parts, parquet_row_groups

    return sum(sum(parquet_row_groups(part, store)) for part in list_parts(uri, store))


def read_sample(uri: str, store: ArtifactStore, max_rows: int = SAMPLE_ROWS, seed: int = 0) -> tuple[pd.DataFrame, int, bool]:
    """(frame, total rows, sampled): the whole dataset, or a seeded random sample of about `max_rows` rows."""
    from airflow_mlops.data import read_table

    total = count_rows(uri, store)
    if total <= max_rows:
        frame = read_table(uri, store)
        return frame, len(frame), False
    import numpy as np
    import pyarrow as pa

    from airflow_mlops.data import iter_batches, list_parts

    rng = np.random.default_rng(seed)
    fraction = max_rows / total
    tables = []
    for part in list_parts(uri, store):
        batches = [b.filter(pa.array(rng.random(b.num_rows) < fraction)) for b in iter_batches(part, store)]
        if batches:
            tables.append(pa.Table.from_batches(batches))
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    return table.to_pandas(), total, True


# ------------------------------------------------------------------------- the choices


def choose_model(task: str, rows: int, flavor: str | None = None) -> tuple[str, str | None, dict[str, Any], str]:
    """(flavor, estimator, params, why)."""
    flavor = flavor or "xgboost"
    if flavor not in FLAVORS:
        raise ConfigError(f"--flavor: expected one of {', '.join(FLAVORS)}, got {flavor!r}")
    small = rows < SMALL_DATA_ROWS
    if flavor == "xgboost":
        params = (
            {"n_estimators": 300, "learning_rate": 0.1, "max_depth": 4, "early_stopping_rounds": 30}
            if small
            else {"n_estimators": 1000, "learning_rate": 0.05, "max_depth": 6, "early_stopping_rounds": 50}
        )
        why = (
            "gradient-boosted trees: numeric and categorical columns as they are, missing values, "
            "early stopping on the validation split"
            + (f"; shallow trees for a small dataset ({rows} rows)" if small else "")
        )
        return flavor, None, params, why
    if flavor == "sklearn":
        estimator = "sklearn.ensemble.HistGradientBoosting" + ("Regressor" if task == "regression" else "Classifier")
        return flavor, estimator, {"max_iter": 300, "learning_rate": 0.1}, "scikit-learn gradient boosting; categoricals one-hot encoded"
    return flavor, None, {"hidden_sizes": [64, 32], "epochs": 100, "batch_size": 64, "learning_rate": 0.001, "patience": 10}, (
        "the built-in PyTorch MLP: numbers standardised, categoricals embedded; early stopping on the validation split"
    )


def choose_evaluation(task: str, target: pd.Series) -> tuple[str, list[str], dict[str, dict[str, float]], list[str]]:
    """(primary metric, metrics, thresholds, notes) that suit the task and the class balance."""
    notes: list[str] = []
    if task == "regression":
        return "rmse", ["rmse", "mae", "r2"], {"r2": {"min": 0.1}}, notes
    shares = target.dropna().value_counts(normalize=True)
    if task == "binary_classification":
        metrics = ["roc_auc", "pr_auc", "accuracy", "f1", "log_loss"]
        if shares.min() < 0.1:
            notes.append(f"the rarer class is {shares.min():.1%} of the rows: watch pr_auc, accuracy says little here")
        return "roc_auc", metrics, {"roc_auc": {"min": 0.6}}, notes
    classes = len(shares)
    primary = "accuracy"
    if shares.min() < 0.5 * shares.max():
        primary = "balanced_accuracy"
        notes.append("the classes are imbalanced: balanced_accuracy decides promotion")
    floor = round(1.0 / classes + 0.1, 2)
    return primary, ["accuracy", "balanced_accuracy", "f1", "log_loss"], {"balanced_accuracy": {"min": floor}}, notes


def choose_expectations(
    df: pd.DataFrame, columns: list[Column], rows: int, sampled: bool, task: str
) -> list[dict[str, Any]]:
    """`suggest_expectations` limited to the columns the model uses (features, ids, target); value sets only
    for small categorical columns and a classifier's target."""
    from airflow_mlops.validation.suggest import suggest_expectations

    kept = [c.name for c in columns if c.role != "excluded"]
    roles = {c.name: c.role for c in columns}
    target = next(c.name for c in columns if c.role == "target")
    suggestions = suggest_expectations(df[kept])
    out: list[dict[str, Any]] = []
    for item in suggestions:
        kind = item["expect"]
        if kind == "row_count_between":
            item = {**item, "min": max(1, rows // 2)}
        column = item.get("column")
        keeps_set = roles.get(column) == "categorical" or (roles.get(column) == "target" and task != "regression")
        if kind == "in_set" and not keeps_set:
            continue  # a year or a count with few values today has new ones tomorrow: `between` bounds it
        if kind == "in_set" and roles.get(column) == "categorical":
            item = {**item, "mostly": 0.99}  # a new category in a few rows should not stop the pipeline
        elif sampled and kind in ("between", "in_set", "not_null") and column != target:
            item = {**item, "mostly": 0.999}  # seen on a sample: the rest of the data may hold a few more
        if kind == "unique" and (sampled or roles.get(column) != "id"):
            continue  # only ids must be unique; and unique in a sample says little about the whole
        out.append(item)
    labelled = df[target].notna().all()
    if labelled and not any(i["expect"] == "not_null" and i.get("column") == target for i in out):
        # Training needs a label on every row: say so at validation, not deep inside training. With unlabelled
        # rows today, the file drops them instead (data.unlabelled_rows), so the check would only stop it.
        out.append({"expect": "not_null", "column": target})
    return out


def plan_pipeline(
    name: str,
    data: str,
    target: str,
    *,
    task: str | None = None,
    flavor: str | None = None,
    root: str | None = None,
    owner: str = "airflow",
    description: str | None = None,
    max_rows: int = SAMPLE_ROWS,
) -> PipelinePlan:
    """Read the data and infer a pipeline: task, feature kinds, expectations, model, metrics and gates."""
    check_name(name)
    task = normalize_task(task)
    uri, store = resolve_data(data, root)
    try:
        frame, rows, sampled = read_sample(uri, store, max_rows)
    except ArtifactNotFoundError as exc:
        relative = "://" not in uri and not os.path.isabs(uri)
        hint = (
            f" (a relative --data is read from the artifact root {store.root}, then from the current folder)"
            if relative else ""
        )
        raise DataError(f"--data: {exc}{hint}") from None
    frame.columns = [str(c) for c in frame.columns]
    if target not in frame.columns:
        import difflib

        close = difflib.get_close_matches(target, list(frame.columns), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DataError(
            f"--target {target!r} is not a column of {store.uri(uri)}; the columns are "
            f"{', '.join(map(repr, frame.columns))}{hint}"
        )
    chosen_task, reason = infer_task(frame[target], task)
    columns = classify_columns(frame, target)
    for column in columns:
        if column.role == "id" and not _unique(frame[column.name]):
            column.note += "; not unique here: monitoring joins labels on ids, so it needs columns that name one row"
    if not any(c.role in ("numeric", "categorical") for c in columns):
        left = ", ".join(f"{c.name} ({c.note or c.role})" for c in columns if c.role != "target")
        raise DataError(f"no usable feature columns besides the target {target!r}: {left or 'the data has no other columns'}")
    warnings: list[str] = []
    missing = int(frame[target].isna().sum())
    if missing:
        warnings.append(
            f"{missing} of {len(frame)} rows have no {target!r}: the file says data.unlabelled_rows: drop, so "
            "training leaves them out (and logs how many); set it to fail to require a label on every row"
        )
    stratify = True
    if chosen_task != "regression":
        counts = frame[target].value_counts()
        if counts.min() < 5:
            stratify = False
            rare = ", ".join(f"{k!r} ({v} rows)" for k, v in counts[counts < 5].items())
            warnings.append(f"classes with fewer than 5 rows ({rare}): the split is not stratified")
    model_flavor, estimator, params, model_reason = choose_model(chosen_task, rows, flavor)
    primary, metrics, thresholds, notes = choose_evaluation(chosen_task, frame[target])
    warnings.extend(notes)
    slices = [
        c.name for c in columns if c.role == "categorical" and 2 <= frame[c.name].nunique() <= 10
    ][:1]
    source = uri.rstrip("/").rsplit("/", 1)[-1] or uri
    return PipelinePlan(
        name=name,
        data=uri,
        target=target,
        task=chosen_task,
        task_reason=reason,
        rows=rows,
        sampled=sampled,
        columns=columns,
        expectations=choose_expectations(frame, columns, rows, sampled, chosen_task),
        flavor=model_flavor,
        estimator=estimator,
        params=params,
        model_reason=model_reason,
        primary_metric=primary,
        metrics=metrics,
        thresholds=thresholds,
        stratify=stratify,
        slices=slices,
        id_candidates=id_candidates(frame, columns),
        owner=owner,
        description=description if description is not None else f"Predict {target} from {source}",
        warnings=warnings,
        unlabelled=missing,
    )


# ------------------------------------------------------------------------------ writing


def _scalar(value: Any) -> str:
    """A YAML scalar for `value` (quoted only where YAML needs it)."""
    import yaml

    if value is None:
        return "null"
    return yaml.safe_dump([value], default_flow_style=True, width=10_000, allow_unicode=True).strip()[1:-1]


def _flow(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000, allow_unicode=True).strip()


def _line(text: str, comment: str = "", column: int = 34) -> str:
    if not comment:
        return text
    return f"{text.ljust(column - 1)} # {comment}" if len(text) < column - 1 else f"{text}  # {comment}"


def render_pipeline_file(plan: PipelinePlan) -> str:
    """The pipeline file as commented YAML."""
    name = plan.name
    seen = f"a random sample of {plan.rows} rows" if plan.sampled else f"{plan.rows} rows"
    lines = [
        f"# Pipeline file for {name}, written by `airflow-mlops init` from {seen} of the data.",
        "# Every value below is a suggestion: read it, change what you know better, then check the file with",
        "#   airflow-mlops validate <this file>",
        "# Field reference: docs/pipeline-file.md. In Airflow this file becomes the DAGs "
        f"{dag_id(name, 'retrain')}, {dag_id(name, 'rollback')},",
        f"# {name}__batch_inference and {name}__drift.",
    ]
    if plan.command:
        lines.append(f"# Command: {plan.command}")
    for warning in plan.warnings:
        lines.append(f"# NOTE: {warning}")
    lines += [
        _line(f"pipeline: {_scalar(name)}", "also the registered model name"),
        _line(f"owner: {_scalar(plan.owner)}", "owner of the DAGs in the Airflow UI"),
        f"description: {_scalar(plan.description)}",
        "tags: []",
        "",
        "data:",
        _line(f"  train: {_scalar(plan.data)}", "path (relative to the artifact root), file:// or s3://"),
        _line(f"  target: {_scalar(plan.target)}", f"{plan.task}: {plan.task_reason}"),
        _line("  features:", "the kind inferred for each column"),
    ]
    for column in plan.features:
        note = column.role + (f", {column.note}" if column.role == "categorical" and column.note else "")
        lines.append(_line(f"    - {_scalar(column.name)}", f"{note} ({column.dtype})"))
    if plan.ids:
        lines.append(_line(f"  ids: {_flow(plan.ids)}", "never features; carried into predictions"))
        for column in plan.columns:
            if column.role == "id":
                lines.append(f"  #   {column.name}: {column.note}")
    else:
        lines += [
            _line("  ids: []", "id columns: never features, carried into predictions"),
            "  # No column looks like an id (an id-like name such as customer_id with distinct values, or a",
            "  # different text value or running number in every row). Monitoring after deployment (a monitoring:",
            "  # section) joins labels to predictions on data.ids: add a column that names each row to the data",
            "  # (and to the scoring input and the labels), then list it here. Until then the predictions carry",
            "  # their input file and row number (inference.row_numbers below).",
        ]
    for name in plan.id_candidates:
        lines.append(f"  # {name} could be an id (a different integer in every row): if it names a row rather than "
                     "measuring something, move it from features to ids.")
    lines.append(_line("  categorical: auto", "text, category columns are categorical; or a list"))
    if plan.excluded:
        lines.append("  # Left out of the features:")
        for column in plan.excluded:
            lines.append(f"  #   {column.name} ({column.dtype}): {column.note}")
    if plan.unlabelled:
        lines.append(_line("  unlabelled_rows: drop", f"{plan.unlabelled} of {plan.rows} rows have no {plan.target}: "
                                                       "trained without them; fail = require a label on every row"))
    split = {"validation": 0.2, "test": 0.2, "stratify": plan.stratify and plan.task != "regression", "seed": 42}
    lines += [
        _line(f"  split: {_flow(split)}", "shares held out for early stopping and for the gate"),
        "",
        "validation:",
        _line("  on_failure: fail", "fail | skip | warn"),
        "  # What the data looks like today, with margins. A failed expectation stops the run before",
        "  # training; the same checks (minus the target and row count) guard batch-inference input.",
        "  expectations:",
    ]
    for item in plan.expectations:
        lines.append(f"    - {_flow(item)}")
    lines += [
        "",
        "model:",
        *(f"  # {part}" for part in textwrap.wrap(plan.model_reason, 100)),
        _line(f"  flavor: {plan.flavor}", "sklearn | xgboost | torch"),
        _line(f"  task: {plan.task}", "binary_classification | multiclass_classification | regression"),
    ]
    if plan.estimator:
        lines.append(f"  estimator: {plan.estimator}")
    lines += [
        f"  params: {_flow(plan.params)}",
        "  seed: 42",
        "",
        "evaluation:",
        _line(f"  primary_metric: {plan.primary_metric}", "decides the gate against the baseline and the champion"),
        f"  metrics: {_flow(plan.metrics)}",
        "  # A new model must pass these to be promoted. Deliberately low: raise them once you know",
        "  # what the model achieves (see the metrics of the first run in the registry).",
        f"  thresholds: {_flow(plan.thresholds)}",
        _line("  baseline: true", "must also beat a constant model (most frequent class / mean)"),
        _line("  champion: {min_improvement: 0.0, relative: false, on_missing: pass}",
              "beat the champion; the first run passes", 72),
        _line(f"  slices: {_flow(plan.slices)}", "metrics per value of these columns, in the report"),
        _line("  on_failure: fail", "fail | skip | warn"),
        "",
        "promotion:",
        "  alias: champion",
        _line("  approval: none", "required = a person approves in the Airflow UI first"),
        "",
        "inference:",
        "  # Where the data to score is written: a file or a folder of parquet/csv parts, without the target.",
        "  # Scored whenever the champion changes (and on the schedule); the Trigger form can name other data.",
        f"  input: {_scalar(score_folder(plan.data, plan.name))}",
        f"  output: predictions/{name}/",
        "  chunk_rows: 100000",
        _line(f"  row_numbers: {'false' if plan.ids else 'true'}",
              "the output names each row's file and row number (source_file, source_row)"
              + ("" if plan.ids else ": with no id column, how predictions join back to their rows")),
        _line("  schedule: null", "e.g. \"@daily\"; null = only when the champion changes"),
        "",
        "drift:",
        _line("  current: null", "recent data to compare with the champion's training data"),
        "  reference: training",
        _line("  drift_share: 0.5", "drifted when this share of the features drift"),
        _line("  on_drift: alert", "alert | retrain | fail"),
        _line("  schedule: null", "e.g. \"@daily\" once current is set"),
        "",
        "retraining:",
        "  schedule: \"@weekly\"",
        _line("  on_new_data: true", "also when the training data Asset is updated"),
        "",
        "alerts:",
        "  on: [failure, gate_failed, drift, alias_moved]",
        _line("  email: []", "addresses; or slack_webhook_conn_id / webhook_conn_id: Airflow connections"),
        "",
    ]
    return "\n".join(lines)


def score_folder(train: str, name: str) -> str:
    """The suggested inference input: `<pipeline>_score/` beside the training file or folder, so pipelines
    whose data sit in one folder never score each other's files."""
    stripped = train.rstrip("/")
    parent = stripped.rsplit("/", 1)[0] if "/" in stripped.split("://", 1)[-1] else ""
    return f"{parent}/{name}_score/" if parent else f"{name}_score/"


def default_output(name: str) -> Path:
    """NAME.yaml in the folder the templates read (`$AIRFLOW_MLOPS_CONFIGS`, else the project's dags/configs)."""
    return configs_folder("dags") / f"{name}.yaml"


def output_path(name: str, out: str | os.PathLike[str] | None) -> Path:
    if out is None:
        return default_output(name)
    path = Path(out)
    return path / f"{name}.yaml" if path.is_dir() or str(out).endswith(("/", os.sep)) else path


def check_destination(path: Path, name: str, *, force: bool = False) -> None:
    """Refuse to overwrite a file, or to add a second file for a pipeline name, unless `force`."""
    from airflow_mlops.config import load_pipeline_configs

    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"{path}: a pipeline file must end in .yaml or .yml (the DAG templates read only those)")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; pass a file name or the folder with a trailing /")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it, or --out another file")
    if path.parent.is_dir():
        loaded = load_pipeline_configs(path.parent, strict=False)
        other = loaded.sources.get(name)
        if other is not None and other.resolve() != path.resolve():
            raise ConfigError(
                f"pipeline {name!r} is already defined in {other}; pipeline names must be unique in a folder "
                "(pick another NAME or edit that file)"
            )


def write_pipeline_file(text: str, path: Path, *, force: bool = False) -> Path:
    """Write atomically; `force` is needed to replace an existing file."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it, or --out another file")
    fd, temp = tempfile.mkstemp(prefix=".init-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def init_pipeline(
    name: str,
    data: str,
    target: str,
    *,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    command: str = "",
    **options: Any,
) -> tuple[Path, PipelinePlan]:
    """Plan, render, check and write a pipeline file; returns (path, plan)."""
    from airflow_mlops.config.loader import parse_pipeline_config

    check_name(name)
    path = output_path(name, out)
    check_destination(path, name, force=force)
    plan = plan_pipeline(name, data, target, **options)
    plan.command = command
    text = render_pipeline_file(plan)
    import yaml

    from airflow_mlops.config.loader import _cached_loader

    # Never write a file the templates would reject.
    parse_pipeline_config(yaml.load(text, Loader=_cached_loader()), path.name)  # a SafeLoader subclass
    return write_pipeline_file(text, path, force=force), plan
