"""Threads for training and prediction follow the process's CPU allowance, not the host's core count."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from airflow_mlops.errors import ConfigError
from airflow_mlops.training import threads

PRINT_THREADS = "from airflow_mlops.training.threads import machine_threads; print(machine_threads())"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # a helper that writes cgroup files
    """A fake /sys/fs/cgroup and /proc/self/cgroup on an 8-core host."""
    root, proc = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    monkeypatch.setattr(threads, "CGROUP_ROOT", root)
    monkeypatch.setattr(threads, "PROC_CGROUP", proc)
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv(threads.THREADS_ENV, raising=False)
    threads._available_cpus.cache_clear()
    yield lambda membership, files: _write(root, proc, membership, files)
    threads._available_cpus.cache_clear()


def _write(root: Path, proc: Path, membership: str, files: dict[str, str]) -> None:
    proc.write_text(membership)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_no_quota_uses_every_allowed_cpu(host) -> None:
    host("0::/\n", {"cpu.max": "max 100000\n"})
    assert threads.machine_threads() == 8


def test_cgroup_v2_quota_caps_threads(host) -> None:
    host("0::/kubepods/pod1/abc\n", {"kubepods/pod1/abc/cpu.max": "200000 100000\n"})
    assert threads.machine_threads() == 2


def test_tightest_quota_along_the_ancestry_wins_and_rounds_up(host) -> None:
    host("0::/kubepods/pod1/abc\n", {"kubepods/pod1/abc/cpu.max": "max 100000\n",
                                     "kubepods/pod1/cpu.max": "150000 100000\n",
                                     "kubepods/cpu.max": "400000 100000\n"})
    assert threads.machine_threads() == 2


def test_container_view_reads_its_own_cgroup_at_the_mount_root(host) -> None:
    # Without a cgroup namespace the container sees the host's path, which is not mounted inside it.
    host("0::/docker/0123abcd\n", {"cpu.max": "300000 100000\n"})
    assert threads.machine_threads() == 3


def test_cgroup_namespace_path_outside_the_namespace(host) -> None:
    host("0::/../../other\n", {"cpu.max": "100000 100000\n"})
    assert threads.machine_threads() == 1


def test_cgroup_v1_cfs_quota(host) -> None:
    host("4:memory:/x\n3:cpu,cpuacct:/job\n0::/\n", {"cpu,cpuacct/job/cpu.cfs_quota_us": "50000\n",
                                                     "cpu,cpuacct/job/cpu.cfs_period_us": "100000\n"})
    assert threads.machine_threads() == 1


def test_cgroup_v1_unlimited_quota(host) -> None:
    host("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"})
    assert threads.machine_threads() == 8


def test_quota_above_the_affinity_mask_keeps_the_mask(host) -> None:
    host("0::/\n", {"cpu.max": "1600000 100000\n"})
    assert threads.machine_threads() == 8


def test_without_proc_cgroup_there_is_no_quota(host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "PROC_CGROUP", tmp_path / "missing")
    assert threads.cgroup_cpu_quota() is None
    assert threads.machine_threads() == 8


def test_malformed_cpu_max_is_no_quota(host) -> None:
    host("0::/\n", {"cpu.max": "garbage\n"})
    assert threads.machine_threads() == 8


def test_environment_override(host, monkeypatch: pytest.MonkeyPatch) -> None:
    host("0::/\n", {"cpu.max": "200000 100000\n"})
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.machine_threads() == 3


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_override_names_the_variable(host, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(threads.THREADS_ENV, value)
    with pytest.raises(ConfigError, match=f"AIRFLOW_MLOPS_THREADS={value!r}"):
        threads.machine_threads()


def test_real_affinity_mask_limits_threads() -> None:
    done = subprocess.run([sys.executable, "-c", PRINT_THREADS], preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
                          capture_output=True, text=True, check=True, env={k: v for k, v in os.environ.items() if k != threads.THREADS_ENV})
    assert done.stdout.strip() == "1"


def test_real_cgroup_v1_quota_limits_threads() -> None:
    group = Path("/sys/fs/cgroup/cpu") / f"airflow-mlops-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup v1 cpu group here: {exc}")
    try:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
        done = subprocess.run([sys.executable, "-c", PRINT_THREADS], capture_output=True, text=True, check=True,
                              preexec_fn=lambda: (group / "cgroup.procs").write_text(str(os.getpid())),
                              env={k: v for k, v in os.environ.items() if k != threads.THREADS_ENV})
        assert done.stdout.strip() == "1"
    finally:
        group.rmdir()
