"""Render the pipeline-file reference (docs/pipeline-file.md) from the JSON Schema.

Run `python -m airflow_mlops.config.reference > docs/pipeline-file.md`; a test
fails when the committed page is stale.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_mlops.config import schema as config_schema
from airflow_mlops.config.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_PROBLEMS_SHOWN, MAX_VALUES
from airflow_mlops.config.schema import SCHEDULE_PRESETS, SHORT_EXPECTATIONS, pipeline_json_schema

HEADER = """# Pipeline file reference

One YAML file per pipeline (e.g. `dags/configs/breast_cancer.yaml`). Unknown
fields are errors, so a typo never goes unnoticed. Booleans are YAML 1.2 style:
only `true` / `false` (so `on`, `yes` and `no` stay strings). Relative paths
resolve against the artifact root (`AIRFLOW_MLOPS_HOME`, default
`$AIRFLOW_HOME/mlops`). Secrets never live in this file: name an Airflow
connection instead.

This page is generated from the schema: `python -m airflow_mlops.config.reference > docs/pipeline-file.md`.
The same schema as JSON: `airflow-mlops config schema`.
"""

LIMITS = f"""## Limits and checks

The DAG processor parses every pipeline file on every scan, so a file is read
defensively; each problem below is a `ConfigError` naming the file, the line or
field, and what was expected (`airflow-mlops validate FILE` shows the same text).

- **Size:** at most {MAX_FILE_BYTES / 2**20:g} MiB; no more than that is ever read.
- **Nesting:** at most {MAX_DEPTH} levels of lists and mappings, checked on the
  YAML event stream before anything is built.
- **Aliases:** at most {MAX_VALUES:,} values once aliases are expanded (each use of
  `*anchor` counts the anchored value again); an alias used inside the value it
  names is refused.
- **Duplicate keys** in any mapping are refused, naming the key and both lines.
  Keys merged in with `<<: *anchor` may still be overridden.
- **Error messages** show at most {MAX_PROBLEMS_SHOWN} problems, and each value
  in a shortened form, so a huge or aliased value never floods a log.
- **Schedules:** `null`, a preset ({", ".join(f"`{p}`" for p in SCHEDULE_PRESETS)}) or a
  5- or 6-field cron expression that croniter, the parser Airflow's cron
  timetables use, accepts (`0 3 * * 8` and `*/0 * * * *` are refused).
- **Data locations** (`data.train`, `validation.suite`, `inference.input`,
  `inference.output`, `drift.current`, `drift.reference`): a relative path may
  not climb out of the artifact root (`../x`, `a/../../x`); absolute paths,
  `file:///absolute/path` and `s3://bucket/key` stay allowed. An S3 URI needs a
  valid bucket name (3-63 lowercase letters, digits, dots and hyphens); other
  schemes and relative `file://` URIs are refused.
- **Strict types:** integers, numbers and booleans are taken only as written:
  `true` is not 1, `'42'` is not 42, and `yes` is not a boolean. Seeds are
  integers from 0 to 4294967295.
- **Metrics:** `evaluation.metrics`, `primary_metric` (which the champion
  comparison and the overfit gap use) and `thresholds` name only metrics that
  exist for `model.task`, or a `custom_metrics` entry.
"""


def _type_of(prop: dict[str, Any] | bool, defs: dict[str, Any]) -> str:
    if not isinstance(prop, dict):
        return "any"
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop or "oneOf" in prop:
        options = prop.get("anyOf") or prop.get("oneOf")
        return " \\| ".join(_type_of(p, defs) for p in options)
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {_type_of(prop.get('items', {}), defs)}"
    if kind == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_type_of(prop['additionalProperties'], defs)}"
    return str(kind)


def _default(model: type | None, name: str, prop: dict[str, Any]) -> str:
    if "default" in prop:
        return f"`{json.dumps(prop['default'])}`"
    field = model.model_fields.get(name) if model is not None else None
    if field is None or field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if hasattr(value, "model_dump"):
        return "see below"
    return f"`{json.dumps(value)}`"


def _section(title: str, schema: dict[str, Any], defs: dict[str, Any], model: type | None) -> list[str]:
    lines = [f"## {title}", ""]
    if schema.get("description"):
        lines += [schema["description"].strip(), ""]
    lines += ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        default = "required" if name in required else _default(model, name, prop)
        meaning = prop.get("description", "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | {_type_of(prop, defs)} | {default} | {meaning} |")
    return [*lines, ""]


def render_reference() -> str:
    schema = pipeline_json_schema()
    defs = schema.get("$defs", {})
    parts = [HEADER, LIMITS, *_section("Top level", schema, defs, config_schema.PipelineConfig)]
    expectation_names = {cls.__name__ for cls in SHORT_EXPECTATIONS.values()}
    for name in sorted(defs):
        if name in expectation_names or name == "GreatExpectation":
            continue
        parts += _section(name, defs[name], defs, getattr(config_schema, name, None))
    parts += ["## Expectations", "", "Each item of `validation.expectations` names its check in `expect`:", ""]
    for short, model in SHORT_EXPECTATIONS.items():
        fields = ", ".join(f"`{f}`" for f in model.model_fields if f != "expect")
        parts.append(f"- `{short}`: {fields}")
    parts += [
        "- any Great Expectations class name (e.g. `ExpectColumnValuesToBeIncreasing`) with its arguments under `kwargs`",
        "",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    print(render_reference(), end="")
