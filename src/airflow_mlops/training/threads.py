"""How many threads training and prediction use: the CPUs this process may run on, not the host's.

`os.cpu_count()` counts the host's cores. A Kubernetes pod or a container with a CPU limit
that starts one thread per host core is throttled for most of every period, and a Celery
worker that runs several tasks at once shares its cores among them.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

from airflow_mlops.errors import ConfigError
from airflow_mlops.settings import THREADS_ENV

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def machine_threads() -> int:
    """`AIRFLOW_MLOPS_THREADS` when set; else the CPUs in this process's affinity mask,
    capped by its cgroup's CPU quota (rounded up)."""
    override = os.environ.get(THREADS_ENV, "").strip()
    if override:
        if not override.isdigit() or int(override) < 1:
            raise ConfigError(f"{THREADS_ENV}={override!r}: expected a whole number of threads, at least 1")
        return int(override)
    return _available_cpus()


@functools.cache
def _available_cpus() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, min(cpus, math.ceil(quota)) if quota is not None else cpus)


def cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time per period the cgroup quota allows (cgroup v2 `cpu.max`, v1
    `cpu.cfs_quota_us`), the tightest along the cgroup's ancestry; None without a quota.

    Inside a container the cgroup's own folder is usually mounted at the root, while
    /proc/self/cgroup names the host's path: both places are read."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            quotas += [_v2_quota(folder) for folder in _ancestry(CGROUP_ROOT, path)]
        elif "cpu" in controllers.split(","):
            for mount in dict.fromkeys([CGROUP_ROOT / controllers, CGROUP_ROOT / "cpu"]):
                quotas += [_v1_quota(folder) for folder in _ancestry(mount, path)]
    known = [q for q in quotas if q is not None]
    return min(known) if known else None


def _ancestry(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder under `mount` and its parents up to `mount`; in a cgroup namespace
    a path outside it reads `/../..`, and then only `mount` is the process's own."""
    parts = [part for part in path.split("/") if part]
    if ".." in parts:
        return [mount]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period
