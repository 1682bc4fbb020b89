"""scripts/lower_bounds.py: the pins `make test-lowest` installs."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lower_bounds():
    spec = importlib.util.spec_from_file_location("lower_bounds",
                                                  ROOT / "scripts" / "lower_bounds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("requirement", "pin"), [
    ("flask>=3.1", "flask==3.1"),
    ("psycopg[binary]>=3.2.1", "psycopg[binary]==3.2.1"),
    ("pyjwt[crypto] >= 2.10.1", "pyjwt[crypto]==2.10.1"),
])
def test_pins_the_lower_bound(lower_bounds, requirement, pin):
    assert lower_bounds.pinned(requirement) == pin


@pytest.mark.parametrize("requirement", [
    "flask", "flask<4", "flask>=3.1,<4", "flask==3.1", "flask>=3.1; python_version<'3.12'", "",
])
def test_refuses_what_has_no_plain_lower_bound(lower_bounds, requirement):
    with pytest.raises(ValueError):
        lower_bounds.pinned(requirement)


def test_every_dependency_has_a_lower_bound(lower_bounds):
    pins = lower_bounds.lower_bounds(ROOT / "pyproject.toml")
    names = {p.split("==")[0].split("[")[0] for p in pins}
    assert {"flask", "joserfc", "gunicorn", "sqlalchemy", "pytest"} <= names
    assert "joserfc==1.5.0" in pins  # the first release siwa-web runs on (see pyproject.toml)
