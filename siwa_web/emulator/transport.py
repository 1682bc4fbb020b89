"""Let the app's Apple client reach a mounted emulator in-process instead of over HTTP.

Without it a sign-in would make the server call itself, which deadlocks a single sync worker.
"""
from __future__ import annotations

from urllib.parse import urlsplit

import requests
from flask import Flask
from requests.adapters import BaseAdapter
from werkzeug.test import Client


class WSGIAdapter(BaseAdapter):
    """A requests transport that hands each request to a WSGI app under `prefix`."""

    def __init__(self, wsgi_app: Flask, prefix: str) -> None:
        super().__init__()
        self.wsgi_app = wsgi_app
        self.prefix = prefix.rstrip("/")

    def send(self, request: requests.PreparedRequest, **_kwargs) -> requests.Response:
        parts = urlsplit(request.url)
        path = parts.path[len(self.prefix):] if parts.path.startswith(self.prefix) else parts.path
        answer = Client(self.wsgi_app).open(
            path or "/", method=request.method, query_string=parts.query,
            headers=dict(request.headers), data=request.body,
            base_url=f"{parts.scheme}://{parts.netloc}{self.prefix}",
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response.headers.update(answer.headers)
        response._content = answer.get_data()
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        """Nothing to release."""
