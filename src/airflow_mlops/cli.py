"""`airflow-mlops`: the command line for people (registry, database, validation, examples, config)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _config_commands(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="pipeline files: check one, print the JSON Schema")
    commands = config.add_subparsers(dest="config_command", required=True)
    schema = commands.add_parser("schema", help="print the JSON Schema of a pipeline file")
    schema.set_defaults(handler=_print_schema)
    check = commands.add_parser("validate", help="check a pipeline file with the messages Airflow would show")
    check.add_argument("file")
    check.set_defaults(handler=_validate_file)


def _print_schema(args: argparse.Namespace) -> int:
    from airflow_mlops.config import pipeline_json_schema

    print(json.dumps(pipeline_json_schema(), indent=2))
    return 0


def _validate_file(args: argparse.Namespace) -> int:
    from airflow_mlops.config import load_pipeline_config
    from airflow_mlops.errors import ConfigError

    try:
        config = load_pipeline_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{args.file}: ok (pipeline {config.pipeline}, {config.model.flavor} {config.model.task})")
    return 0


def _example_commands(subparsers: argparse._SubParsersAction) -> None:
    examples = subparsers.add_parser("examples", help="the example pipelines' data")
    commands = examples.add_subparsers(dest="examples_command", required=True)
    materialise = commands.add_parser("materialise", help="write the examples' data into the artifact root")
    materialise.add_argument("--root", help="artifact root (default: AIRFLOW_MLOPS_HOME)")
    materialise.set_defaults(handler=_materialise)


def _materialise(args: argparse.Namespace) -> int:
    from airflow_mlops.examples import materialise_examples
    from airflow_mlops.storage import open_store

    store = open_store(args.root)
    for name, uris in materialise_examples(store).items():
        print(f"{name}: train {uris['train']}, {len(uris['score'])} score parts, current and shifted data")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from airflow_mlops.registry.cli import add_db_commands, add_registry_commands
    from airflow_mlops.validation.cli import add_validation_commands

    parser = argparse.ArgumentParser(prog="airflow-mlops", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_registry_commands(subparsers)
    add_db_commands(subparsers)
    add_validation_commands(subparsers)
    _config_commands(subparsers)
    _example_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from airflow_mlops.errors import MlopsError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
