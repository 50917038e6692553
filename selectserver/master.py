"""Chapter 5, part 3: the master process.

The master binds the listeners, then serves them: alone (one worker, no
supervision needed) or by forking workers that share them.  Supervision
(restarts, signals, reload) lives here; workers know nothing of it.
"""

from __future__ import annotations

import logging
from typing import List

from .config import Config
from .sockets import BindError, create_listeners, describe
from .worker import Worker

log = logging.getLogger("selectserver.error")


def run(config: Config) -> int:
    """Bind, serve until stopped, and return the process exit code."""
    try:
        listeners = create_listeners(config)
    except BindError as exc:
        log.error("%s", exc.strerror or exc)
        return 1
    announce(listeners)
    try:
        return Worker(config, listeners).run()
    finally:
        for sock in listeners:
            sock.close()


def announce(listeners: List) -> None:
    """Say where we listen; tests and scripts wait for this line."""
    for sock in listeners:
        log.info("Listening on %s (press CTRL+C to quit)", describe(sock))
