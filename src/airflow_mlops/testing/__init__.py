"""Pytest fixtures and harnesses users can reuse to test their own pipelines."""
