"""gunicorn.conf.py: production defaults, environment overrides, refusal of bad values."""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

CONF = str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py")


def load(monkeypatch, **env: str) -> dict:
    for name in ("GUNICORN_WORKERS", "WEB_CONCURRENCY", "GUNICORN_THREADS",
                 "GUNICORN_SWITCH_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(CONF)


def test_defaults(monkeypatch):
    conf = load(monkeypatch)
    assert (conf["worker_class"], conf["workers"], conf["threads"]) == ("gthread", 4, 16)
    assert conf["switch_interval"] == 0.0005 and conf["preload_app"] is False


def test_each_worker_gets_the_switch_interval(monkeypatch):
    conf = load(monkeypatch, GUNICORN_SWITCH_INTERVAL="0.002")
    before = sys.getswitchinterval()
    try:
        conf["post_fork"](None, None)
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)


@pytest.mark.parametrize(("name", "value"), [
    ("GUNICORN_SWITCH_INTERVAL", "fast"), ("GUNICORN_SWITCH_INTERVAL", "0"),
    ("GUNICORN_THREADS", "0"), ("GUNICORN_WORKERS", "four"),
])
def test_bad_values_stop_with_the_name(monkeypatch, name, value):
    with pytest.raises(SystemExit, match=name):
        load(monkeypatch, **{name: value})
