"""The `declarations` fixture: tests that declare limits on siwa-web's limiter undo them after.

`siwa_web.infra.extensions.limiter` is one object for every app of the process, and a limit an
app declares on it (RATELIMIT_DEFAULT, RATELIMIT_APPLICATION, a blueprint limit) stays there.
"""
from __future__ import annotations

import copy

import pytest

from siwa_web.infra.extensions import limiter


@pytest.fixture
def declarations():
    """Undo what a test declares on siwa-web's limiter, whose state outlives each app."""
    saved = []
    for obj in (limiter, limiter.limit_manager):
        state = {}
        for name, value in vars(obj).items():
            if isinstance(value, dict):
                content = {k: copy.copy(v) for k, v in value.items()}
            elif isinstance(value, list | set):
                content = copy.copy(value)
            else:
                content = None
            state[name] = (value, content)
        saved.append((obj, state))
    yield
    for obj, state in saved:
        for name in set(vars(obj)) - set(state):
            delattr(obj, name)
        for name, (value, content) in state.items():
            if isinstance(value, dict):
                value.clear()
                value.update(content)
            elif isinstance(value, list):
                value[:] = content
            elif isinstance(value, set):
                value.clear()
                value.update(content)
            setattr(obj, name, value)
