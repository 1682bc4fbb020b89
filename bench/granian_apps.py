"""WSGI factories for serving the benchmark's apps with granian (`bench/tokens.py --servers`).

granian imports its target in every worker it starts and has no hook that runs there (its hooks
run in the main process only), so the worker-side set-up gunicorn.conf.py's `post_worker_init`
does — `gc.freeze()` once the app is loaded — happens here, in the factory each worker calls.
Without it the two servers would be compared with different garbage-collector work per request.
"""
from __future__ import annotations

import gc
from typing import Any


def _frozen(app: Any) -> Any:
    """Everything loaded so far is kept out of the collector's sight, as under gunicorn."""
    gc.collect()
    gc.freeze()
    return app


def siwa() -> Any:
    """siwa-web itself, as `app:app` (the module gunicorn serves)."""
    from app import app

    return _frozen(app)


def floors() -> Any:
    """The floor endpoints of bench/floors.py."""
    import floors as floor_module

    return _frozen(floor_module.create_app())
