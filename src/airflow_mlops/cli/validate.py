"""`airflow-mlops validation suggest DATA_URI`: a starter expectations block from the data."""

from __future__ import annotations

import argparse
from pathlib import Path


def _suggest(args: argparse.Namespace) -> int:
    from airflow_mlops.data import read_table
    from airflow_mlops.storage import open_store
    from airflow_mlops.validation.suggest import expectations_yaml, suggest_expectations

    block = expectations_yaml(suggest_expectations(read_table(args.data_uri, open_store(args.root))))
    if args.out:
        Path(args.out).write_text(block)
        print(f"wrote {args.out}")
    else:
        print(block, end="")
    return 0


def add_validation_commands(subparsers: argparse._SubParsersAction) -> None:
    validation = subparsers.add_parser("validation", help="data validation helpers")
    commands = validation.add_subparsers(dest="validation_command", required=True)
    suggest = commands.add_parser("suggest", help="profile a dataset and print a starter expectations block")
    suggest.add_argument("data_uri", help="a file or folder (path relative to the artifact root, file://, s3://)")
    suggest.add_argument("--out", help="write the block to this file instead of printing it")
    suggest.add_argument("--root", help="artifact root (default: AIRFLOW_MLOPS_HOME)")
    suggest.set_defaults(handler=_suggest)
