"""Every `flask` command of siwa-web refuses bad input with a message that names the problem, a
non-zero exit and nothing stored; and its --help says what it does and which settings it reads.
"""
from __future__ import annotations

import click
import pytest
from cryptography.fernet import Fernet

import siwa_web.settings
from support.config import SERVICES_ID
from support.config import TEAM_ID
from support.config import count_rows

EXISTING_BUNDLE = "com.example.existing"
# (arguments, exit code, what the message must say, settings to change first)
BAD_INPUT = {
    # flask clients
    "create: bundle id is the web Services ID": (
        ["clients", "create", "--name", "X", "--bundle-id", SERVICES_ID], 2,
        "is the web sign-in's services id (apple_services_id)", {}),
    "create: Services ID in other case": (
        ["clients", "create", "--name", "X", "--bundle-id", SERVICES_ID.upper()], 2,
        "services id", {}),
    "create: bundle id differs only in case": (
        ["clients", "create", "--name", "X", "--bundle-id", "COM.Example.Existing"], 2,
        "already exists (as com.example.existing: case differs)", {}),
    "create: audience not a URI": (
        ["clients", "create", "--name", "X", "--bundle-id", "com.example.x", "--audience",
         "notaurl"], 2, "audience 'notaurl' must be an api identifier: an absolute uri", {}),
    "create: audience http without host": (
        ["clients", "create", "--name", "X", "--bundle-id", "com.example.x", "--audience",
         "https:///api"], 2, "with a host", {}),
    "create: audience with fragment": (
        ["clients", "create", "--name", "X", "--bundle-id", "com.example.x", "--audience",
         "https://api.example.com/#v1"], 2, "without a fragment", {}),
    "create: --scope openid (native)": (
        ["clients", "create", "--name", "X", "--bundle-id", "com.example.x", "--scope",
         "openid"], 2, "scope 'openid' is an openid scope", {}),
    "create: --scope offline_access (web)": (
        ["clients", "create", "--type", "web", "--name", "X", "--redirect-uri",
         "https://app.example.com/cb", "--scope", "offline_access"], 2,
        "scope 'offline_access' is an openid scope", {}),
    "create: web without redirect URI": (
        ["clients", "create", "--type", "web", "--name", "X"], 2, "--redirect-uri", {}),
    "create: native with a web option": (
        ["clients", "create", "--name", "X", "--bundle-id", "com.example.x", "--public"], 2,
        "--public: only for --type web", {}),
    "create: unknown type": (
        ["clients", "create", "--type", "desktop", "--name", "X"], 2,
        "'desktop' is not one of 'native', 'web'", {}),
    "rotate-secret: unknown client": (
        ["clients", "rotate-secret", "cli_nosuchclient"], 2, "no client with id cli_nosuch", {}),
    "disable: unknown client": (
        ["clients", "disable", "cli_nosuchclient"], 1, "no client with id cli_nosuchclient", {}),
    "enable: unknown client": (
        ["clients", "enable", "cli_nosuchclient"], 1, "no client with id cli_nosuchclient", {}),
    "delete: unknown client": (
        ["clients", "delete", "cli_nosuchclient", "--yes"], 1, "no client with id", {}),
    "disable: no client id": (["clients", "disable"], 2, "missing argument 'client_id'", {}),
    # flask keys
    "keys rotate: stray argument": (["keys", "rotate", "now"], 2, "unexpected extra argument",
                                    {}),
    "keys list: stray option": (["keys", "list", "--all"], 2, "no such option '--all'", {}),
    # flask users
    "users find: nothing selected": (["users", "find"], 2, "nothing selected", {}),
    "users find: not an email": (["users", "find", "--email", "nobody"], 2,
                                 "is not an email address", {}),
    "users show: unknown id": (["users", "show", "nosuchuser"], 1, "unknown user id", {}),
    "users delete: unknown id": (["users", "delete", "nosuchuser", "--yes"], 1,
                                 "unknown user id", {}),
    # flask outbox, flask apple
    "outbox retry: --limit 0": (["outbox", "retry", "--limit", "0"], 2,
                                "0 is not in the range x>=1", {}),
    "outbox retry: --limit text": (["outbox", "retry", "--limit", "all"], 2,
                                   "'all' is not a valid integer", {}),
    "apple retry-revocations: --limit -5": (["apple", "retry-revocations", "--limit", "-5"], 2,
                                            "-5 is not in the range x>=1", {}),
    "apple transfer export: malformed team": (
        ["apple", "transfer", "export", "--target-team", "TEAM"], 2,
        "invalid value for --target-team: a team id is 10 characters", {}),
    "apple transfer export: the current team": (
        ["apple", "transfer", "export", "--target-team", TEAM_ID], 2,
        "that is the configured (current) team", {}),
    "apple doctor: stray argument": (["apple", "doctor", "now"], 2,
                                     "unexpected extra argument", {}),
    # flask prune
    "prune: PRUNE_AFTER_DAYS 0": (["prune"], 2, "prune_after_days (siwa_prune_after_days) must "
                                  "be at least 1 day", {"PRUNE_AFTER_DAYS": 0}),
    "prune: PRUNE_AFTER_DAYS text": (["prune"], 2, "must be a whole number of days, got '30d'",
                                     {"PRUNE_AFTER_DAYS": "30d"}),
    "prune: AUDIT_RETENTION_DAYS negative": (["prune", "--dry-run"], 2,
                                             "audit_retention_days", {"AUDIT_RETENTION_DAYS": -1}),
    "prune: stray argument": (["prune", "everything"], 2, "unexpected extra argument", {}),
    # flask emulator
    "emulator run: --port 99999": (["emulator", "run", "--port", "99999"], 2,
                                   "99999 is not in the range 1<=x<=65535", {}),
    "emulator run: --port 0": (["emulator", "run", "--port", "0"], 2,
                               "0 is not in the range 1<=x<=65535", {}),
    "emulator run: --port text": (["emulator", "run", "--port", "http"], 2,
                                  "'http' is not a valid integer", {}),
    "emulator run: --host unresolvable": (["emulator", "run", "--host", "no host!"], 2,
                                          "invalid value for --host: 'no host!' is not an "
                                          "address", {}),
    "emulator run: production": (["emulator", "run"], 2, "for development only",
                                 {"ENV": "production"}),
}


@pytest.fixture
def existing_client(app, runner):
    result = runner.invoke(args=["clients", "create", "--name", "Existing", "--bundle-id",
                                 EXISTING_BUNDLE])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_is_refused_with_its_reason_and_nothing_stored(request, app_config, case):
    args, exit_code, message, settings = BAD_INPUT[case]
    app_config.update(settings)
    if settings.get("ENV") == "production":
        app_config["TOKEN_ENCRYPTION_KEYS"] = [Fernet.generate_key().decode()]
    app = request.getfixturevalue("app")
    request.getfixturevalue("existing_client")
    runner = app.test_cli_runner()
    before = count_rows(app)
    result = runner.invoke(args=args)
    after = count_rows(app)
    assert result.exit_code == exit_code, result.output
    assert message in " ".join(result.output.lower().split()), result.output
    assert "Traceback" not in result.output
    before.pop("audit_events")  # refusals are audited (flask users)
    after.pop("audit_events")
    assert after == before


SETTINGS = {name for name in vars(siwa_web.settings) if name.isupper()}
GROUPS = ("clients", "keys", "users", "outbox", "apple", "emulator")


def _leaves(command: click.Command, words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every runnable command under `words` (a group's commands, at any depth)."""
    if not isinstance(command, click.Group):
        return [words]
    return [leaf for name, sub in command.commands.items() for leaf in _leaves(sub, (*words, name))]


def _commands(app) -> list[tuple[str, ...]]:
    found = [("prune",)]
    for group in GROUPS:
        command = app.cli.commands[group]
        assert isinstance(command, click.Group), group
        found += _leaves(command, (group,))
    return found


def test_every_command_says_what_it_does_and_which_settings_it_reads(app):
    runner = app.test_cli_runner()
    commands = _commands(app)
    assert ("clients", "disable") in commands and ("clients", "enable") in commands
    for words in commands:
        result = runner.invoke(args=[*words, "--help"])
        assert result.exit_code == 0, (words, result.output)
        text = result.output
        summary = text.split("\n\n")[1].strip()
        assert len(summary) > 20, (words, summary)
        named = {word.strip(".,;:()`'\"") for word in text.split()} & SETTINGS
        assert named, f"flask {' '.join(words)} --help names no setting it reads"
