"""What a task costs: CPU-seconds and a peak memory of the measured block, not of the process's past."""

from __future__ import annotations

import sys

import pytest

from airflow_mlops import cost
from airflow_mlops.cost import cpu_seconds_per_million_rows, measure_cost

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-task peak needs Linux's /proc")


def _busy(seconds: float = 0.2) -> None:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@linux
def test_the_peak_is_the_blocks_own_not_an_earlier_one():
    big = b"x" * (300 * 2**20)  # written, so resident
    earlier_peak = cost._high_water_mark()
    del big
    with measure_cost() as meter:
        _busy()
        small = b"y" * (40 * 2**20)
        del small
    measured = meter.cost
    assert measured.peak_memory_scope == "task"
    assert measured.cpu_seconds >= 0.15 and measured.wall_seconds >= measured.cpu_seconds * 0.5
    assert 40 * 2**20 < measured.peak_memory_bytes < earlier_peak - 200 * 2**20


@linux
def test_a_block_measured_inside_another_keeps_the_outer_peak():
    with measure_cost() as outer:
        big = b"x" * (200 * 2**20)
        del big
        with measure_cost() as inner:
            pass
    assert outer.cost.peak_memory_bytes >= 200 * 2**20 and inner.cost.peak_memory_scope == "task"


def test_without_a_resettable_peak_the_process_peak_is_reported(monkeypatch):
    monkeypatch.setattr(cost, "_CLEAR_REFS", "/nonexistent/clear_refs")
    with measure_cost() as meter:
        pass
    assert meter.cost.peak_memory_scope == "process" and meter.cost.peak_memory_bytes == cost._lifetime_peak()


def test_the_cost_is_kept_when_the_block_raises():
    with pytest.raises(ValueError), measure_cost() as meter:
        raise ValueError("boom")
    assert meter.cost is not None and meter.cost.wall_seconds >= 0


def test_cpu_seconds_per_million_rows():
    assert cpu_seconds_per_million_rows(3.0, 1000) == 3000.0
    assert cpu_seconds_per_million_rows(None, 1000) is None and cpu_seconds_per_million_rows(1.0, 0) is None
