"""Chapter 6, part 3: watching the loop and the connections work.

``--trace`` prints what the other chapters describe, as it happens: each
``select()`` (how long it was allowed to block, what it returned) and each
connection's state transition.  It is for learning and debugging; it costs
nothing when off (one ``is None`` test per select and per transition).

    $ selectserver selectserver.demo:app --trace
    TRACE:  select(timeout=1.000) -> 1 ready: fd 7 R
    TRACE:  conn 127.0.0.1:53312 idle -> running
    TRACE:  conn 127.0.0.1:53312 running -> idle
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional

from .connection import Connection, ServerState, State
from .loop import EVENT_READ, EVENT_WRITE

TRACE = 5
log = logging.getLogger("selectserver.trace")


def install(loop: Any, server: ServerState) -> None:
    """Start tracing ``loop``'s selects and ``server``'s connections."""
    logging.addLevelName(TRACE, "TRACE")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("TRACE:  %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(TRACE)
    server.trace = trace_transition
    if hasattr(loop, "trace_select"):
        loop.trace_select = trace_select


def trace_select(timeout: Optional[float], events: List[Any]) -> None:
    wait = "forever" if timeout is None else "%.3f" % timeout
    if not events:
        log.log(TRACE, "select(timeout=%s) -> nothing ready", wait)
        return
    ready = ", ".join("fd %d %s" % (key.fd, _mask(mask)) for key, mask in events)
    log.log(TRACE, "select(timeout=%s) -> %d ready: %s", wait, len(events), ready)


def trace_transition(conn: Connection, old: State, new: State) -> None:
    peer = "%s:%s" % conn.client if conn.client else "unix"
    log.log(TRACE, "conn %s %s -> %s", peer, old.value, new.value)


def _mask(mask: int) -> str:
    return ("R" if mask & EVENT_READ else "") + ("W" if mask & EVENT_WRITE else "")
