"""gunicorn.conf.py: production defaults, environment overrides, refusal of bad values."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest

CONF = str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py")


def load(monkeypatch, **env: str) -> dict:
    for name in ("GUNICORN_WORKERS", "WEB_CONCURRENCY", "GUNICORN_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(CONF)


def test_defaults(monkeypatch):
    conf = load(monkeypatch)
    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("gthread", 4, 16)
    assert conf["preload_app"] is False


def test_environment_overrides(monkeypatch):
    conf = load(monkeypatch, GUNICORN_WORKERS="2", GUNICORN_THREADS="8")
    assert (conf["workers"], conf["threads"]) == (2, 8)


@pytest.mark.parametrize(("name", "value"), [("GUNICORN_THREADS", "0"),
                                             ("GUNICORN_WORKERS", "four")])
def test_bad_values_stop_with_the_name(monkeypatch, name, value):
    with pytest.raises(SystemExit, match=name):
        load(monkeypatch, **{name: value})
