"""Chapter 6: logging.

Two stdlib loggers: ``selectserver.error`` for everything that happens and
``selectserver.access`` for one line per response.  This module sets them
up from the options and formats access lines; it never decides *what* to
log (the code that sees an event does that, once).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_log = logging.getLogger("selectserver.error")
access_log = logging.getLogger("selectserver.access")

_LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG, "trace": TRACE}


def configure(config: Any) -> None:
    """Attach stderr/stdout handlers unless the user's logging config rules."""
    level = _LEVELS[config.log_level]
    if config.log_config:
        load_config_file(config.log_config)
        return
    formatter = logging.Formatter("%(levelname)s:     %(message)s")
    for logger, stream in ((error_log, sys.stderr), (access_log, sys.stdout)):
        if not logger.handlers:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(formatter)
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def load_config_file(path: str) -> None:
    """``--log-config``: a JSON dictConfig or an ini fileConfig."""
    import logging.config

    if path.endswith(".json"):
        import json

        with open(path) as file:
            logging.config.dictConfig(json.load(file))
    else:
        logging.config.fileConfig(path, disable_existing_loggers=False)


class AccessLog:
    """Writes one line per response: ``client - "METHOD target HTTP/v" status``."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def __call__(self, conn: Any, request: Any, writer: Any, duration_s: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        client = "%s:%s" % conn.client if conn.client else "-"
        access_log.info('%s - "%s %s HTTP/%s" %s', client, _printable(request.method),
                        _printable(request.target), request.http_version, writer.status)


def _printable(value: bytes) -> str:
    # Request bytes are validated visible ASCII, but never let a log line be
    # forged: escape anything else.
    return value.decode("ascii", "backslashreplace")
