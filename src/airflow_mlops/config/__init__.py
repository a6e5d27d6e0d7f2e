"""Pipeline configuration: the pydantic schema of a pipeline file and its loader."""

from airflow_mlops.config.loader import (
    LoadedPipelines,
    load_pipeline_config,
    load_pipeline_configs,
    parse_pipeline_config,
)
from airflow_mlops.config.schema import (
    DataConfig,
    DriftConfig,
    EvaluationConfig,
    InferenceConfig,
    ModelConfig,
    PipelineConfig,
    PromotionConfig,
    ValidationConfig,
    pipeline_json_schema,
)

__all__ = [
    "DataConfig",
    "DriftConfig",
    "EvaluationConfig",
    "InferenceConfig",
    "LoadedPipelines",
    "ModelConfig",
    "PipelineConfig",
    "PromotionConfig",
    "ValidationConfig",
    "load_pipeline_config",
    "load_pipeline_configs",
    "parse_pipeline_config",
    "pipeline_json_schema",
]
