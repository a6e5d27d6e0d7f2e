"""Load pipeline files and turn every problem into a `ConfigError` a person can act on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_mlops.config.schema import SHORT_EXPECTATIONS, PipelineConfig
from airflow_mlops.errors import ConfigError

PIPELINE_SUFFIXES = (".yaml", ".yml")


def _yaml_loader() -> type:
    """A safe loader with YAML 1.2 booleans: only true/false are booleans.

    YAML 1.1 (PyYAML's default) reads `on`, `off`, `yes`, `no` as booleans, which
    would turn the `alerts.on` key into `True`.
    """
    import re

    import yaml

    # libyaml's parser when PyYAML has it: DAG files parse every pipeline file on every scan.
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class PipelineLoader(base):
        pass

    PipelineLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    PipelineLoader.add_implicit_resolver(
        "tag:yaml.org,2002:bool",
        re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"),
    )
    return PipelineLoader


_LOADER: type | None = None


def _cached_loader() -> type:
    global _LOADER
    if _LOADER is None:
        _LOADER = _yaml_loader()
    return _LOADER


_UNION_TAGS = {*SHORT_EXPECTATIONS, "great_expectations"}


def _field_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    previous: Any = None
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(previous, int) and item in _UNION_TAGS:
            pass  # pydantic's name for the union member, not a field the user wrote
        else:
            parts.append(("." if parts else "") + str(item))
        previous = item
    return "".join(parts)


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = error.get("input")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"expected one of {expected}, got {_shorten(got)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return f"unknown field (got {_shorten(got)}); check the spelling against docs/pipeline-file.md"
    if kind == "unknown_expectation":
        return f"{error['msg']}, got {_shorten(got)}"
    message = error["msg"].removeprefix("Value error, ")
    if kind in {"value_error", "assertion_error"}:
        return message
    return f"{message[0].lower()}{message[1:]}, got {_shorten(got)}"


def _format_validation_error(source: str, exc: Exception) -> ConfigError:
    lines = []
    for error in exc.errors():  # type: ignore[attr-defined]
        path = _field_path(error["loc"])
        lines.append(f"{source}: {path + ': ' if path else ''}{_describe(error)}")
    return ConfigError("\n".join(lines))


def parse_pipeline_config(data: Any, source: str = "<pipeline>") -> PipelineConfig:
    """Validate an already-parsed mapping; `source` names it in error messages."""
    from pydantic import ValidationError

    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{source}: expected a mapping of pipeline fields, got {kind}")
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise _format_validation_error(source, exc) from None


def load_pipeline_config(path: str | os.PathLike[str]) -> PipelineConfig:
    """Read one pipeline YAML file; any problem raises `ConfigError` naming the file and field."""
    import yaml

    path = Path(path)
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: pipeline file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the pipeline file: {exc}") from None
    try:
        data = yaml.load(text, Loader=_cached_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_pipeline_config(data, source)


@dataclass
class LoadedPipelines:
    """What `load_pipeline_configs` found: the good pipelines and each bad file's error."""

    configs: dict[str, PipelineConfig] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    errors: dict[Path, ConfigError] = field(default_factory=dict)


def load_pipeline_configs(folder: str | os.PathLike[str], *, strict: bool = True) -> LoadedPipelines:
    """Load every *.yaml / *.yml file in `folder`, keyed by pipeline name.

    With `strict` (the default) any bad file raises one `ConfigError` listing every
    problem. With `strict=False` the good pipelines load and each bad file's error
    is returned in `errors`, so one broken file does not hide the others.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: pipeline folder not found")
    loaded = LoadedPipelines()
    for path in sorted(p for p in folder.iterdir() if p.suffix in PIPELINE_SUFFIXES and p.is_file()):
        try:
            config = load_pipeline_config(path)
        except ConfigError as exc:
            loaded.errors[path] = exc
            continue
        if config.pipeline in loaded.configs:
            first = loaded.sources[config.pipeline].name
            loaded.errors[path] = ConfigError(
                f"{path.name}: pipeline: {config.pipeline!r} is already defined in {first}; pipeline names must be unique"
            )
            continue
        loaded.configs[config.pipeline] = config
        loaded.sources[config.pipeline] = path
    if strict and loaded.errors:
        raise ConfigError("\n".join(str(e) for e in loaded.errors.values()))
    return loaded
