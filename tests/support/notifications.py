"""Apple server-to-server notifications as Apple sends them, signed by the fake Apple."""
from __future__ import annotations

import json
import time
import uuid

from support.apple import REMOVE

URL = "/apple/notifications"


def notification(fake_apple, type_: str, sub: str, *, events=None, **claims) -> str:
    """An Apple-shaped notification JWS: `events` is a JSON string, event_time in ms."""
    now = int(time.time())
    if events is None:
        events = json.dumps({"type": type_, "sub": sub, "event_time": now * 1000,
                             "email": fake_apple.relay_email(sub), "is_private_email": "true"})
    body = {"aud": fake_apple.SERVICES_ID, "iat": now, "exp": now + 86400,
            "jti": uuid.uuid4().hex, "events": events, "sub": REMOVE, "email": REMOVE,
            "email_verified": REMOVE, "is_private_email": REMOVE, "auth_time": REMOVE}
    body.update(claims)
    return fake_apple.mint_id_token(**body)


def deliver(client, token: str):
    return client.post(URL, json={"payload": token})
