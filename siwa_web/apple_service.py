"""Placeholder: filled in by the work on this area."""
from flask import Flask


def init_app(app: Flask) -> None:
    """Nothing to wire yet."""
