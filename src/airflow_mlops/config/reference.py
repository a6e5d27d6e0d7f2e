"""Render the pipeline-file reference (docs/pipeline-file.md) from the JSON Schema.

Run `python -m airflow_mlops.config.reference > docs/pipeline-file.md`; a test
fails when the committed page is stale.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_mlops.config import schema as config_schema
from airflow_mlops.config.schema import SHORT_EXPECTATIONS, pipeline_json_schema

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
    parts = [HEADER, *_section("Top level", schema, defs, config_schema.PipelineConfig)]
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
