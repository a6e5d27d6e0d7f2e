"""`airflow-mlops`: the command line for people (registry, database, validation, examples, config)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_mlops.config import PipelineConfig


def _config_commands(subparsers: argparse._SubParsersAction) -> None:
    config = subparsers.add_parser("config", help="pipeline files: check one, print the JSON Schema")
    commands = config.add_subparsers(dest="config_command", required=True)
    schema = commands.add_parser("schema", help="print the JSON Schema of a pipeline file")
    schema.set_defaults(handler=_print_schema)
    _validate_arguments(commands.add_parser("validate", help="the same as `airflow-mlops validate`"))


def _validate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", metavar="FILE",
        help="pipeline files, or folders of them (a folder also catches two files with one pipeline name)",
    )
    parser.set_defaults(handler=_validate_file)


def _print_schema(args: argparse.Namespace) -> int:
    from airflow_mlops.config import pipeline_json_schema

    print(json.dumps(pipeline_json_schema(), indent=2))
    return 0


def _validate_file(args: argparse.Namespace) -> int:
    """Each problem on stderr exactly as the DAG import error shows it: `file: field: what was expected`."""
    from pathlib import Path

    from airflow_mlops.config import load_pipeline_config, load_pipeline_configs
    from airflow_mlops.errors import ConfigError

    failed = False
    for name in args.files:
        try:
            folder = Path(name) if Path(name).is_dir() else Path(name).parent
            if Path(name).is_dir():
                loaded = load_pipeline_configs(name, strict=False)
                configs = [(loaded.sources[p].name, c) for p, c in loaded.configs.items()]
                for error in loaded.errors.values():
                    print(error, file=sys.stderr)
                failed = failed or bool(loaded.errors)
            else:
                configs = [(name, load_pipeline_config(name))]
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            failed = True
            continue
        # The pipelines the templates will load beside these: a shared scoring input is only seen among them.
        neighbours = load_pipeline_configs(folder, strict=False).configs.values() if folder.is_dir() else []
        for source, config in configs:
            print(f"{source}: ok (pipeline {config.pipeline}, {config.model.flavor} {config.model.task})")
            for warning in [*_warnings(config), *_shared_input(config, neighbours)]:
                print(f"{source}: warning: {warning}")
    return 1 if failed else 0


def _shared_input(config: PipelineConfig, neighbours: Iterable[PipelineConfig]) -> list[str]:
    """A scoring input folder that other pipelines read too: each one's batch inference scores every file
    there, the others' included (files of another schema fail its scoring)."""
    mine = (config.inference.input or "").rstrip("/")
    others = sorted(o.pipeline for o in neighbours
                    if o.pipeline != config.pipeline and mine and (o.inference.input or "").rstrip("/") == mine)
    if not others:
        return []
    return [f"inference.input {config.inference.input} is also the scoring input of {', '.join(others)}: each "
            "pipeline's batch inference scores every file there, the others' files included; give each pipeline "
            "its own folder"]


def _warnings(config: PipelineConfig) -> list[str]:
    """What a valid file will not do as its author expects. Printed on stdout with the file's ok line, so stderr
    stays exactly the DAG import error, and the exit code stays 0: the DAGs load and run."""
    if config.monitoring is not None and not config.data.ids:
        return ["monitoring: joins labels to batch predictions on data.ids, and data.ids is empty: the monitor "
                "cannot match any label; list the columns that identify a row (in the training data, the scoring "
                "input and the labels)"]
    return []


def _init_commands(subparsers: argparse._SubParsersAction) -> None:
    from airflow_mlops.cli.scaffold import FLAVORS

    init = subparsers.add_parser(
        "init", help="write a pipeline file for a dataset: task, features, expectations and model inferred",
        description="Read a dataset, infer the task and the feature types, suggest expectations, pick a model, "
        "metrics and gates, and write a commented pipeline file ready to run.",
    )
    init.add_argument("name", help="pipeline name (lowercase letters, digits, _ and -): also the registered model name")
    init.add_argument("--data", required=True, help="training data: a file or folder (relative to the artifact root, a local path, file://, s3://)")
    init.add_argument("--target", required=True, help="the label column")
    init.add_argument("--task", help="binary_classification | multiclass_classification | regression (default: inferred)")
    init.add_argument("--flavor", choices=FLAVORS, help="model flavor (default: xgboost)")
    init.add_argument("--out", help="file to write, or a folder for NAME.yaml (default: $AIRFLOW_MLOPS_CONFIGS/NAME.yaml, else dags/configs/NAME.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--owner", default="airflow", help="owner of the DAGs (default: airflow)")
    init.add_argument("--description", help="shown as the DAGs' description")
    init.add_argument("--root", help="artifact root (default: AIRFLOW_MLOPS_HOME)")
    init.add_argument("--sample-rows", type=int, default=None, help="profile a random sample of this many rows of bigger data (default 100000)")
    init.set_defaults(handler=_init)


def _init(args: argparse.Namespace) -> int:
    import shlex

    from airflow_mlops.cli.scaffold import SAMPLE_ROWS, init_pipeline
    from airflow_mlops.settings import dag_id

    command = "airflow-mlops init " + " ".join(
        shlex.quote(a) for a in [args.name, "--data", args.data, "--target", args.target]
        + (["--task", args.task] if args.task else []) + (["--flavor", args.flavor] if args.flavor else [])
    )
    path, plan = init_pipeline(
        args.name, args.data, args.target, out=args.out, force=args.force, command=command,
        task=args.task, flavor=args.flavor, root=args.root, owner=args.owner, description=args.description,
        max_rows=args.sample_rows or SAMPLE_ROWS,
    )
    print(f"wrote {path}: {plan.summary()}")
    for warning in plan.warnings:
        print(f"note: {warning}")
    print(f"next: read the file, `airflow-mlops validate {path}`, then trigger {dag_id(plan.name, 'retrain')} in Airflow")
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
    from airflow_mlops.cli.registry import add_db_commands, add_registry_commands
    from airflow_mlops.cli.validate import add_validation_commands

    parser = argparse.ArgumentParser(prog="airflow-mlops", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_registry_commands(subparsers)
    add_db_commands(subparsers)
    add_validation_commands(subparsers)
    _init_commands(subparsers)
    _validate_arguments(
        subparsers.add_parser("validate", help="check pipeline files with the messages Airflow would show")
    )
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

