"""siwa-web with a statement recorder, for bench/explain.py: `gunicorn recorder:create_app()`.

The real app, unchanged, plus a SQLAlchemy `before_cursor_execute` listener that appends every
statement it sends, with its parameters and the request that sent it, to the pickle file named
by BENCH_RECORD_FILE. Run it with one worker: the file is appended under a thread lock.
"""
from __future__ import annotations

import os
import pickle
import threading
from typing import Any

from flask import Flask
from flask import has_request_context
from flask import request
from sqlalchemy import event
from sqlalchemy.engine import Engine


def attach(engine: Engine, path: str, label: str | None = None) -> None:
    """Append (label, statement, parameters, executemany) to `path` for every statement."""
    lock = threading.Lock()

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        where = label
        if where is None and has_request_context():
            where = f"{request.method} {request.path}"
        with lock, open(path, "ab") as out:
            pickle.dump((where or "?", statement, parameters, executemany), out)

    event.listen(engine, "before_cursor_execute", record)


def read(path: str) -> list[tuple[str, str, Any, bool]]:
    """Every record of a file written by `attach`, in order."""
    found = []
    with open(path, "rb") as src:
        while True:
            try:
                found.append(pickle.load(src))
            except EOFError:
                return found


def create_app() -> Flask:
    from siwa_web import create_app as make
    from siwa_web.infra.extensions import db

    app = make()
    with app.app_context():
        attach(db.engine, os.environ["BENCH_RECORD_FILE"])
    return app
