"""Load pipeline files and turn every problem into a `ConfigError` a person can act on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_mlops.config.schema import SHORT_EXPECTATIONS, PipelineConfig, shown
from airflow_mlops.errors import ConfigError

PIPELINE_SUFFIXES = (".yaml", ".yml")
# Limits that keep a hostile or broken file from crashing or stalling whatever parses it
# (the DAG processor parses every pipeline file on every scan). Real pipeline files are a
# few kilobytes, under ten levels deep and a few hundred values.
MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 50
MAX_VALUES = 100_000  # after aliases are expanded: each use of an alias counts its whole value again
MAX_PROBLEMS_SHOWN = 20
_MAX_LINE = 500


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
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            _refuse_duplicate_keys(self, node)
            return super().construct_mapping(node, deep=deep)

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


def _refuse_duplicate_keys(loader: Any, node: Any) -> None:
    """PyYAML keeps the last of two equal keys; a pipeline file with two `pipeline:` keys is a mistake."""
    import yaml

    first_lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        # `<<` merges may repeat keys on purpose: the mapping's own keys override merged ones.
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in first_lines:
            raise yaml.constructor.ConstructorError(
                problem=f"duplicate key {shown(key)}: first on line {first_lines[key]}, again on line {line}; "
                "a key may appear only once in a mapping",
                problem_mark=key_node.start_mark,
            )
        first_lines[key] = line


def _line(event: Any) -> int:
    return event.start_mark.line + 1


def _check_structure(text: str, source: str) -> None:
    """Refuse, from the event stream alone, files nested or aliased beyond the limits.

    libyaml's composer recurses once per nesting level with no limit, so 100,000 `[`
    overflow the C stack and kill the process; the event parser keeps its own stack and
    is safe. Aliases are composed by reference but validated and printed expanded, so a
    small file can stand for billions of values: count each use of an anchor at its full size.
    """
    import yaml

    try:
        _check_events(yaml.parse(text, Loader=_cached_loader()), source)  # events only
    except yaml.MarkedYAMLError as exc:
        # PyYAML 6.0.4's scanner has a depth limit of its own (1,000), met before ours when one line
        # opens thousands of collections: the same refusal, in the same words.
        if "maximum nesting depth" not in str(exc.problem):
            raise
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ConfigError(f"{source}: line {line}: nested more than {MAX_DEPTH} levels deep") from None


def _check_events(events: Any, source: str) -> None:
    import yaml

    open_sizes: list[int] = []  # values counted so far in each collection still open
    open_anchors: list[str | None] = []
    anchored_sizes: dict[str, int] = {}
    for event in events:
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_sizes) >= MAX_DEPTH:
                raise ConfigError(f"{source}: line {_line(event)}: nested more than {MAX_DEPTH} levels deep")
            open_sizes.append(1)
            open_anchors.append(event.anchor)
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            size = open_sizes.pop()
            anchor = open_anchors.pop()
        elif isinstance(event, yaml.ScalarEvent):
            size, anchor = 1, event.anchor
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise ConfigError(f"{source}: line {_line(event)}: the alias {shown(event.anchor)} is used inside the value it names")
            # An undefined alias is the composer's error to report, with its position.
            size, anchor = anchored_sizes.get(event.anchor, 0), None
        else:
            continue
        if anchor is not None:
            anchored_sizes[anchor] = size
        if open_sizes:
            open_sizes[-1] += size
            if open_sizes[-1] > MAX_VALUES:
                raise ConfigError(
                    f"{source}: line {_line(event)}: more than {MAX_VALUES} values once aliases are expanded; "
                    "a pipeline file needs far fewer (is an alias used inside a list that is aliased again?)"
                )


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
            name = item if isinstance(item, str) and len(item) <= 80 else shown(item)
            parts.append(("." if parts else "") + name)
        previous = item
    return "".join(parts)


def _describe(error: dict[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = error.get("input")
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return f"expected one of {expected}, got {shown(got)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return f"unknown field (got {shown(got)}); check the spelling against docs/pipeline-file.md"
    if kind == "unknown_expectation":
        return f"{error['msg']}, got {shown(got)}"
    message = error["msg"].removeprefix("Value error, ")
    if kind in {"value_error", "assertion_error"}:
        return message
    return f"{message[0].lower()}{message[1:]}, got {shown(got)}"


def _cut(line: str) -> str:
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 3] + "..."


def _format_validation_error(source: str, exc: Exception) -> ConfigError:
    errors = exc.errors()  # type: ignore[attr-defined]
    lines = []
    for error in errors[:MAX_PROBLEMS_SHOWN]:
        path = _field_path(error["loc"])
        lines.append(_cut(f"{source}: {path + ': ' if path else ''}{_describe(error)}"))
    if len(errors) > MAX_PROBLEMS_SHOWN:
        lines.append(f"{source}: ... and {len(errors) - MAX_PROBLEMS_SHOWN} more problems")
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
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)  # never more, whatever the file claims to be
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: pipeline file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the pipeline file: {_cut(str(exc))}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_FILE_BYTES / 2**20:g} MiB; a pipeline file needs a few KiB")
    try:
        _check_structure(text, source)
        data = yaml.load(text, Loader=_cached_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(_cut(f"{source}: not valid YAML{where}: {problem}")) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(_cut(f"{source}: not valid YAML: {exc}")) from None
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
