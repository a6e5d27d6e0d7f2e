"""Containment: every store key built from a run id, name or config path goes through here.

Two rules keep a step inside what it owns. A value that becomes one key segment can
never be `.`, `..`, empty, or carry a separator (`safe_key`). Before anything is deleted
or overwritten, the target is proved to lie inside the prefix the step owns
(`ensure_within`). Relative config paths may not climb out of the artifact root
(`climbs_out`); absolute paths and URIs are the user's explicit choice and stay allowed.
"""

from __future__ import annotations

import os
import posixpath
import re

from airflow_mlops.errors import UnsafePathError

_UNSAFE_CHARACTERS = re.compile(r"[^A-Za-z0-9._=-]+")
_MAX_SEGMENT = 200


def safe_key(value: object, what: str = "run id") -> str:
    """`value` as one key segment: characters other than letters, digits and `._=-` become `_`.

    `manual__2026-01-01T00:00:00+00:00` keeps its meaning; a value that would be empty or
    only dots (`.`, `..`), which a path would read as "here" or "one level up", is refused.
    """
    text = str(value)
    segment = _UNSAFE_CHARACTERS.sub("_", text)
    shown = text if len(text) <= 80 else text[:80] + "..."
    if not segment.strip("."):
        raise UnsafePathError(
            f"{what} {shown!r} cannot name a folder in the artifact store: it would be empty or "
            "point at the folder itself or its parent; use letters, digits or `._=-`"
        )
    if len(segment) > _MAX_SEGMENT:
        raise UnsafePathError(f"{what} {shown!r} is {len(segment)} characters; at most {_MAX_SEGMENT} can name a folder")
    return segment


def is_uri_or_absolute(path: str) -> bool:
    return "://" in path or path.startswith("/") or os.path.isabs(path)


def climbs_out(path: str) -> bool:
    """True when a relative path leaves the folder it is relative to (`../x`, `a/../../x`)."""
    if is_uri_or_absolute(path):
        return False
    normal = posixpath.normpath(path.replace("\\", "/"))
    return normal == ".." or normal.startswith("../")


def _normal(uri: str) -> tuple[str, str]:
    """(scheme and bucket, normalised path) of a URI or local path."""
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        bucket, _, key = rest.partition("/")
        return f"{scheme}://{bucket}", posixpath.normpath("/" + key)
    return "", os.path.normpath(os.path.abspath(uri))


def is_within(prefix: str, target: str, *, or_equal: bool = False) -> bool:
    """Whether `target` lies strictly inside the folder (or key prefix) `prefix`, after `..` are
    resolved; with `or_equal`, `prefix` itself counts too."""
    prefix_place, prefix_path = _normal(prefix)
    target_place, target_path = _normal(target)
    if prefix_place != target_place:
        return False
    if target_path == prefix_path:
        return or_equal
    return target_path.startswith(prefix_path.rstrip("/") + "/")


def ensure_within(prefix: str, target: str, action: str) -> None:
    """Refuse to `action` (delete, overwrite, ...) `target` unless it lies inside `prefix`."""
    if not is_within(prefix, target):
        raise UnsafePathError(f"refusing to {action} {target}: it is not inside {prefix}, the prefix this step owns")
