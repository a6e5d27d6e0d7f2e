"""`airflow-mlops registry ...` and `airflow-mlops db upgrade`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def _registry(args: argparse.Namespace) -> Any:
    from airflow_mlops.registry import ModelRegistry

    return ModelRegistry(args.db)


def _emit(args: argparse.Namespace, data: Any, rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> int:
    print(json.dumps(data, indent=2, default=str) if args.json else _table(rows, headers))
    return 0


def _metric_summary(metrics: dict[str, Any], limit: int = 3) -> str:
    shown = [f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)) and not k.startswith("train_")]
    return ", ".join(shown[:limit])


def _models(args: argparse.Namespace) -> int:
    models = _registry(args).list_models()
    rows = [(m.name, m.latest_version, ", ".join(f"{a}=v{v}" for a, v in m.aliases.items())) for m in models]
    return _emit(args, [m.to_dict() for m in models], rows, ["model", "latest", "aliases"])


def _versions(args: argparse.Namespace) -> int:
    registry = _registry(args)
    versions = registry.search_versions(args.name, status=args.status)
    # The test-split metrics of each version's latest evaluation: what the promotion gate decided on
    # (the version's own metrics are train and validation scores, not comparable across versions).
    evaluated = {e.version: e.metrics for e in registry.evaluations(args.name)}
    rows = [
        (f"v{v.version}", v.status, ",".join(v.aliases), v.flavor,
         _metric_summary(evaluated[v.version]) if v.version in evaluated else "not evaluated",
         v.created_at.strftime("%Y-%m-%d %H:%M"), v.run_id)
        for v in versions
    ]
    return _emit(args, [{**v.to_dict(), "test_metrics": evaluated.get(v.version)} for v in versions], rows,
                 ["version", "status", "aliases", "flavor", "test metrics", "created", "run"])


def _show(args: argparse.Namespace) -> int:
    version = _registry(args).get_version(args.name, args.version)
    if args.json:
        print(json.dumps(version.to_dict(), indent=2, default=str))
        return 0
    for key, value in version.to_dict().items():
        print(f"{key:>17}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")
    return 0


def _aliases(args: argparse.Namespace) -> int:
    aliases = _registry(args).aliases(args.name)
    return _emit(args, aliases, [(a, f"v{v}") for a, v in aliases.items()], ["alias", "version"])


def _history(args: argparse.Namespace) -> int:
    events = _registry(args).history(args.name, args.alias)
    rows = [
        (e.at.strftime("%Y-%m-%d %H:%M:%S"), e.kind, _v(e.from_version), _v(e.to_version), e.actor, e.reason, e.run_id)
        for e in events
    ]
    return _emit(args, [e.to_dict() for e in events], rows, ["at", "kind", "from", "to", "actor", "reason", "run"])


def _v(version: int | None) -> str:
    return "-" if version is None else f"v{version}"


def _promote(args: argparse.Namespace) -> int:
    from airflow_mlops.registry import UNCHECKED

    expected = UNCHECKED if args.expected_version is None else (
        None if args.expected_version == "none" else int(args.expected_version)
    )
    event = _registry(args).set_alias(
        args.name, args.alias, args.version, expected_version=expected, actor=args.actor, reason=args.reason
    )
    print(json.dumps(event.to_dict(), default=str) if args.json else
          f"{args.name} '{args.alias}': {_v(event.from_version)} -> {_v(event.to_version)}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    version = _registry(args).rollback(args.name, args.alias, reason=args.reason, actor=args.actor)
    print(json.dumps(version.to_dict(), default=str) if args.json else f"{args.name} '{args.alias}' -> v{version.version}")
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="SQLAlchemy URL of the registry (default: the embedded SQLite registry)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_registry_commands(subparsers: argparse._SubParsersAction) -> None:
    registry = subparsers.add_parser("registry", help="browse and change the model registry")
    commands = registry.add_subparsers(dest="registry_command", required=True)

    models = commands.add_parser("models", help="every registered model with its aliases")
    models.set_defaults(handler=_models)
    versions = commands.add_parser("versions", help="the versions of a model")
    versions.add_argument("name")
    versions.add_argument("--status", choices=["active", "archived"])
    versions.set_defaults(handler=_versions)
    show = commands.add_parser("show", help="one version with its lineage")
    show.add_argument("name")
    show.add_argument("version", type=int)
    show.set_defaults(handler=_show)
    aliases = commands.add_parser("aliases", help="a model's aliases")
    aliases.add_argument("name")
    aliases.set_defaults(handler=_aliases)
    history = commands.add_parser("history", help="the alias history: who, when, why, from which run")
    history.add_argument("name")
    history.add_argument("alias", nargs="?")
    history.set_defaults(handler=_history)
    promote = commands.add_parser("promote", help="point an alias at a version")
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--alias", required=True)
    promote.add_argument("--reason", required=True)
    promote.add_argument("--expected-version", help="compare-and-set: the version the alias must hold now ('none' = unset)")
    promote.add_argument("--actor", help="recorded as who made the change (default: your user name)")
    promote.set_defaults(handler=_promote)
    rollback = commands.add_parser("rollback", help="move an alias back one step in its history")
    rollback.add_argument("name")
    rollback.add_argument("--alias", required=True)
    rollback.add_argument("--reason", required=True)
    rollback.add_argument("--actor")
    rollback.set_defaults(handler=_rollback)
    for parser in (models, versions, show, aliases, history, promote, rollback):
        _common(parser)


def _upgrade(args: argparse.Namespace) -> int:
    from airflow_mlops.registry import migrate
    from airflow_mlops.registry.engine import default_registry_url, registry_engine

    url = args.db or default_registry_url()
    revision = migrate.upgrade(registry_engine(url))
    print(f"registry schema at revision {revision}")
    return 0


def add_db_commands(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="the registry's database schema")
    commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = commands.add_parser("upgrade", help="apply the registry's migrations")
    upgrade.add_argument("--db", help="SQLAlchemy URL (default: the embedded SQLite registry)")
    upgrade.set_defaults(handler=_upgrade)
