"""The pydantic schema of a pipeline file: one YAML file per model.

Field names are the contract shared by the docs, the DAG templates and the
tests (see docs/pipeline-file.md). Every model forbids unknown fields, so a
typo is an error instead of a silently ignored setting. Secrets never live
here: alerting and storage name Airflow connections instead.
"""

from __future__ import annotations

import datetime
import itertools
import re
import reprlib
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    field_validator,
    model_validator,
)

from airflow_mlops.errors import ConfigError

Policy = Literal["fail", "skip", "warn"]
Flavor = Literal["sklearn", "xgboost", "torch"]
Task = Literal["binary_classification", "multiclass_classification", "regression"]

# The one table of built-in metrics: name -> (the tasks it applies to, higher is better, needs probabilities).
METRICS: dict[str, tuple[str, bool, bool]] = {
    "roc_auc": ("classification", True, True),
    "pr_auc": ("classification", True, True),
    "log_loss": ("classification", False, True),
    "accuracy": ("classification", True, False),
    "balanced_accuracy": ("classification", True, False),
    "f1": ("classification", True, False),
    "precision": ("classification", True, False),
    "recall": ("classification", True, False),
    "brier": ("classification", False, True),
    "rmse": ("regression", False, False),
    "mae": ("regression", False, False),
    "r2": ("regression", True, False),
    "mape": ("regression", False, False),
}
CLASSIFICATION_METRICS = tuple(name for name, (kind, _, _) in METRICS.items() if kind == "classification")
REGRESSION_METRICS = tuple(name for name, (kind, _, _) in METRICS.items() if kind == "regression")
DEFAULT_METRICS: dict[str, list[str]] = {
    "binary_classification": ["roc_auc", "accuracy", "f1", "log_loss"],
    "multiclass_classification": ["accuracy", "balanced_accuracy", "f1", "log_loss"],
    "regression": ["rmse", "mae", "r2"],
}
DEFAULT_PRIMARY_METRIC = {
    "binary_classification": "roc_auc",
    "multiclass_classification": "accuracy",
    "regression": "rmse",
}
SCHEDULE_PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
_CRON_FIELD = r"[\d*/,\-A-Za-z?LW#]+"
_CRON = re.compile(rf"^{_CRON_FIELD}(\s+{_CRON_FIELD}){{4,5}}$")
NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]*$"
# AWS's rules for new buckets: 3-63 lowercase letters, digits, dots and hyphens, no "..", not an IP address.
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_IP_ADDRESS = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


class _BoundedRepr(reprlib.Repr):
    """reprlib that never renders a whole unknown object (a model, a huge int) to then cut it."""

    _SMALL = (bool, float, type(None), datetime.date, datetime.time, datetime.timedelta)

    def repr_int(self, x: int, level: int) -> str:
        # repr() of an int above 4300 digits raises, and below that can still be thousands of characters.
        return repr(x) if x.bit_length() <= 128 else f"<int of {x.bit_length()} bits>"

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        # reprlib sorts every key first; keep the file's order and look at only the keys shown.
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        shown_pairs = [
            f"{self.repr1(key, level - 1)}: {self.repr1(x[key], level - 1)}" for key in itertools.islice(x, self.maxdict)
        ]
        more = ", ..." if len(x) > self.maxdict else ""
        return "{" + ", ".join(shown_pairs) + more + "}"

    def repr_instance(self, x: Any, level: int) -> str:
        return repr(x) if isinstance(x, self._SMALL) else f"<{type(x).__name__}>"


_REPR = _BoundedRepr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def shown(value: Any, limit: int = 80) -> str:
    """`repr(value)` in at most `limit` characters, for error messages.

    Works in time bounded by `limit`, not by the size of `value`: a pipeline file's
    value can be a megabyte of text or an alias expanded thousands of times.
    """
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown_list(values: Iterable[Any], most: int = 5) -> str:
    """At most `most` values, each `shown`, then how many more there were."""
    values = list(values)
    head = ", ".join(shown(v) for v in values[:most])
    return head if len(values) <= most else f"{head} and {len(values) - most} more"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _check_schedule(value: str | None) -> str | None:
    if value is None or value in SCHEDULE_PRESETS:
        return value
    expected = f"expected null, a preset ({', '.join(SCHEDULE_PRESETS)}) or a cron expression such as '0 3 * * *'"
    if not _CRON.match(value.strip()):
        raise ValueError(f"{expected}, got {shown(value)}")
    # The parser Airflow's cron timetables validate with; imported here so a file without cron pays nothing.
    from croniter import croniter

    try:
        croniter(value)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as exc:
        raise ValueError(f"{expected}; {shown(value)} is not one: {str(exc)[:160]}") from None
    return value


def check_location(value: str | None) -> str | None:
    """A path or URI the artifact store can open; a relative path must stay inside the artifact root."""
    if value is None:
        return value
    scheme, separator, rest = value.partition("://")
    if not separator:
        from airflow_mlops.storage.keys import climbs_out

        if climbs_out(value):
            raise ValueError(
                f"the relative path {shown(value)} climbs out of the artifact root; "
                "use a path inside it, an absolute path or a URI"
            )
        return value
    if scheme == "s3":
        bucket = rest.partition("/")[0]
        if not bucket:
            raise ValueError(f"{shown(value)} names no bucket; expected s3://bucket/key")
        if not _S3_BUCKET.match(bucket) or ".." in bucket or _IP_ADDRESS.match(bucket):
            raise ValueError(
                f"{shown(bucket)} is not a valid S3 bucket name: expected 3 to 63 lowercase letters, digits, "
                "dots and hyphens, starting and ending with a letter or digit"
            )
    elif scheme == "file":
        if not rest.startswith("/"):
            raise ValueError(f"{shown(value)}: a file:// URI needs an absolute path, such as file:///data/train.parquet")
    else:
        raise ValueError(f"{shown(value)}: the scheme {shown(scheme)} is not supported; expected a path, file:// or s3://")
    return value


Location = Annotated[str, AfterValidator(check_location)]
# numpy's and scikit-learn's seeds must fit 32 unsigned bits.
Seed = Annotated[StrictInt, Field(ge=0, le=2**32 - 1)]


Schedule = Annotated[
    str | None,
    AfterValidator(_check_schedule),
    Field(description="null, an Airflow preset such as @daily, or a cron expression"),
]


# --------------------------------------------------------------------------- data


class SplitConfig(_Section):
    validation: StrictFloat = Field(0.2, ge=0.0, lt=1.0, description="share of rows held out for early stopping / tuning")
    test: StrictFloat = Field(0.2, gt=0.0, lt=1.0, description="share of rows held out for evaluation and champion comparison")
    stratify: StrictBool = Field(True, description="keep class proportions in every split (classification only)")
    seed: Seed = 42

    @model_validator(mode="after")
    def _leave_rows_to_train(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise ValueError(
                f"validation + test must be below 1 so rows remain for training, got {self.validation} + {self.test}"
            )
        return self


class DataConfig(_Section):
    train: Location = Field(description="training data: a path (relative to the artifact root), file:// or s3:// URI; a file or a folder of parts")
    target: str = Field(min_length=1, description="the label column")
    features: Literal["all"] | list[str] = Field(
        "all", description="feature columns, or 'all' = every column but the target and ids"
    )
    ids: list[str] = Field(default_factory=list, description="id columns: never features, carried into predictions")
    categorical: Literal["auto"] | list[str] = Field(
        "auto", description="categorical columns; 'auto' = string, boolean and category columns"
    )
    split: SplitConfig = Field(default_factory=SplitConfig)
    unlabelled_rows: Literal["fail", "drop"] = Field(
        "fail", description="rows whose target is missing: 'fail' stops training naming how many and which; "
        "'drop' trains, tunes and evaluates on the labelled rows and logs how many were left out")

    @model_validator(mode="after")
    def _target_is_not_a_feature(self) -> DataConfig:
        if isinstance(self.features, list):
            if not self.features:
                raise ValueError("features: expected 'all' or a non-empty list of columns")
            if self.target in self.features:
                raise ValueError(f"features: the target column {shown(self.target)} cannot also be a feature")
            overlap = sorted(set(self.ids) & set(self.features))
            if overlap:
                raise ValueError(f"features: id columns cannot also be features: {shown_list(overlap)}")
        if self.target in self.ids:
            raise ValueError(f"ids: the target column {shown(self.target)} cannot also be an id")
        return self


# --------------------------------------------------------------------- validation


class _Expectation(_Section):
    mostly: StrictFloat | None = Field(None, gt=0.0, le=1.0, description="share of rows that must pass (default all)")


class RowCountBetween(_Section):
    expect: Literal["row_count_between"]
    min: StrictInt | None = Field(None, ge=0)
    max: StrictInt | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountBetween:
        if self.min is None and self.max is None:
            raise ValueError("row_count_between needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"row_count_between: min {self.min} is above max {self.max}")
        return self


class ColumnsPresent(_Section):
    expect: Literal["columns_present"]
    columns: list[str] = Field(min_length=1)


class NotNull(_Expectation):
    expect: Literal["not_null"]
    column: str


class Between(_Expectation):
    expect: Literal["between"]
    column: str
    min: StrictFloat | None = None
    max: StrictFloat | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Between:
        if self.min is None and self.max is None:
            raise ValueError("between needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"between: min {self.min} is above max {self.max}")
        return self


class InSet(_Expectation):
    expect: Literal["in_set"]
    column: str
    values: list[str | int | float | bool] = Field(min_length=1)


class Unique(_Expectation):
    expect: Literal["unique"]
    column: str


class MatchesRegex(_Expectation):
    expect: Literal["matches_regex"]
    column: str
    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class Dtype(_Section):
    expect: Literal["dtype"]
    column: str
    dtype: str = Field(description="a pandas dtype name such as int64, float64, object, bool, category, datetime64[ns]")


class GreatExpectation(_Section):
    """Any Great Expectations expectation by its class name, e.g. ExpectColumnValuesToBeIncreasing."""

    expect: Annotated[str, Field(pattern=r"^Expect[A-Za-z0-9]+$")]
    kwargs: dict[str, Any] = Field(default_factory=dict)


SHORT_EXPECTATIONS = {
    "row_count_between": RowCountBetween,
    "columns_present": ColumnsPresent,
    "not_null": NotNull,
    "between": Between,
    "in_set": InSet,
    "unique": Unique,
    "matches_regex": MatchesRegex,
    "dtype": Dtype,
}


def _expectation_kind(value: Any) -> str | None:
    name = value.get("expect") if isinstance(value, dict) else getattr(value, "expect", None)
    if not isinstance(name, str):
        return None
    if name in SHORT_EXPECTATIONS:
        return name
    return "great_expectations" if name.startswith("Expect") else None


Expectation = Annotated[
    Annotated[RowCountBetween, Tag("row_count_between")]
    | Annotated[ColumnsPresent, Tag("columns_present")]
    | Annotated[NotNull, Tag("not_null")]
    | Annotated[Between, Tag("between")]
    | Annotated[InSet, Tag("in_set")]
    | Annotated[Unique, Tag("unique")]
    | Annotated[MatchesRegex, Tag("matches_regex")]
    | Annotated[Dtype, Tag("dtype")]
    | Annotated[GreatExpectation, Tag("great_expectations")],
    Discriminator(
        _expectation_kind,
        custom_error_type="unknown_expectation",
        custom_error_message=(
            "expected 'expect' to be one of " + ", ".join(SHORT_EXPECTATIONS)
            + " or a Great Expectations class name such as ExpectColumnValuesToBeIncreasing"
        ),
    ),
]


class ValidationConfig(_Section):
    on_failure: Policy = "fail"
    expectations: list[Expectation] = Field(default_factory=list)
    suite: Location | None = Field(None, description="optional Great Expectations suite JSON file (path or URI)")
    before_scoring: StrictBool = Field(True, description="run the same suite on batch-inference input")


# -------------------------------------------------------------------------- model


class ModelConfig(_Section):
    flavor: Flavor
    task: Task
    estimator: str | None = Field(
        None,
        description=(
            "sklearn: estimator import path (default HistGradientBoostingClassifier/Regressor); "
            "torch: an nn.Module import path (default: the built-in tabular MLP); unused for xgboost"
        ),
    )
    params: dict[str, Any] = Field(default_factory=dict, description="passed to the estimator / trainer")
    seed: Seed = 42
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="torch only: auto = cuda when available")

    @field_validator("estimator")
    @classmethod
    def _import_path(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+", value):
            raise ValueError(f"expected an import path such as sklearn.ensemble.RandomForestClassifier, got {shown(value)}")
        return value

    @model_validator(mode="after")
    def _estimator_fits_flavor(self) -> ModelConfig:
        if self.flavor == "xgboost" and self.estimator is not None:
            raise ValueError("estimator: must be empty for flavor xgboost (set params instead)")
        if self.flavor == "sklearn" and self.estimator is not None and not self.estimator.startswith("sklearn."):
            # Training imports this path; only scikit-learn's own estimators are loaded back safely.
            raise ValueError(f"estimator: expected a scikit-learn estimator such as "
                             f"sklearn.ensemble.RandomForestClassifier, got {shown(self.estimator)}")
        return self


# --------------------------------------------------------------------- evaluation


class Threshold(_Section):
    min: StrictFloat | None = None
    max: StrictFloat | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class ChampionComparison(_Section):
    min_improvement: StrictFloat = Field(
        0.0, description="how much the primary metric must improve on the champion (in the metric's good direction)"
    )
    relative: StrictBool = Field(False, description="min_improvement is a fraction of the champion's value")
    on_missing: Literal["pass", "fail"] = Field(
        "pass", description="what the comparison does when there is no champion yet (first run)"
    )
    on_tie: Literal["reject", "promote"] = Field(
        "reject",
        description="a challenger equal to the champion on the primary metric: reject (it must beat it) or promote",
    )


class SliceConfig(_Section):
    column: str
    min_size: StrictInt = Field(30, ge=1, description="slices with fewer rows are reported but not gated")


def _increasing(edges: list[float]) -> list[float]:
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"bin edges must increase, got {shown_list(edges, most=10)}")
    return edges


BinEdges = Annotated[list[StrictFloat | StrictInt], Field(min_length=2), AfterValidator(_increasing)]


def _column_shorthand(value: Any) -> Any:
    """A list of column entries may name a column by itself: `- sex` is `- column: sex`."""
    if isinstance(value, list):
        return [{"column": item} if isinstance(item, str) else item for item in value]
    return value


class EvaluationSlice(SliceConfig):
    """A slice of the test set: one per value of a column, or per bin of a numeric one; optionally gated."""

    bins: Annotated[StrictInt, Field(ge=2, le=100)] | BinEdges | None = Field(
        None, description="numeric columns: a number of quantile bins (e.g. 4), or increasing bin edges such as "
        "[0, 30, 50, 120] (each bin includes its lower edge; the last also its upper one); null = one slice per value"
    )
    thresholds: dict[str, Threshold] = Field(
        default_factory=dict, description="absolute bounds every scored slice must meet, e.g. {roc_auc: {min: 0.8}}"
    )
    max_gap: dict[str, Annotated[StrictFloat, Field(ge=0.0)]] = Field(
        default_factory=dict, description="largest allowed distance of a slice's metric from the overall value, "
        "in the metric's bad direction, e.g. {roc_auc: 0.05}"
    )

    @property
    def gated(self) -> bool:
        return bool(self.thresholds or self.max_gap)

    def gate_metrics(self) -> list[str]:
        return list(dict.fromkeys([*self.thresholds, *self.max_gap]))


# Fairness metrics of fairlearn.metrics (classifiers only): evaluation/fairness.py defines each.
FairnessMetric = Literal[
    "demographic_parity_difference", "demographic_parity_ratio",
    "equalized_odds_difference", "equalized_odds_ratio",
    "equal_opportunity_difference", "equal_opportunity_ratio",
]


class SensitiveColumn(_Section):
    column: str
    bins: Annotated[StrictInt, Field(ge=2, le=100)] | BinEdges | None = Field(
        None, description="numeric columns: quantile bins or bin edges, as for evaluation.slices"
    )


class FairnessConfig(_Section):
    """Group fairness of a classifier's decisions across sensitive columns (fairlearn.metrics), gated."""

    sensitive: list[SensitiveColumn] = Field(
        min_length=1, description="columns that define the groups, e.g. [sex, {column: age, bins: [0, 30, 60, 120]}]; "
        "they must be in the test data, and are not model features unless as_features is true"
    )
    metrics: list[FairnessMetric] | None = Field(
        None, description="reported; default: those in max and min, or demographic_parity_difference and "
        "equalized_odds_difference when neither is set"
    )
    max: dict[FairnessMetric, Annotated[StrictFloat, Field(ge=0.0)]] = Field(
        default_factory=dict, description="upper limits, e.g. {demographic_parity_difference: 0.1}"
    )
    min: dict[FairnessMetric, Annotated[StrictFloat, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict, description="lower limits, e.g. {demographic_parity_ratio: 0.8}"
    )
    min_group_size: StrictInt = Field(30, ge=1, description="groups with fewer test rows are listed but left out of the metrics")
    as_features: StrictBool = Field(
        False, description="let the model use the sensitive columns as features; false = data.features 'all' "
        "leaves them out, and a list may not name them"
    )

    @field_validator("sensitive", mode="before")
    @classmethod
    def _sensitive_shorthand(cls, value: Any) -> Any:
        return _column_shorthand(value)

    @model_validator(mode="after")
    def _default_metrics(self) -> FairnessConfig:
        if self.metrics is None:
            named = list(dict.fromkeys([*self.max, *self.min]))
            self.metrics = named or ["demographic_parity_difference", "equalized_odds_difference"]
        else:
            self.metrics = list(dict.fromkeys([*self.metrics, *self.max, *self.min]))
        return self


class DiagnosticsConfig(_Section):
    enabled: StrictBool = Field(
        True, description="classifiers: per-class precision/recall/F1/support and the confusion matrix, and for two "
        "classes the calibration curve and Brier score; regression: the residual summary"
    )
    calibration_bins: StrictInt = Field(10, ge=2, le=100, description="bins of the calibration curve")


class ExplanationsConfig(_Section):
    enabled: StrictBool = Field(
        True, description="permutation importance of every feature (all flavors) and, for xgboost, mean absolute "
        "contributions (XGBoost's native SHAP values)"
    )
    sample_rows: StrictInt = Field(
        2000, ge=50, le=1_000_000, description="explain on a seeded sample of at most this many test rows, so the cost "
        "does not grow with the test set"
    )
    n_repeats: StrictInt = Field(3, ge=1, le=100, description="shuffles per feature for permutation importance")
    contribution_rows: StrictInt = Field(
        500, ge=50, le=1_000_000, description="xgboost: mean absolute contributions on at most this many of the "
        "sampled rows (TreeSHAP costs about a millisecond a row for 100 trees of depth 6; the ranking settles well before)"
    )
    seed: Seed = 42


class CustomMetric(_Section):
    path: str = Field(description="import path of f(y_true, y_pred_or_proba) -> float")
    greater_is_better: StrictBool = True
    needs_proba: StrictBool = False


class EvaluationConfig(_Section):
    primary_metric: str | None = Field(None, description="default: roc_auc / accuracy / rmse by task")
    metrics: list[str] | None = Field(None, description="default depends on the task")
    thresholds: dict[str, Threshold] = Field(default_factory=dict)
    champion: ChampionComparison = Field(default_factory=ChampionComparison)
    slices: list[EvaluationSlice] = Field(
        default_factory=list, description="metrics per value (or bin) of these columns; gated where a slice has "
        "thresholds or max_gap"
    )
    fairness: FairnessConfig | None = Field(None, description="group fairness of a classifier, gated; absent = not measured")
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)
    explanations: ExplanationsConfig = Field(default_factory=ExplanationsConfig)
    baseline: StrictBool = Field(True, description="the candidate must beat a dummy model on the primary metric")
    max_overfit_gap: StrictFloat | None = Field(
        None, ge=0.0, description="largest allowed train-minus-validation gap of the primary metric"
    )
    custom_metrics: dict[str, CustomMetric] = Field(default_factory=dict)
    on_failure: Policy = "fail"

    @field_validator("slices", mode="before")
    @classmethod
    def _slice_shorthand(cls, value: Any) -> Any:
        return _column_shorthand(value)


# ------------------------------------------------------- promotion / inference / drift


class AliasAdmins(_Section):
    roles: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["admin"],
        description="Airflow auth-manager roles whose users may move a protected alias directly (case-insensitive)",
    )
    users: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="user names who may move a protected alias directly"
    )


class PromotionConfig(_Section):
    alias: Annotated[str, Field(pattern=NAME_PATTERN)] = "champion"
    approval: Literal["none", "required"] = "none"
    approval_timeout_hours: StrictFloat = Field(72.0, gt=0)
    approver_must_differ: StrictBool = Field(
        False, description="refuse an approval by the user who started the run (separation of duties)"
    )
    protected: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=list,
        description="aliases that move only through an approved promotion, or directly by alias_admins",
    )
    alias_admins: AliasAdmins = Field(
        default_factory=AliasAdmins, description="who may move a protected alias from the registry pages or API"
    )

    def is_protected(self, alias: str) -> bool:
        return alias in self.protected

    def approval_required(self, requested: str) -> bool:
        """A run's approval setting, raised to `required` when the promotion alias is protected."""
        return requested == "required" or self.is_protected(self.alias)


class InferenceConfig(_Section):
    input: Location | None = Field(
        None, description="data to score: a file or a folder of parquet/csv parts; when empty the DAG is not scheduled and asks for it when triggered"
    )
    output: Location | None = Field(None, description="prefix under which each run writes its parts and manifest")
    alias: Annotated[str, Field(pattern=NAME_PATTERN)] = "champion"
    chunk_rows: StrictInt = Field(100_000, ge=1)
    row_numbers: StrictBool = Field(
        False, description="carry each input row's file and 0-based row number into the output (source_file, "
        "source_row), so predictions join back to their rows when the data has no id columns",
    )
    schedule: Schedule = None


class ColumnDrift(_Section):
    method: str | None = Field(None, description="an Evidently stattest name such as ks, psi, wasserstein, chisquare")
    threshold: StrictFloat | None = Field(None, gt=0)


class DriftConfig(_Section):
    current: Location | None = Field(
        None, description="recent data to compare with the reference; when empty the DAG is not scheduled and asks for it when triggered"
    )
    reference: Location = Field("training", description="'training' = the champion's training data, or a dataset URI")
    columns: Literal["features"] | list[str] = Field("features", description="columns to check")
    drift_share: StrictFloat = Field(0.5, gt=0.0, le=1.0, description="the dataset drifts when this share of columns drift")
    method: str | None = Field(None, description="stattest for every column (Evidently picks by type when empty)")
    threshold: StrictFloat | None = Field(None, gt=0)
    per_column: dict[str, ColumnDrift] = Field(default_factory=dict)
    prediction: StrictBool = Field(True, description="after each committed batch, compare its predictions and probabilities with the scoring version's stored test-set predictions (prediction drift)")
    sample_rows: StrictInt | None = Field(
        100_000, ge=100, description="above this many rows, compare a seeded random sample (null = never sample)"
    )
    seed: Seed = 42
    on_drift: Literal["retrain", "alert", "fail"] = "alert"
    schedule: Schedule = None


class RetrainingConfig(_Section):
    schedule: Schedule = "@weekly"
    on_new_data: StrictBool = Field(True, description="also run when the training data Asset is updated")


WINDOW_PATTERN = r"^([1-9][0-9]{0,4})([hdw])$"


def window_timedelta(window: str) -> datetime.timedelta:
    """'36h', '7d', '2w' (`monitoring.window`, or the monitor's trigger form) as a timedelta."""
    match = re.match(WINDOW_PATTERN, str(window).strip())
    if match is None:
        raise ConfigError(f"monitoring window {shown(window)}: expected a number and h, d or w, e.g. '7d'")
    return datetime.timedelta(hours=int(match.group(1)) * {"h": 1, "d": 24, "w": 168}[match.group(2)])


class MaxDrop(_Section):
    amount: StrictFloat = Field(gt=0.0, description="largest allowed drop of a metric from the champion's own test-set value, in its bad direction")
    relative: StrictBool = Field(False, description="amount is a fraction of the test-set value")


class MonitoringConfig(_Section):
    """Performance of the served model once labels arrive, and estimated before they do."""

    labels: Location | None = Field(
        None, description="where ground truth lands: a file or folder of parquet/csv parts with the data.ids columns and the label; when empty the monitor DAG is not scheduled and asks for it when triggered"
    )
    label: str | None = Field(None, description="the label column in the labels data (default: data.target)")
    event_time: str | None = Field(
        None, description="optional column of the labels: when the outcome happened; a label then matches the latest prediction committed before it, and `window` counts back from the newest one"
    )
    metrics: list[str] | None = Field(None, description="default: evaluation.metrics")
    slices: list[SliceConfig] | None = Field(None, description="default: evaluation.slices")
    thresholds: dict[str, Threshold] = Field(default_factory=dict, description="absolute bounds on realized metrics")
    max_drop: MaxDrop | None = Field(None, description="allowed drop of each monitored metric from the champion's own test-set value")
    min_labels: StrictInt = Field(100, ge=1, description="with fewer labelled predictions there is no verdict, only a record")
    window: Annotated[str, Field(pattern=WINDOW_PATTERN)] = Field(
        "7d", description="how far back scoring runs (and labels with an event_time) count: a number and h, d or w"
    )
    estimate: StrictBool = Field(True, description="estimate classifier performance after each batch, before labels arrive (CBPE)")
    on_degradation: Literal["retrain", "alert", "fail"] = "alert"
    schedule: Schedule = "@daily"
    on_new_labels: StrictBool = Field(True, description="also run when the labels Asset is updated")

    @field_validator("slices", mode="before")
    @classmethod
    def _slice_shorthand(cls, value: Any) -> Any:
        return _column_shorthand(value)


class AlertsConfig(_Section):
    on: list[Literal["failure", "gate_failed", "drift", "degradation", "alias_moved"]] = Field(
        default_factory=lambda: ["failure", "gate_failed", "drift", "degradation", "alias_moved"]
    )
    email: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        default_factory=list, description="recipients, sent through the smtp_default connection"
    )
    slack_webhook_conn_id: str | None = Field(
        None, description="a Slack incoming-webhook connection (type slackwebhook; never the URL itself)"
    )
    webhook_conn_id: str | None = Field(
        None, description="an HTTP connection (host = URL, password = shared secret) that gets each alert as signed JSON"
    )


# ------------------------------------------------------------------------- tuning


class IntParam(_Section):
    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    step: StrictInt = Field(1, ge=1, description="only every step-th value from low")
    log: StrictBool = Field(False, description="sample on a log scale (low must be at least 1; step must be 1)")


class FloatParam(_Section):
    type: Literal["float"]
    low: StrictFloat
    high: StrictFloat
    step: StrictFloat | None = Field(None, gt=0, description="only multiples of step from low (not with log)")
    log: StrictBool = Field(False, description="sample on a log scale (low must be above 0)")


class CategoricalParam(_Section):
    type: Literal["categorical"]
    choices: list[str | bool | int | float | None] = Field(min_length=1)


SearchParam = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]
TUNING_PRUNERS = ("median", "hyperband", "none")
MAX_TUNING_PARALLELISM = 128  # mapped trial tasks per run: far below Airflow's max_map_length of 1024


class TuningConfig(_Section):
    """Hyperparameter search in `<pipeline>__retrain` (Optuna), scored on the validation split."""

    enabled: StrictBool = Field(False, description="tune on every run; the Trigger form can turn it on or off per run")
    space: dict[str, SearchParam] = Field(
        min_length=1, description="model.params to search: {name: {type: int|float|categorical, ...}}"
    )
    n_trials: StrictInt = Field(20, ge=1, le=10_000, description="trials per run (the Trigger form can change it)")
    parallelism: StrictInt = Field(
        4, ge=1, le=MAX_TUNING_PARALLELISM, description="mapped trial tasks; each runs its share of the trials in turn"
    )
    timeout: StrictFloat | None = Field(
        None, gt=0, description="seconds from the start of tuning after which no new trial starts (null = no limit)"
    )
    metric: str | None = Field(None, description="metric to optimise on the validation split (default: evaluation.primary_metric)")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="stops unpromising xgboost and torch trials early on their per-round validation loss"
    )
    seed: Seed = Field(42, description="seeds the sampler (each mapped task adds its index)")

    @field_validator("space")
    @classmethod
    def _ranges(cls, space: dict[str, Any]) -> dict[str, Any]:
        for name, param in space.items():
            if isinstance(param, CategoricalParam):
                continue
            if param.low > param.high:
                raise ValueError(f"{name}: low {param.low} is above high {param.high}")
            if param.log and param.low <= 0:
                raise ValueError(f"{name}: a log scale needs low above 0, got {param.low}")
            if param.log and (param.step or 1) != 1:
                raise ValueError(f"{name}: step cannot be used with a log scale")
        return space


# ----------------------------------------------------------------------- pipeline


class PipelineConfig(_Section):
    """One pipeline file: everything a model's three DAGs need."""

    pipeline: Annotated[str, Field(pattern=NAME_PATTERN, max_length=200)] = Field(
        description="also the registered model name; lowercase letters, digits, _ and -"
    )
    owner: str = Field("airflow", description="owner of the DAGs in the Airflow UI; named as the model's owner in its model card")
    description: str = Field("", description="what the model does: the DAGs' description and the purpose in its model card")
    intended_use: str = Field("", description="who should use the model's predictions and for what (model card)")
    limitations: list[str] = Field(
        default_factory=list, description="known limitations and uses to avoid, one sentence each (model card)"
    )
    tags: list[str] = Field(default_factory=list, description="added to the DAGs' tags")
    data: DataConfig
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    model: ModelConfig
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    retraining: RetrainingConfig = Field(default_factory=RetrainingConfig)
    monitoring: MonitoringConfig | None = Field(None, description="performance after deployment; absent = no monitor DAG")
    tuning: TuningConfig | None = Field(None, description="hyperparameter search before training; absent = no tune tasks")
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)

    @model_validator(mode="after")
    def _metrics_fit_the_task(self) -> PipelineConfig:
        task = self.model.task
        evaluation = self.evaluation
        known = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
        if task == "multiclass_classification":
            known = tuple(m for m in known if m not in ("brier", "pr_auc"))
        allowed = set(known) | set(evaluation.custom_metrics)
        if evaluation.metrics is None:
            evaluation.metrics = list(DEFAULT_METRICS[task])
        if evaluation.primary_metric is None:
            evaluation.primary_metric = DEFAULT_PRIMARY_METRIC[task]
        named = {
            "evaluation.metrics": evaluation.metrics,
            "evaluation.primary_metric": [evaluation.primary_metric],
            "evaluation.thresholds": list(evaluation.thresholds),
            **{f"evaluation.slices[{i}] ({item.column}) thresholds and max_gap": item.gate_metrics()
               for i, item in enumerate(evaluation.slices)},
        }
        for where, names in named.items():
            unknown = [n for n in names if n not in allowed]
            if unknown:
                raise ValueError(
                    f"{where}: {shown_list(unknown)} is not a metric for {task}; "
                    f"expected one of {shown_list(sorted(allowed), most=20)}"
                )
        # The slices' max_gap compares with the overall value, so every gated metric is computed overall too.
        gated = [name for item in evaluation.slices for name in item.gate_metrics()]
        for name in [evaluation.primary_metric, *evaluation.thresholds, *gated]:
            if name not in evaluation.metrics:
                evaluation.metrics.append(name)
        monitoring = self.monitoring
        if monitoring is not None:
            builtin = set(known)  # custom metrics need the whole arrays; monitoring computes out of core
            if monitoring.metrics is None:
                monitoring.metrics = [m for m in evaluation.metrics if m in builtin]
            for where, names in {"monitoring.metrics": monitoring.metrics,
                                 "monitoring.thresholds": list(monitoring.thresholds)}.items():
                unknown = [n for n in names if n not in builtin]
                if unknown:
                    raise ValueError(
                        f"{where}: {shown_list(unknown)} is not a metric monitoring computes for {task}; "
                        f"expected one of {shown_list(sorted(builtin), most=20)}"
                    )
            for name in monitoring.thresholds:
                if name not in monitoring.metrics:
                    monitoring.metrics.append(name)
            if monitoring.slices is None:  # the columns only, once each: monitoring bins numbers itself, gates none
                first = {item.column: item for item in reversed(evaluation.slices)}
                monitoring.slices = [SliceConfig(column=column, min_size=first[column].min_size)
                                     for column in dict.fromkeys(item.column for item in evaluation.slices)]
            if monitoring.label is None:
                monitoring.label = self.data.target
        if self.data.split.stratify and task == "regression":
            self.data.split.stratify = False
        return self

    @model_validator(mode="after")
    def _fairness_fits(self) -> PipelineConfig:
        fairness = self.evaluation.fairness
        if fairness is None:
            return self
        if self.model.task == "regression":
            raise ValueError(
                f"evaluation.fairness: {shown_list(fairness.metrics or [])} compare a classifier's decisions across "
                "groups, and model.task is regression; gate each group's metric with evaluation.slices "
                "(thresholds, max_gap) on the sensitive column instead"
            )
        columns = [item.column for item in fairness.sensitive]
        if self.data.target in columns:
            raise ValueError(f"evaluation.fairness.sensitive: the target column {shown(self.data.target)} cannot be a "
                             "sensitive column")
        if isinstance(self.data.features, list) and not fairness.as_features:
            used = [c for c in columns if c in self.data.features]
            if used:
                raise ValueError(
                    f"evaluation.fairness.sensitive: {shown_list(used)} is also in data.features; remove it from "
                    "data.features, or set evaluation.fairness.as_features: true to let the model use it"
                )
        return self

    def sensitive_columns(self) -> list[str]:
        """The sensitive columns the model must not use as features (none when `as_features` is true)."""
        fairness = self.evaluation.fairness
        if fairness is None or fairness.as_features:
            return []
        return [item.column for item in fairness.sensitive]

    @model_validator(mode="after")
    def _tuning_fits(self) -> PipelineConfig:
        tuning = self.tuning
        if tuning is None:
            return self
        if tuning.metric is None:
            tuning.metric = self.evaluation.primary_metric
        elif tuning.metric not in (self.evaluation.metrics or []):
            raise ValueError(
                f"tuning.metric: {shown(tuning.metric)} is not one of evaluation.metrics "
                f"({shown_list(self.evaluation.metrics or [], most=20)})"
            )
        if self.data.split.validation <= 0:
            raise ValueError("tuning: trials are scored on the validation split, but data.split.validation is 0")
        return self

    @property
    def model_name(self) -> str:
        return self.pipeline


def pipeline_json_schema() -> dict[str, Any]:
    """The JSON Schema of a pipeline file (drives the docs and UI forms)."""
    schema = PipelineConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "airflow-mlops pipeline file"
    return schema
