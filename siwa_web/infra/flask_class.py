"""The Flask class siwa-web runs on: Flask, with its per-call coroutine check remembered."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask


class SiwaFlask(Flask):
    """Flask, but `ensure_sync` decides once per function instead of on every call.

    Flask asks `inspect.iscoroutinefunction` of every request hook and of the view, each time
    it calls one: six times on a Bearer API call, a hundredth of its whole cost. The answer
    for a given function never changes, so it is kept (the set of hooks, views and error
    handlers is fixed once the app is built; anything unhashable is asked every time).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except KeyError:
            found = self._sync[func] = super().ensure_sync(func)
            return found
        except TypeError:  # unhashable: Flask's own way, every time
            return super().ensure_sync(func)
