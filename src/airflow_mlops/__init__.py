"""airflow-mlops: Airflow 3 operators and DAG templates for tabular ML."""

__version__ = "0.1.0"
