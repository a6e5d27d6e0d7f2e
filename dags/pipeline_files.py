"""Shows a broken pipeline file as this file's DAG import error, naming file, field and expectation.

The three templates skip a broken file so the other pipelines keep running;
this file makes the problem visible in the Airflow UI's import errors.
"""

from airflow_mlops import dag_factory

dag_factory.raise_for_broken_pipeline_files(__file__)
