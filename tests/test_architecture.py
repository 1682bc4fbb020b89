"""The layout's rules, enforced: import-linter's contracts hold, and they catch a violation.

The contracts live in pyproject.toml ([tool.importlinter]); README "How it is built" explains
the packages they keep apart.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "siwa_web"
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
CORE = ("siwa_web.oauth", "siwa_web.apple", "siwa_web.models")
AUDIENCES = ("account", "ops", "provider", "web", "tokens", "lifecycle", "users", "infra",
             "oauth", "apple", "models", "emulator")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_every_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def scratch_copy(tmp_path_factory) -> Path:
    """siwa_web and its contracts in a scratch folder, to plant violations in."""
    base = tmp_path_factory.mktemp("layout")
    shutil.copytree(PACKAGE, base / "siwa_web", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    return base


@pytest.mark.parametrize("module, planted, contract", [
    ("oauth/tokens.py", "import flask", "Flask-free"),
    ("apple/jwks.py", "from werkzeug import exceptions", "Flask-free"),
    ("oauth/refresh.py", "from ..users import audit", "layers"),
    ("users/audit.py", "from ..web import sessions", "layers"),
    ("web/views.py", "from ..lifecycle import pruning", "layers"),
    ("tokens/views.py", "from ..lifecycle import outbox", "layers"),
    ("infra/nostore.py", "from ..tokens import service", "infra is plumbing"),
    ("oauth/scopes.py", "from ..infra import extensions", "infra's Flask parts"),
    ("emulator/keys.py", "from ..oauth import tokens", "emulator stands apart"),
    ("tokens/extension.py", "def _late():\n    from . import service", "No import cycles"),
    ("ops/health.py", "from ..account import cards", "layers"),
    ("infra/logs.py", "from ..ops import health", "infra is plumbing"),
])
def test_a_planted_violation_breaks_its_contract(scratch_copy, module, planted, contract):
    path = scratch_copy / "siwa_web" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n" + planted + "\n")
        result = lint_imports(scratch_copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout


def test_the_core_loads_without_flask():
    """Flask-free in fact, not only in the import graph: importing every core module at run
    time loads neither Flask nor Werkzeug nor a Flask extension."""
    code = (
        "import importlib, pkgutil, sys\n"
        f"for name in {CORE!r}:\n"
        "    pkg = importlib.import_module(name)\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, name + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in\n"
        "      ('flask', 'werkzeug', 'flask_sqlalchemy', 'flask_login', 'flask_wtf',\n"
        "       'flask_limiter', 'flask_migrate')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_top_level_keeps_only_the_factory_config_and_settings():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert modules == ["__init__.py", "config.py", "settings.py"]
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(AUDIENCES)


@pytest.mark.parametrize("package", AUDIENCES)
def test_each_package_says_whom_it_serves_in_one_line(package):
    docstring = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert docstring, f"siwa_web/{package} has no docstring"
    summary = docstring.strip().split("\n\n")[0]
    assert "\n" not in summary, f"siwa_web/{package}: say whom it serves in one line"
