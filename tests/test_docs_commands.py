"""The shell examples of README.md and docs/*.md run as written against a server like `make run`.

Every ```console, ```sh or ```bash block runs, in document order, against siwa-web on SQLite or
PostgreSQL with the Apple emulator mounted at /__apple, unless the line before it says why not:

    <!-- not-run: production only: needs the real Apple and a server of your own -->

Commands run from the repository as the docs write them (`.venv/bin/flask --app app …`; only
`.venv/bin/` and `http://localhost:5000` are replaced by this run's virtualenv and server), in
bash, each seeing the variables the previous ones set (`eval "$(… --export)"`). Each must exit
0; its answer must have the documented shape: the JSON printed under it (in a console block) or
in the ```json block right after the block — the same keys, and the same `error` if one is
documented — and a curl without a documented answer must not answer an error.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest

from siwa_web import create_app
from siwa_web.infra.extensions import db
from support.web import _Server

ROOT = Path(__file__).resolve().parent.parent
# docs/dashboard.md is rewritten on another branch; its two `flask --app app apple
# retry-revocations` lines need the `.venv/bin/` prefix before it can join.
PENDING: set[str] = set()  # docs not yet written to run as written (none)
DOCS = [ROOT / "README.md",
        *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in PENDING)]
SHELLS = {"console", "sh", "bash", "shell"}
NOT_RUN = re.compile(r"^<!-- not-run: (\S.*\S) -->$")
FENCE = re.compile(r"^( *)```(\S*)\s*$")  # also indented, inside a list item
VENV_BIN = Path(sys.executable).parent
DOCS_URL = "http://localhost:5000"


@dataclass
class Command:
    text: str
    line: int
    output: list[str] = field(default_factory=list)


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    commands: list[Command]
    skip_reason: str | None
    answer: str | None  # the ```json block right after, if any


def blocks(path: Path) -> list[Block]:
    """The shell blocks of one markdown file, with their commands and documented answers."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2), i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("```"))
        body = [line[indent:] if line[:indent].isspace() else line
                for line in lines[start + 1:end]]
        i = end + 1
        if lang not in SHELLS:
            continue
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()),
                      "")
        marker = NOT_RUN.match(before)
        after = i
        while after < len(lines) and not lines[after].strip():
            after += 1
        answer = None
        if after < len(lines) and lines[after].strip() == "```json":
            close = next(j for j in range(after + 1, len(lines))
                         if lines[j].lstrip().startswith("```"))
            answer = "\n".join(lines[after + 1:close])
        found.append(Block(path.name, start + 1, lang, _commands(lang, body, start + 2),
                           marker.group(1) if marker else None, answer))
    return found


def _commands(lang: str, body: list[str], first_line: int) -> list[Command]:
    """Console blocks: `$ ` lines are commands, the lines under them their output. Other
    blocks: every line is a command. A line ending in a backslash goes on."""
    commands: list[Command] = []
    open_command = False
    for n, line in enumerate(body, first_line):
        if open_command:
            commands[-1].text += "\n" + line
        elif lang == "console" and line.startswith("$ "):
            commands.append(Command(line[2:], n))
        elif lang != "console" and line.strip() and not line.lstrip().startswith("#"):
            commands.append(Command(line, n))
        elif lang == "console" and commands:
            commands[-1].output.append(line)
            continue
        elif lang == "console" and line.strip():
            raise AssertionError(f"line {n}: console output before any $ command")
        else:
            continue
        open_command = line.rstrip().endswith("\\")
    return commands


ALL_BLOCKS = [block for doc in DOCS for block in blocks(doc)]


def test_the_docs_have_runnable_examples():
    """The convention is in use: the native, API and web-app docs run, and nothing is hidden
    by a marker without a reason."""
    run = {b.doc for b in ALL_BLOCKS if b.skip_reason is None}
    assert {"native.md", "api-tokens.md", "web-apps.md"} <= run
    assert any("curl" in c.text for b in ALL_BLOCKS if b.skip_reason is None for c in b.commands)


def test_curl_examples_name_the_local_server():
    """A runnable curl example talks to `make run`'s server, not to an example host."""
    for block in ALL_BLOCKS:
        if block.skip_reason is not None:
            continue
        for command in block.commands:
            if "curl " in command.text:
                assert DOCS_URL in command.text, f"{block.doc}:{command.line}"


# --- running them ------------------------------------------------------------------------------


@pytest.fixture
def make_run_server(database_url, apple_private_key_pem, monkeypatch, tmp_path):
    """siwa-web as `make run` starts it: settings from SIWA_* variables, the emulator mounted
    at /__apple, on http://localhost:<port>; the same variables for the commands."""
    server = _Server()
    url = f"http://localhost:{server.port}"
    env = {
        "SIWA_SQLALCHEMY_DATABASE_URI": database_url,
        "SIWA_ISSUER": url,
        "SIWA_SECRET_KEY": "docs-test-secret",
        "SIWA_APPLE_EMULATOR": "true",
        "SIWA_APPLE_PRIVATE_KEY": apple_private_key_pem,
        "SIWA_BACKCHANNEL_LOGOUT_DELIVERY": "inline",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = create_app()
    server.serve(app)
    yield url, {**os.environ, **env, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    server.stop()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _run(command: str, url: str, env: dict[str, str], state: Path) -> subprocess.CompletedProcess:
    text = command.replace(".venv/bin/", f"{VENV_BIN}/").replace(DOCS_URL, url)
    script = (f"set -o pipefail\nsource {state}\n{text}\n"
              f"status=$?\nexport -p > {state}\nexit $status")
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def _same_shape(actual: object, documented: object) -> bool:
    if isinstance(documented, dict):
        if not isinstance(actual, dict) or set(actual) != set(documented):
            return False
        return "error" not in documented or actual.get("error") == documented["error"]
    if isinstance(documented, list):
        return isinstance(actual, list) and (not documented or (
            bool(actual) and _same_shape(actual[0], documented[0])))
    return True


def _check(block: Block, command: Command, result: subprocess.CompletedProcess,
           documented: str | None) -> None:
    where = f"{block.doc}:{command.line}"
    assert result.returncode == 0, f"{where} exited {result.returncode}: {result.stderr[-800:]}"
    out = result.stdout.strip()
    if documented is None:
        if "curl " in command.text:
            assert '"error"' not in out, f"{where} answered an error: {out[:300]}"
        return
    if documented.lstrip().startswith(("{", "[")):
        try:
            actual = json.loads(out)
        except ValueError:
            raise AssertionError(f"{where}: not JSON: {out[:300]!r}") from None
        assert _same_shape(actual, json.loads(documented)), (
            f"{where}: answered {out[:600]}\nbut the docs show {documented[:600]}")
    else:
        first = documented.strip().splitlines()[0].split()[:3]
        assert out.split()[:3] == first, f"{where}: answered {out[:300]!r}"


DOCS_WITH_RUNNABLE = sorted({b.doc for b in ALL_BLOCKS if b.skip_reason is None})


@pytest.mark.parametrize("doc", DOCS_WITH_RUNNABLE)
def test_the_examples_run_as_written(make_run_server, tmp_path, doc):
    url, env = make_run_server
    state = tmp_path / "shell-state"
    state.write_text("")
    for block in (b for b in ALL_BLOCKS if b.doc == doc and b.skip_reason is None):
        for n, command in enumerate(block.commands):
            result = _run(command.text, url, env, state)
            documented = "\n".join(command.output) if command.output else None
            if documented is None and n == len(block.commands) - 1:
                documented = block.answer
            _check(block, command, result, documented)
