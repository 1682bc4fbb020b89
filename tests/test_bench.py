"""The benchmark (bench/tokens.py) stays runnable: its modules import and `--help` works.

Nothing here measures anything; the benchmark itself is run by hand (see docs/performance.md).
"""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    yield
    for name in ("tokens", "harness", "report", "floors", "apple"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("module", ["harness", "report", "floors", "apple", "tokens"])
def test_bench_modules_import(bench_path, module):
    importlib.import_module(module)


def test_bench_lua_scripts_exist():
    for script in ("bodies.lua", "chain.lua"):
        assert (BENCH / script).is_file()


def test_tokens_help():
    done = subprocess.run([sys.executable, str(BENCH / "tokens.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--quick" in done.stdout
    assert "docs/performance.md" in done.stdout
