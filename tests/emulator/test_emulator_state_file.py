"""The state file: Apple's users, consents, refresh tokens and keys survive a restart, several
processes share it, and `flask emulator reset` clears it."""
from __future__ import annotations

import dataclasses
import sqlite3
import stat
import threading

import pytest

from siwa_web import create_app
from siwa_web.emulator import create_emulator_app
from siwa_web.emulator import settings_from_app
from support.emulator import Emu
from support.emulator import form_fields


@pytest.fixture
def state_path(tmp_path):
    return tmp_path / "instance" / "emulator-state.sqlite"


@pytest.fixture
def start(settings, team_key, state_path):
    """Start an emulator on the state file, as `make run` does after each restart."""

    def started() -> Emu:
        app = create_emulator_app(dataclasses.replace(settings, state_file=state_path))
        return Emu(app.test_client(), team_key)

    return started


def users(emu: Emu) -> list[dict]:
    return emu.admin("users", method="GET").get_json()["users"]


def kids(emu: Emu) -> list[str]:
    return [k["kid"] for k in emu.client.get("/auth/keys").get_json()["keys"]]


def test_a_restart_keeps_users_subs_consents_tokens_and_keys(start, state_path):
    first = start()
    fields = first.fields(email="maria@example.com")
    [maria] = users(first)
    tokens = first.redeem(fields["code"]).get_json()
    assert tokens["refresh_token"]

    again = start()  # a new process on the same file
    assert users(again) == users(first)
    assert kids(again) == kids(first)
    # the same person again: no consent page (Apple remembers), the same sub, a verifiable token
    page = again.authorize().get_data(as_text=True)
    resp = again.submit(page, action="continue", account=maria["id"])
    token = form_fields(resp.get_data(as_text=True))["id_token"]
    assert again.verify(token).claims["sub"] == maria["sub"]
    # the refresh token Apple issued before the restart still works
    refreshed = again.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600  # refresh tokens and private keys


def test_what_stays_in_memory_is_forgotten(start):
    first = start()
    code = first.fields()["code"]
    assert first.admin("clock", {"offset": 100}).get_json()["offset"] == 100
    again = start()
    assert again.redeem(code).get_json()["error"] == "invalid_grant"  # codes are not kept
    assert again.admin("clock", method="GET").get_json()["offset"] == 0


def test_two_processes_see_each_others_users(start):
    one, two = start(), start()
    assert users(two) == []
    created = one.user("ana@example.com")
    assert [u["sub"] for u in users(two)] == [created["sub"]]
    two.user("ben@example.com")
    assert sorted(u["email"] for u in users(one)) == ["ana@example.com", "ben@example.com"]


def test_concurrent_sign_ups_are_all_saved(start):
    emu = start()
    errors: list[BaseException] = []

    def sign_up(n: int) -> None:
        try:
            client = emu.client.application.test_client()
            resp = client.post("/__emulator/users", json={"email": f"u{n}@example.com"})
            assert resp.status_code == 201
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(users(start())) == 12


def test_admin_reset_clears_the_file_but_keeps_the_keys(start):
    emu = start()
    emu.user()
    before = kids(emu)
    assert emu.admin("reset").status_code == 200
    again = start()
    assert users(again) == [] and kids(again) == before


@pytest.fixture
def dev_app(app_config, state_path):
    """siwa-web whose emulator keeps its state in the test's own instance-like folder."""
    return create_app(app_config | {"APPLE_EMULATOR": True,
                                    "EMULATOR_STATE_FILE": str(state_path)})


def test_cli_reset_clears_users_and_a_running_emulator_notices(dev_app, start):
    running = start()
    running.user("maria@example.com")
    keys = kids(running)
    result = dev_app.test_cli_runner().invoke(args=["emulator", "reset"])
    assert result.exit_code == 0, result.output
    assert "2 record(s) removed" in result.output  # the user and its consent row
    assert users(running) == []  # noticed at its next request, without a restart
    assert kids(running) == keys
    assert users(start()) == []


def test_cli_reset_keys_forgets_the_keys_too(dev_app, start, state_path):
    keys = kids(start())
    result = dev_app.test_cli_runner().invoke(args=["emulator", "reset", "--keys"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(state_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0
    assert not set(kids(start())) & set(keys)


def test_cli_reset_without_a_file(app_config, tmp_path):
    app = create_app(app_config | {"APPLE_EMULATOR": True,  # not mounted: nothing opened it
                                   "APPLE_BASE_URL": "http://127.0.0.1:5001",
                                   "EMULATOR_STATE_FILE": str(tmp_path / "none.sqlite")})
    result = app.test_cli_runner().invoke(args=["emulator", "reset"])
    assert result.exit_code == 0 and "Nothing to reset" in result.output
    assert not (tmp_path / "none.sqlite").exists()


def test_state_file_setting(app_config, tmp_path):
    def path_for(value):
        cfg = app_config | {"APPLE_EMULATOR": True}
        if value is not None:
            cfg["EMULATOR_STATE_FILE"] = value
        else:
            cfg.pop("EMULATOR_STATE_FILE")
        app = create_app(cfg)
        return settings_from_app(app).state_file, app.instance_path

    assert path_for("")[0] is None  # the test suite's default: memory only
    default, instance = path_for(None)
    assert str(default) == f"{instance}/emulator-state.sqlite"
    relative, instance = path_for("emu/state.sqlite")
    assert str(relative) == f"{instance}/emu/state.sqlite"
    assert path_for(str(tmp_path / "abs.sqlite"))[0] == tmp_path / "abs.sqlite"


def test_the_file_is_opened_at_the_first_request_only(dev_app, state_path):
    """Building the app (migrations, CLI commands, tests) writes no emulator state."""
    assert not state_path.exists()
    assert dev_app.test_client().get("/__apple/auth/keys").status_code == 200
    assert state_path.exists()
