"""What a task costs: wall time, CPU-seconds and peak memory, measured with the standard library only.

- **CPU-seconds**: user + system time of this process (all its threads) and of the child processes it
  waited for, between the start and the end of the measured block (`resource.getrusage`).
- **Peak memory**: on Linux, the process's resident-set high-water mark (`VmHWM`) after resetting it
  at the start of the block (writing `5` to `/proc/self/clear_refs`), so the figure is the peak
  *during the task*, including what the process held before it (interpreter, imported libraries).
  Where the reset is not possible (another OS, a locked-down /proc), it is `ru_maxrss`: the peak over
  the process's whole life, marked `peak_memory_scope: "process"`.

An Airflow task runs in a process of its own, so these are the task's figures. Blocks measured at the
same time in one process (threads) share the process's counters; the peak is then reset only by the
first of them, so no measurement loses a peak it saw.
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from airflow_mlops.refs import Record

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"
_active = 0  # blocks being measured in this process
_peak_was_reset = False  # whether the first of them reset the high-water mark
_active_lock = threading.Lock()


class Cost(Record):
    """The cost of one measured block (a training task, a scored chunk)."""

    wall_seconds: float
    cpu_seconds: float
    peak_memory_bytes: int | None = None
    peak_memory_scope: Literal["task", "process"] | None = None


class CostMeter:
    """Filled in when the `measure_cost()` block ends: read `cost` after it."""

    cost: Cost | None = None


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reset_peak() -> bool:
    """Reset the process's resident-set high-water mark (Linux 4.0+); False where that is not possible."""
    try:
        with open(_CLEAR_REFS, "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _high_water_mark() -> int | None:
    """VmHWM in bytes, or None without /proc."""
    try:
        with open(_STATUS) as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _lifetime_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


@contextmanager
def measure_cost() -> Iterator[CostMeter]:
    """Measure the block: `with measure_cost() as meter: ...`, then `meter.cost` (also when it raised)."""
    global _active, _peak_was_reset
    meter = CostMeter()
    with _active_lock:
        if _active == 0:
            _peak_was_reset = _reset_peak()
        reset = _peak_was_reset
        _active += 1
    wall, cpu = time.monotonic(), _cpu_seconds()
    try:
        yield meter
    finally:
        with _active_lock:
            _active -= 1
        peak = _high_water_mark() if reset else None
        meter.cost = Cost(
            wall_seconds=round(time.monotonic() - wall, 3),
            cpu_seconds=round(_cpu_seconds() - cpu, 3),
            peak_memory_bytes=peak if peak is not None else _lifetime_peak(),
            peak_memory_scope="task" if peak is not None else "process",
        )


def memory_text(value: Any) -> str | None:
    """Bytes as MiB or GiB, for pages and cards (None when unknown)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def cpu_seconds_per_million_rows(cpu_seconds: float | None, rows: int) -> float | None:
    """CPU-seconds per million rows scored (None when unknown or no row was scored)."""
    if cpu_seconds is None or rows <= 0:
        return None
    return round(cpu_seconds * 1_000_000 / rows, 3)
