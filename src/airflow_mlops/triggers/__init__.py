"""Airflow triggers of airflow-mlops (they run in the triggerer)."""
