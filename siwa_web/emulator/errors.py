"""Apple's error bodies and JSON headers, so every endpoint answers the same way Apple does."""
from __future__ import annotations

import json
from typing import Any

from flask import Response

JSON_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
JSON_TYPE = "application/json;charset=UTF-8"


class AppleError(Exception):
    """An OAuth error as Apple reports it: `{"error": .., "error_description": ..}` with a 400."""

    def __init__(self, error: str, description: str | None = None, status: int = 400) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """Apple omits `error_description` when it has nothing to add."""
        out = {"error": self.error}
        if self.description:
            out["error_description"] = self.description
        return out

    def response(self) -> Response:
        return apple_json(self.body(), self.status)


def apple_json(body: Any, status: int = 200, no_store: bool = True) -> Response:
    """Compact JSON with Apple's exact content type and no-cache headers (TN3107)."""
    text = json.dumps(body, separators=(",", ":"))
    headers = JSON_HEADERS if no_store else {}
    return Response(text, status=status, content_type=JSON_TYPE, headers=headers)
