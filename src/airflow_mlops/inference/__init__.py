"""Batch inference: plan chunks for a pinned version, score each chunk, commit with a manifest."""

from __future__ import annotations

from typing import Any

__all__ = ["BatchPlan", "ChunkResult", "commit_batch", "cut_chunks", "plan_batch", "read_output", "score_chunk"]


def __getattr__(name: str) -> Any:
    if name in {"BatchPlan", "cut_chunks", "plan_batch"}:
        from airflow_mlops.inference import plan

        return getattr(plan, name)
    if name in {"ChunkResult", "commit_batch", "read_output", "score_chunk"}:
        from airflow_mlops.inference import score

        return getattr(score, name)
    raise AttributeError(name)
