"""What Apple's lifecycle events look like to the person: relay forwarding on the identity card,
and the one check mail senders use (`users.accounts.deliverable_email`)."""
from __future__ import annotations

from sqlalchemy import select

from siwa_web.infra.extensions import db
from siwa_web.models import User
from siwa_web.users.accounts import deliverable_email
from support.dashboard import SUB_A
from support.dashboard import Browser
from support.dashboard import section
from support.notifications import deliver
from support.notifications import notification


def address(app) -> str | None:
    with app.app_context():
        return deliverable_email(db.session.scalars(select(User)).one())


def test_relay_forwarding_off_shows_on_the_card_and_stops_mail(app, fake_apple):
    browser = Browser(app, fake_apple).sign_in(SUB_A)
    relay = fake_apple.relay_email(SUB_A)
    card = section(browser.page(), "apple-ids")
    assert "Relay forwarding" not in card  # Apple has told us nothing yet
    assert address(app) == relay
    assert deliver(app.test_client(),
                   notification(fake_apple, "email-disabled", SUB_A)).status_code == 200
    card = section(browser.page(), "apple-ids")
    assert "Relay forwarding off" in card and "sends it no mail" in card
    assert address(app) is None
    assert "Apple relay forwarding was turned off" in browser.page("/dashboard/activity")
    assert deliver(app.test_client(),
                   notification(fake_apple, "email-enabled", SUB_A)).status_code == 200
    assert "Relay forwarding on" in section(browser.page(), "apple-ids")
    assert address(app) == relay


def test_a_new_address_at_sign_in_is_deliverable_again(app, fake_apple):
    browser = Browser(app, fake_apple).sign_in(SUB_A)
    deliver(app.test_client(), notification(fake_apple, "email-disabled", SUB_A))
    assert address(app) is None
    browser.sign_in(SUB_A)  # the same relay address: still off
    assert address(app) is None
    browser.sign_in(SUB_A, email="maria@example.com", is_private_email=False)
    assert address(app) == "maria@example.com"


def test_an_account_without_email_has_no_deliverable_address(app, fake_apple):
    Browser(app, fake_apple).sign_in(SUB_A, email=fake_apple.REMOVE)
    assert address(app) is None
