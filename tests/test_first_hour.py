"""A newcomer's first hour, scripted in real Chromium: `make run`, the wrong host, the emulator,
the dashboard, a replayed callback, a restart, a bookmarked callback, signing out.

The app starts as `make run` starts it: development, SQLite in an instance folder (here a
temporary one), `flask db upgrade`, no Apple credentials so the emulator is mounted at /__apple,
ISSUER on localhost. The browser first opens 127.0.0.1, as people do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
import requests
from sqlalchemy import select

from siwa_web import create_app
from siwa_web.infra.extensions import db
from siwa_web.models import User
from siwa_web.models import WebSession
from support.web import _Server

pytestmark = pytest.mark.browser


@dataclass
class Running:
    """One `make run`: the app and the server it listens on."""

    app: object
    server: _Server

    def stop(self) -> None:
        self.server.stop()
        self.server.server.server_close()  # free the port for the restart
        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()


def make_run(instance: Path, port: int, server: _Server | None, private_key: str) -> Running:
    """What `make run` does: migrate, then serve the development app on ISSUER's port."""
    config = {
        "ISSUER": f"http://localhost:{port}",
        "SECRET_KEY": "first-hour-secret",  # make run generates it into instance/ once
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance / 'siwa.sqlite'}",
        "EMULATOR_STATE_FILE": str(instance / "emulator-state.sqlite"),
        # make run generates instance/emulator-apple-key.p8 and turns the emulator on because
        # no Apple credentials are configured; a given key counts as one, so say it outright
        "APPLE_PRIVATE_KEY": private_key,
        "APPLE_EMULATOR": True,
    }
    app = create_app(config)
    assert app.config["APPLE_EMULATOR"] and app.config["ENV"] == "development"
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    server = server or _Server(port=port)
    server.serve(app)
    return Running(app, server)


def users(app) -> list[User]:
    with app.app_context():
        return list(db.session.scalars(select(User)))


def test_first_hour(tmp_path, chromium, apple_private_key_pem, artifacts):
    instance = tmp_path / "instance"
    instance.mkdir()
    first_server = _Server()
    port = first_server.port
    issuer = f"http://localhost:{port}"
    run = make_run(instance, port, first_server, apple_private_key_pem)
    # someone tried the emulator before: a test user exists, and is preselected
    created = requests.post(f"{issuer}/__apple/__emulator/users", timeout=10,
                            json={"email": "first@example.com", "first_name": "First",
                                  "last_name": "User"})
    assert created.status_code == 201

    context = chromium.new_context()
    page = context.new_page()
    callbacks: list[dict[str, str]] = []
    page.on("request", lambda r: callbacks.append(dict(parse_qsl(r.post_data or "")))
            if r.method == "POST" and r.url == f"{issuer}/auth/apple/callback" else None)

    # 1. the wrong host: sent to ISSUER's, where the sign-in cookie must live
    page.goto(f"http://127.0.0.1:{port}/")
    assert page.url == f"{issuer}/auth/login"

    # 2. sign in with a new emulator user, typed in while another user is preselected
    page.get_by_role("link", name="Sign in with Apple").click()
    page.wait_for_url(f"{issuer}/__apple/auth/authorize?**")
    assert page.get_by_label(re.compile("First User")).is_checked()
    assert "Sign in to siwa-web" in page.locator("main").inner_text()  # the app's name
    page.get_by_label("First name").fill("Maria")
    page.get_by_label("Last name").fill("Ruiz")
    page.get_by_label("Email").fill("maria@example.com")
    assert page.get_by_label(re.compile("New test user")).is_checked()
    page.get_by_role("button", name="Continue").click()
    assert "siwa-web asks for your" in page.locator("main").inner_text()
    assert "com.example.siwa.web" not in page.content()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{issuer}/dashboard")

    # 3. the dashboard: the new user, this browser's row with its Sign out button
    assert "Maria Ruiz" in page.locator("main").inner_text()
    [maria] = users(run.app)
    assert maria.email == "maria@example.com"
    sessions = page.locator("#web-sessions")
    assert "This browser" in sessions.inner_text()
    assert sessions.get_by_role("button", name="Sign out this browser").is_visible()
    page.screenshot(path=str(artifacts / "first-hour-dashboard.png"), full_page=True)

    # 4. Apple's answer posted again (Back and resubmit): advice for a signed-in browser
    [answer] = callbacks
    page.evaluate("""([action, fields]) => {
        const form = document.createElement("form");
        form.method = "post"; form.action = action;
        for (const [name, value] of Object.entries(fields)) {
            const input = document.createElement("input");
            input.type = "hidden"; input.name = name; input.value = value;
            form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();
    }""", [f"{issuer}/auth/apple/callback", answer])
    page.wait_for_load_state()
    main = page.locator("main").inner_text()
    assert "This sign-in attempt is no longer valid" in main
    assert "You are already signed in" in main and "Start again" not in main
    assert page.get_by_role("link", name="Back to your account").is_visible()

    # 5. sign out with this browser's own row, then restart `make run`
    page.goto(f"{issuer}/dashboard")
    page.locator("#web-sessions").get_by_role("button", name="Sign out this browser").click()
    page.wait_for_url(f"{issuer}/auth/login")
    run.stop()
    run = make_run(instance, port, None, apple_private_key_pem)

    # 6. the same emulator user after the restart: the same siwa-web account
    page.get_by_role("link", name="Sign in with Apple").click()
    page.wait_for_url(f"{issuer}/__apple/auth/authorize?**")
    page.get_by_label(re.compile("Maria Ruiz")).check()
    page.get_by_role("button", name="Continue").click()  # Apple remembers: no consent page
    page.wait_for_url(f"{issuer}/dashboard")
    assert "Maria Ruiz" in page.locator("main").inner_text()
    assert [u.id for u in users(run.app)] == [maria.id]

    # 7. the callback from a bookmark: siwa-web's page, not "Method Not Allowed"
    page.goto(f"{issuer}/auth/apple/callback")
    main = page.locator("main").inner_text()
    assert "only receives Apple's answer" in main and "You are already signed in" in main
    assert "Method Not Allowed" not in page.content()
    assert re.search(r"Reference: [0-9A-F]{8}", main)

    # 8. sign out
    page.goto(f"{issuer}/dashboard")
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(f"{issuer}/auth/login")
    with run.app.app_context():
        rows = db.session.scalars(select(WebSession)).all()
    assert len(rows) == 2 and all(r.revoked_at is not None for r in rows)
    context.close()
    run.stop()
