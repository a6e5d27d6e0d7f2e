"""Objects named by dotted path in a pipeline file (custom estimators, architectures, metrics)."""

from __future__ import annotations

import importlib
from typing import Any

from airflow_mlops.errors import ConfigError


def import_object(path: str, what: str, error: type[Exception] = ConfigError) -> Any:
    """Import `package.module.Name`; `error` names the path and the field (`what`) when it does not."""
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"{what} {path!r} does not import: {exc}") from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise error(f"{what} {path!r} does not import: {module_name} has no {attribute!r}") from None
