"""Chapter 4, part 2: the ASGI ``lifespan`` protocol.

Once per worker, before the first connection is accepted, the app is
called with a ``lifespan`` scope and told ``lifespan.startup``; after the
last connection is closed it is told ``lifespan.shutdown``.  What the app
puts in ``scope["state"]`` is copied (shallowly) into every request scope.

Modes: ``on`` (a failure is fatal), ``off`` (never called), ``auto`` (an
app that raises instead of answering does not speak lifespan, and the
server goes on without it; only an explicit ``lifespan.startup.failed``
stops it).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Optional

log = logging.getLogger("selectserver.error")


class LifespanFailure(Exception):
    """Startup failed: the message says why; the worker must not serve."""


class Lifespan:
    """Runs an app's lifespan coroutine beside the server."""

    def __init__(self, app: Any, mode: str = "auto") -> None:
        self.app = app
        self.mode = mode
        self.state: Dict[str, Any] = {}
        self._events: Optional[asyncio.Queue] = None
        self._answers: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None
        self.supported = mode != "off"
        self.found_unsupported = False   # mode auto, and the app raised instead of answering

    # region: startup
    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the answer.

        Raises ``LifespanFailure`` if the app reports failure, or (mode
        ``on``) if it does not speak lifespan at all.
        """
        if not self.supported:
            return
        self._events = asyncio.Queue()
        self._answers = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": self.state}
        self._task = asyncio.get_running_loop().create_task(self._run(scope))
        await self._events.put({"type": "lifespan.startup"})
        answer = await self._answers.get()
        if answer["type"] == "lifespan.startup.complete":
            return
        if answer["type"] == "lifespan.startup.failed":
            raise LifespanFailure(answer.get("message") or "lifespan startup failed")
        # The app raised (or returned) instead of answering.
        error = answer.get("error")
        if self.mode == "on":
            raise LifespanFailure("lifespan startup raised %r" % (error,))
        # The worker says so, once per server (not once per worker).
        self.supported = False
        self.found_unsupported = True
    # endregion: startup

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait (a failure is only logged)."""
        if not self.supported or self._task is None or self._task.done():
            return
        await self._events.put({"type": "lifespan.shutdown"})
        answer = await self._answers.get()
        if answer["type"] == "lifespan.shutdown.failed":
            log.error("lifespan shutdown failed: %s", answer.get("message", ""))
        elif answer["type"] == "error":
            log.error("lifespan shutdown raised %r", answer.get("error"))

    async def _run(self, scope: Dict[str, Any]) -> None:
        async def receive() -> Dict[str, Any]:
            return await self._events.get()

        async def send(message: Dict[str, Any]) -> None:
            kind = message.get("type")
            if kind not in ("lifespan.startup.complete", "lifespan.startup.failed",
                            "lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                raise RuntimeError("unexpected lifespan message %r" % (kind,))
            await self._answers.put(message)

        try:
            await self.app(scope, receive, send)
        except BaseException as exc:  # reported to startup()/shutdown(), never lost
            if self.mode == "on":
                log.error("Exception in 'lifespan' protocol", exc_info=exc)
            await self._answers.put({"type": "error", "error": exc})
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        else:
            # The app returned: any question still open gets no answer from it.
            await self._answers.put({"type": "error", "error": None})
