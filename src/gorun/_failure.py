"""How a goroutine that did not return ended, and the report of an exception that nobody
retrieved (the asyncio "exception was never retrieved" message, for goroutines)."""

from __future__ import annotations

import asyncio
from asyncio.log import logger
from typing import Any


class Failure:
    """How a goroutine that did not return ended: its exception, or the CancelledError
    that cancelled it. A done handle keeps it in ``_value`` (where a result would be).

    It also reports an exception that nobody retrieved, as asyncio does for a Task: armed
    when the goroutine fails (not when it is cancelled), disarmed when its exception is
    retrieved, and reported when the handle is collected, which drops this object. Not a
    ``__del__`` of Goroutine itself, which would cost every goroutine a Python call as
    it is freed. It keeps no reference to the goroutine (that would be a cycle), only
    its repr."""

    __slots__ = ("armed", "exc", "loop", "text")

    def __init__(
        self, exc: BaseException, loop: asyncio.AbstractEventLoop | None, armed: bool
    ) -> None:
        self.exc = exc
        self.loop = loop
        self.armed = armed
        self.text = "<Goroutine>"

    def __repr__(self) -> str:
        return self.text

    def __del__(self) -> None:
        if not self.armed:
            return
        context = {
            "message": "Goroutine exception was never retrieved",
            "exception": self.exc,
            "goroutine": self,  # prints as the goroutine did
        }
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_exception_handler(context)
        else:
            _default_handler(context)


def _default_handler(context: dict[str, Any]) -> None:
    # No loop left to ask: log as asyncio's default exception handler does.
    exc = context.get("exception")
    exc_info = (type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else False
    logger.error("%s\ngoroutine: %r", context["message"], context.get("goroutine"),
                 exc_info=exc_info)
