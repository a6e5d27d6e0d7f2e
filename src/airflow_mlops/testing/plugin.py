"""The pytest plugin (`pytest11` entry point `airflow_mlops`): with the `testing` extra installed,
pytest offers the S3 and PostgreSQL fixtures to any test suite, no `pytest_plugins` line needed.
Turn it off with `-p no:airflow_mlops`."""

pytest_plugins = ["airflow_mlops.testing.s3", "airflow_mlops.testing.postgres"]
