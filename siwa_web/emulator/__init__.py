"""Placeholder: filled in by the emulator work."""
from flask import Flask


def init_app(app: Flask) -> None:
    """Nothing to wire yet."""
