"""Chapter 6: logging.

Two stdlib loggers: ``selectserver.error`` for everything that happens and
``selectserver.access`` for one line per response.  This module sets them
up from the options and formats access lines; it never decides *what* to
log (the code that sees an event does that, once).

Access lines are built from gunicorn-style atoms (``%(h)s %(r)s %(s)s``).
Every value that comes from a client is escaped: a request can put bytes in
a header, never a newline or a quote in the log.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import proxy

# Messages the whole server logs once, not once per worker.  Each has a
# pipe holding one byte, made when this module is imported (the master
# imports it before it forks): whichever process reads the byte first logs
# the message.  A read is atomic, so two workers booting at once cannot
# both win.
_ONCE_KEYS = ("lifespan-unsupported",)
_once_pipes: Dict[str, int] = {}
for _key in _ONCE_KEYS:
    _read_end, _write_end = os.pipe()
    os.write(_write_end, b"!")
    os.close(_write_end)
    os.set_blocking(_read_end, False)
    _once_pipes[_key] = _read_end


def first_in_server(key: str) -> bool:
    """True the first time any process of this server asks for ``key``."""
    try:
        return os.read(_once_pipes[key], 1) == b"!"
    except BlockingIOError:
        return False


TRACE = 5
logging.addLevelName(TRACE, "TRACE")

error_log = logging.getLogger("selectserver.error")
access_log = logging.getLogger("selectserver.access")

_LEVELS = {"critical": logging.CRITICAL, "error": logging.ERROR, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG, "trace": TRACE}

DEFAULT_ACCESS_FORMAT = '%(h)s - "%(r)s" %(s)s'


class LogConfigError(ValueError):
    """``--log-config`` names a file that cannot be read or applied."""


# gunicorn's layout: a reader can sort, grep by process, and see the level.
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"

# What reopen() reopens: the --error-logfile and --access-logfile paths.
_files: Dict[str, Optional[str]] = {"error": None, "access": None}
_access_handler: Optional[logging.StreamHandler] = None


def configure(config: Any) -> None:
    """Attach the handlers the options ask for, unless the user's logging config rules.

    ``--error-logfile`` becomes the process's stderr (descriptor 2), so that
    tracebacks, ``faulthandler`` dumps and stray prints land there too;
    ``--access-logfile`` gets a handler of its own.  Raises
    ``LogConfigError`` when a file cannot be opened or ``--log-config``
    cannot be applied.
    """
    global _access_handler
    if config.log_config:
        load_config_file(config.log_config)
        return
    _files["error"] = config.error_logfile if config.error_logfile not in (None, "-") else None
    _files["access"] = config.access_logfile if config.access_logfile not in (None, "-") else None
    if _files["error"]:
        _open_error_log(_files["error"])
    level = _LEVELS[config.log_level]
    formatter = logging.Formatter(LOG_FORMAT, DATE_FORMAT)
    for logger, stream in ((error_log, sys.stderr), (access_log, sys.stdout)):
        if not logger.handlers:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(formatter)
            logger.addHandler(handler)
            if logger is access_log:
                _access_handler = handler
        logger.setLevel(level)
        logger.propagate = False
    if _files["access"] and _access_handler is not None:
        _access_handler.setStream(_open_access_log(_files["access"]))


def _open_error_log(path: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise LogConfigError("--error-logfile %s: %s" % (path, exc.strerror)) from None
    sys.stderr.flush()
    os.dup2(fd, 2)
    os.close(fd)


def _open_access_log(path: str) -> Any:
    try:
        return open(path, "a", buffering=1, encoding="utf-8")
    except OSError as exc:
        raise LogConfigError("--access-logfile %s: %s" % (path, exc.strerror)) from None


# A SIGUSR1 that reaches a worker while it boots, before its loop handles
# the signal, is remembered here and honoured once the loop takes over:
# logrotate's signal is never lost to a worker that was still importing.
_reopen_owed = False


def owe_reopen(signum: int, frame: Any) -> None:
    """The worker's SIGUSR1 handler while it boots: remember to reopen."""
    global _reopen_owed
    _reopen_owed = True


def take_owed_reopen() -> bool:
    """True once if a SIGUSR1 came while the worker booted."""
    global _reopen_owed
    owed, _reopen_owed = _reopen_owed, False
    return owed


def reopen() -> None:
    """SIGUSR1: reopen the log files (logrotate has moved them away).

    A file that cannot be reopened (its directory is not writable by a
    worker that dropped privileges, say) keeps the old one, with a warning.
    """
    if _files["error"]:
        try:
            _open_error_log(_files["error"])
        except LogConfigError as exc:
            error_log.warning("cannot reopen the log: %s", exc)
    if _files["access"] and _access_handler is not None:
        try:
            old = _access_handler.setStream(_open_access_log(_files["access"]))
        except LogConfigError as exc:
            error_log.warning("cannot reopen the access log: %s", exc)
        else:
            if old is not None and old not in (sys.stdout, sys.stderr):
                old.close()


def load_config_file(path: str) -> None:
    """``--log-config``: a JSON dictConfig (``*.json``) or an ini fileConfig."""
    import logging.config

    try:
        if path.endswith(".json"):
            import json

            with open(path) as file:
                settings = json.load(file)
            settings.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(settings)
        else:
            if not os.path.isfile(path):
                raise FileNotFoundError("no such file")
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError) as exc:
        # fileConfig and dictConfig raise all of these for a bad file.
        raise LogConfigError("cannot apply --log-config %s: %s" % (path, exc)) from exc


# -- access lines ------------------------------------------------------------------

# An atom is a letter, or {header-name}i / {header-name}o.
_ATOM = re.compile(r"%\((\{[^}]*\}[io]|[a-zA-Z])\)")

# Anything but printable ASCII, and the quote and backslash that delimit
# fields in the common formats.
_UNSAFE = re.compile(rb'[^\x20-\x21\x23-\x5b\x5d-\x7e]')


def escape(value: bytes) -> str:
    """``value`` as printable ASCII: other bytes become ``\\xNN``."""
    if _UNSAFE.search(value) is None:
        return value.decode("ascii")
    return _UNSAFE.sub(lambda match: b"\\x%02x" % match.group()[0], value).decode("ascii")


class AccessContext:
    """What one access line may show: the connection, request, writer, duration."""

    __slots__ = ("conn", "request", "writer", "duration_s", "log")

    def __init__(self, log: "AccessLog", conn: Any, request: Any, writer: Any, duration_s: float) -> None:
        self.log = log
        self.conn = conn
        self.request = request
        self.writer = writer
        self.duration_s = duration_s


def _client_host(ctx: AccessContext) -> str:
    client = ctx.log.client_of(ctx.conn, ctx.request)
    return escape(client[0].encode("utf-8", "replace")) if client else "-"


def _request_line(ctx: AccessContext) -> str:
    request = ctx.request
    return "%s %s HTTP/%s" % (escape(request.method), escape(request.target), request.http_version)


def _path(ctx: AccessContext) -> str:
    return escape(ctx.request.target.partition(b"?")[0])


def _query(ctx: AccessContext) -> str:
    return escape(ctx.request.target.partition(b"?")[2])


def _size_or_dash(ctx: AccessContext) -> str:
    return str(ctx.writer.bytes_sent) if ctx.writer.bytes_sent else "-"


def _local_time(ctx: AccessContext) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")


ATOMS: Dict[str, Callable[[AccessContext], str]] = {
    "h": _client_host,
    "l": lambda ctx: "-",
    "u": lambda ctx: "-",
    "t": _local_time,
    "r": _request_line,
    "m": lambda ctx: escape(ctx.request.method),
    "U": _path,
    "q": _query,
    "H": lambda ctx: "HTTP/" + ctx.request.http_version,
    "s": lambda ctx: str(ctx.writer.status),
    "B": lambda ctx: str(ctx.writer.bytes_sent),
    "b": _size_or_dash,
    "f": lambda ctx: _request_header(ctx, b"referer"),
    "a": lambda ctx: _request_header(ctx, b"user-agent"),
    "T": lambda ctx: str(int(ctx.duration_s)),
    "D": lambda ctx: str(int(ctx.duration_s * 1_000_000)),
    "M": lambda ctx: str(int(ctx.duration_s * 1000)),
    "L": lambda ctx: "%.6f" % ctx.duration_s,
    "p": lambda ctx: "<%d>" % os.getpid(),
}


def _request_header(ctx: AccessContext, name: bytes) -> str:
    for field_name, value in ctx.request.headers:
        if field_name == name:
            return escape(value)
    return "-"


def _response_header(ctx: AccessContext, name: bytes) -> str:
    headers = getattr(ctx.writer, "headers", None)
    if headers is None:
        # The application's own list, kept by its cycle until the line is written.
        headers = getattr(ctx.conn.cycle, "headers", None) or ()
    for field_name, value in headers:
        if bytes(field_name).lower() == name:
            return escape(bytes(value))
    return "-"


def compile_format(text: str) -> Tuple[str, List[Tuple[str, Callable[[AccessContext], str]]]]:
    """``text`` -> (a %-format over named atoms, the getter of each atom it uses).

    Raises ``ValueError`` naming an unknown atom.
    """
    getters: List[Tuple[str, Callable[[AccessContext], str]]] = []
    for atom in sorted(set(_ATOM.findall(text))):
        if atom.startswith("{"):
            name = atom[1:-2].lower().encode("latin-1")
            source = _request_header if atom.endswith("i") else _response_header
            getters.append((atom, lambda ctx, name=name, source=source: source(ctx, name)))
        elif atom in ATOMS:
            getters.append((atom, ATOMS[atom]))
        else:
            raise ValueError("unknown access log atom %%(%s)s" % atom)
    try:
        text % {atom: "" for atom, _ in getters}
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError("invalid access log format %r: %s" % (text, exc)) from None
    return text, getters


class AccessLog:
    """Writes one line per response, as ``--access-log-format`` says.

    The client shown is the one the application saw: behind a trusted proxy,
    the address from its headers.
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self.format, self.getters = compile_format(config.access_log_format or DEFAULT_ACCESS_FORMAT)
        self.trusted: Optional[proxy.TrustedProxies] = (
            proxy.TrustedProxies(config.forwarded_allow_ips) if config.proxy_headers else None)

    def client_of(self, conn: Any, request: Any) -> Optional[Tuple[str, int]]:
        trusted = self.trusted
        if trusted is not None and trusted.trusts(conn.client):
            forwarded = proxy.resolve(request.headers, trusted)
            if forwarded is not None and forwarded.client is not None:
                return forwarded.client
        return conn.client

    def __call__(self, conn: Any, request: Any, writer: Any, duration_s: float) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        ctx = AccessContext(self, conn, request, writer, duration_s)
        access_log.info("%s", self.format % {atom: getter(ctx) for atom, getter in self.getters})
