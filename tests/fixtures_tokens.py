"""Fixtures for this area (pulled in by conftest.pytest_plugins)."""
