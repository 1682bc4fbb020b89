"""The benchmark (bench/tokens.py) stays runnable: its modules import and `--help` works.

Nothing here measures anything; the benchmark itself is run by hand (see docs/performance.md).
"""
from __future__ import annotations

import importlib
import os
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


def test_worker_threads_counts_each_childs_threads(bench_path):
    """The thread counts the benchmark reports come from /proc, per child of the master."""
    import types

    harness = importlib.import_module("harness")
    script = ("import sys, threading, time\n"
              "for _ in range(3):\n"
              "    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
              "print('ready', flush=True); sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        master = types.SimpleNamespace(proc=types.SimpleNamespace(pid=os.getpid()))
        assert 4 in harness.worker_threads(master)  # three started + the main thread
        assert harness.worker_threads(types.SimpleNamespace(proc=None)) == []
    finally:
        child.communicate("\n", timeout=10)
