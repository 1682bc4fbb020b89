"""scripts/check_port.py: `make run` says a port is busy (and how to choose another) up front."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_port.py"


def check(host: str, port: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), host, port], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def busy_port():
    """A port some other program listens on, as a second `make run` would find it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_busy_port_is_named_with_the_way_out(busy_port):
    result = check("127.0.0.1", str(busy_port))
    assert result.returncode == 1
    assert f"port {busy_port} on 127.0.0.1 is already in use" in result.stderr
    assert "make run PORT=5050" in result.stderr
    assert result.stdout == ""


def test_a_busy_port_on_localhost_too(busy_port):
    """`localhost` is what `make run` uses: the dev server binds it as IPv4, as the check does."""
    result = check("localhost", str(busy_port))
    assert result.returncode == 1 and "already in use" in result.stderr


def test_a_free_port_passes():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = check("127.0.0.1", str(port))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize(("port", "message"), [
    ("abc", "is not a number"),
    ("99999", "out of range"),
    ("0", "out of range"),
])
def test_a_bad_port_value_is_refused(port, message):
    result = check("127.0.0.1", port)
    assert result.returncode == 1
    assert message in result.stderr and "make run PORT=5050" in result.stderr


def test_make_run_checks_the_port_before_announcing_the_url():
    recipe = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30).stdout.splitlines()
    check_line = next(i for i, line in enumerate(recipe) if "scripts/check_port.py" in line)
    url_line = next(i for i, line in enumerate(recipe) if "open http://" in line)
    assert check_line < url_line
    assert recipe[check_line].endswith("check_port.py localhost 5000")
