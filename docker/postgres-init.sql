-- Airflow's metadata lives in the database POSTGRES_DB names; the model registry gets its own.
CREATE DATABASE mlops_registry OWNER airflow;
