"""Every option of the server, in one dataclass, with defaults and checks.

The command line (``cli.py``), ``selectserver.run(app, **options)`` and the
embedding API all build a ``Config``; nothing else reads options.  This
module does no I/O: it does not import the app or bind sockets, it only
says whether the options make sense together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, List, Optional, Union

from .http11.grammar import FIELD_LINE_CHARS, is_token

KIB = 1024
MIB = 1024 * KIB

INTERFACES = ("auto", "asgi3", "asgi2", "wsgi")
LIFESPAN_MODES = ("auto", "on", "off")
LOOPS = ("selectserver", "asyncio")
SELECTORS = ("auto", "epoll", "poll", "select", "kqueue", "devpoll")
WS_MODES = ("auto", "none")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class ConfigError(ValueError):
    """Options that cannot work together; the message says which and why."""


@dataclass
class Config:
    """All options.  Field names are the long CLI flags with ``_`` for ``-``."""

    app: Any = None                       # "module:attr" or the app object itself
    factory: bool = False                 # app is a zero-argument callable returning the app
    app_dir: str = "."
    interface: str = "auto"

    # where to listen
    host: str = "127.0.0.1"
    port: int = 8000
    uds: Optional[str] = None
    # 0o666, whatever the umask: a proxy running as another user must be able
    # to connect; --uds-permissions narrows it (660 with a shared group, say)
    uds_permissions: Optional[int] = 0o666
    fd: Optional[int] = None
    binds: List[str] = field(default_factory=list)   # extra "host:port" / "unix:path" / "fd://n"
    backlog: int = 2048
    reuse_port: bool = False

    # processes
    workers: int = 1
    threads: int = 10                     # WSGI thread pool per worker
    threads_queue: Optional[int] = None   # WSGI requests waiting for a thread before 503 (32 x threads)
    wsgi_stream_input: bool = False       # WSGI: run the app before its body has arrived
    reload: bool = False
    reload_dirs: List[str] = field(default_factory=list)
    timeout_worker_s: float = 30.0        # heartbeat: a stuck worker is replaced after this
    max_requests: int = 0
    max_requests_jitter: int = 0
    pid_file: Optional[str] = None
    preload: bool = False                 # import the app in the master, before forking
    user: Optional[str] = None            # workers switch to this user after binding (name or uid)
    group: Optional[str] = None           # ... and this group (name or gid)
    chdir: Optional[str] = None           # change to this directory before loading the app
    umask: Optional[int] = None           # the process umask (files the app creates)

    # the loop
    loop: str = "selectserver"
    selector: str = "auto"

    # HTTP
    root_path: str = ""
    lifespan: str = "auto"
    server_header: bool = True
    date_header: bool = True
    headers: List[str] = field(default_factory=list)   # "name: value", sent with every response
    limit_request_line_bytes: int = 8 * KIB
    limit_request_header_bytes: int = 64 * KIB
    limit_request_fields: int = 100
    limit_request_body_bytes: Optional[int] = None
    # requests in flight per worker, from their head to the end of their response
    # (a websocket: until it closes); the excess is answered 503 + Retry-After: 1
    limit_concurrency: Optional[int] = None
    timeout_keep_alive_s: float = 5.0
    timeout_request_head_s: float = 10.0
    # a request body gets this long, plus one second per
    # request_body_min_rate_bytes received (Apache mod_reqtimeout's
    # body=20,MinRate=500): a trickle runs out, an honest slow upload does not
    timeout_request_body_s: float = 20.0
    request_body_min_rate_bytes: int = 500
    timeout_graceful_shutdown_s: float = 30.0
    # backpressure: stop reading a request body above this many unread bytes;
    # make the app wait in send() while more than this is unsent
    read_buffer_high_bytes: int = 256 * KIB
    write_buffer_high_bytes: int = 256 * KIB

    # websockets
    ws: str = "auto"
    ws_max_size_bytes: int = 16 * MIB
    ws_ping_interval_s: Optional[float] = 20.0
    ws_ping_timeout_s: Optional[float] = 20.0
    ws_per_message_deflate: bool = True

    # proxies
    proxy_headers: bool = True
    forwarded_allow_ips: str = "127.0.0.1,::1"

    # TLS
    ssl_certfile: Optional[str] = None
    ssl_keyfile: Optional[str] = None
    ssl_keyfile_password: Optional[str] = None
    ssl_ca_certs: Optional[str] = None
    ssl_cert_reqs: int = 0
    ssl_ciphers: str = "TLSv1"

    # logs
    log_level: str = "info"
    log_config: Optional[str] = None
    trace: Union[bool, str] = False       # narrate the loop: True/"all" or "loop,conn,app" (trace.py)
    access_log: bool = True
    access_log_format: Optional[str] = None
    access_logfile: Optional[str] = None  # a file, or "-" for stdout (the default)
    error_logfile: Optional[str] = None   # a file, or "-" for stderr (the default)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first option that cannot work."""
        _one_of("interface", self.interface, INTERFACES)
        _one_of("lifespan", self.lifespan, LIFESPAN_MODES)
        _one_of("loop", self.loop, LOOPS)
        _one_of("selector", self.selector, SELECTORS)
        _one_of("ws", self.ws, WS_MODES)
        _one_of("log_level", self.log_level, LOG_LEVELS)
        if not 0 <= self.port <= 65535:
            raise ConfigError("%s must be 0..65535, not %r" % (flag("port"), self.port))
        for name in ("workers", "threads", "backlog", "limit_request_line_bytes",
                     "limit_request_header_bytes", "limit_request_fields",
                     "read_buffer_high_bytes", "write_buffer_high_bytes",
                     "ws_max_size_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError("%s must be at least 1, not %r" % (flag(name), getattr(self, name)))
        for name in ("max_requests", "max_requests_jitter"):
            if getattr(self, name) < 0:
                raise ConfigError("%s must not be negative" % flag(name))
        for name in ("limit_request_body_bytes", "limit_concurrency", "threads_queue"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError("%s must be at least 1 (or unset), not %r" % (flag(name), value))
        if self.request_body_min_rate_bytes < 1:
            raise ConfigError("%s must be at least 1" % flag("request_body_min_rate_bytes"))
        for name in ("timeout_keep_alive_s", "timeout_request_head_s", "timeout_request_body_s",
                     "timeout_graceful_shutdown_s", "timeout_worker_s"):
            if getattr(self, name) <= 0:
                raise ConfigError("%s must be positive" % flag(name))
        for name in ("uds_permissions", "umask"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 0o777:
                raise ConfigError("%s must be an octal mode 0..777, not %o" % (flag(name), value))
        if self.ssl_keyfile and not self.ssl_certfile:
            raise ConfigError("--ssl-keyfile needs --ssl-certfile")
        for header in self.headers:
            parse_header(header)

    def replace(self, **changes: Any) -> "Config":
        """A copy with some options changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_certfile)


def _one_of(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError("%s must be one of %s, not %r" % (flag(name), "|".join(allowed), value))


# Fields whose command-line flag is not the field's name less its unit.
_FLAG_NAMES = {"binds": "bind", "reload_dirs": "reload-dir", "pid_file": "pid",
               "headers": "header", "limit_request_header_bytes": "limit-request-headers"}


def flag(name: str) -> str:
    """The command-line flag of field ``name``: the name messages use."""
    if name in _FLAG_NAMES:
        return "--" + _FLAG_NAMES[name]
    for unit in ("_bytes", "_s"):
        if name.endswith(unit):
            name = name[:-len(unit)]
    return "--" + name.replace("_", "-")


# The name and value rules are HTTP's (RFC 9110 §5.6.2 and §5.5), so they are
# asked of http11.grammar, which the parser and the writer use too.
def parse_header(text: str) -> "tuple[bytes, bytes]":
    """``"name: value"`` (``--header``) -> ``(b"name", b"value")``; the name is lowercased.

    Raises ``ConfigError`` when the name is not a token or the value holds a
    control character (it would end the line and start a header of its own).
    """
    name, colon, value = text.partition(":")
    try:
        name_bytes = name.strip().encode("ascii")
        value_bytes = value.strip().encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError("--header %r: only ASCII names and Latin-1 values can be sent" % text) from None
    if not colon or not is_token(name_bytes):
        raise ConfigError("--header must be NAME:VALUE with a token as NAME, not %r" % text)
    if value_bytes.translate(None, FIELD_LINE_CHARS):
        raise ConfigError("--header %r: the value holds a control character" % text)
    return name_bytes.lower(), value_bytes
