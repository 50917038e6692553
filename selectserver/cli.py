"""Chapter 6, part 2: the command line.

``selectserver module:app [options]`` -> a ``Config`` -> the master.  Flags
follow uvicorn's names where uvicorn has one, gunicorn's where only it
does.  Every flag maps to one ``Config`` field; the table below is the
whole command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Optional

from . import __version__, logs, master
from .config import (INTERFACES, LIFESPAN_MODES, LOG_LEVELS, LOOPS, SELECTORS, WS_MODES,
                     Config, ConfigError)


def _octal(text: str) -> int:
    return int(text, 8)


def _optional_float(text: str) -> Optional[float]:
    return None if text.lower() in ("none", "off", "0") else float(text)


# (flags, Config field, argparse keyword arguments)
OPTIONS: List[tuple] = [
    # -- where to listen
    (("--host",), "host", dict(metavar="HOST", help="Bind to this address (:: for all IPv6 and IPv4). [default: 127.0.0.1]")),
    (("--port",), "port", dict(type=int, metavar="PORT", help="Bind to this port (0: any free port). [default: 8000]")),
    (("--uds",), "uds", dict(metavar="PATH", help="Bind to a Unix domain socket.")),
    (("--uds-permissions",), "uds_permissions", dict(type=_octal, metavar="MODE", help="Permissions of the Unix socket file, in octal (e.g. 660).")),
    (("--fd",), "fd", dict(type=int, metavar="FD", help="Serve on an inherited listening file descriptor.")),
    (("--bind", "-b"), "binds", dict(action="append", metavar="ADDRESS", help="Also listen on HOST:PORT, unix:PATH or fd://N (repeatable).")),
    (("--backlog",), "backlog", dict(type=int, metavar="N", help="Listen queue length. [default: 2048]")),
    (("--reuse-port",), "reuse_port", dict(action="store_true", default=None, help="One SO_REUSEPORT socket per worker.")),
    # -- the app
    (("--interface",), "interface", dict(choices=INTERFACES, help="Application interface. [default: auto]")),
    (("--factory",), "factory", dict(action="store_true", default=None, help="Treat APP as a factory: call it to get the app.")),
    (("--app-dir",), "app_dir", dict(metavar="DIR", help="Look for the app's module here. [default: .]")),
    (("--root-path",), "root_path", dict(metavar="PATH", help="The path the app is mounted at behind a proxy (ASGI root_path, WSGI SCRIPT_NAME).")),
    (("--lifespan",), "lifespan", dict(choices=LIFESPAN_MODES, help="ASGI lifespan events. [default: auto]")),
    # -- processes
    (("--workers", "-w"), "workers", dict(type=int, metavar="N", help="Worker processes. [default: $WEB_CONCURRENCY or 1]")),
    (("--threads",), "threads", dict(type=int, metavar="N", help="WSGI thread pool size per worker. [default: 10]")),
    (("--reload",), "reload", dict(action="store_true", default=None, help="Restart the worker when the app's source files change (development).")),
    (("--reload-dir",), "reload_dirs", dict(action="append", metavar="DIR", help="Directory to watch for --reload (repeatable).")),
    (("--timeout-worker",), "timeout_worker_s", dict(type=float, metavar="SECONDS", help="Replace a worker whose loop is stuck this long. [default: 30]")),
    (("--max-requests",), "max_requests", dict(type=int, metavar="N", help="Recycle a worker after N requests (0: never). [default: 0]")),
    (("--max-requests-jitter",), "max_requests_jitter", dict(type=int, metavar="N", help="Add up to N to --max-requests per worker. [default: 0]")),
    (("--pid",), "pid_file", dict(metavar="FILE", help="Write the master's PID to this file.")),
    # -- the loop
    (("--loop",), "loop", dict(choices=LOOPS, help="Event loop: our own run-once step, or stock asyncio. [default: selectserver]")),
    (("--selector",), "selector", dict(choices=SELECTORS, help="selectors backend. [default: auto]")),
    # -- HTTP
    (("--limit-concurrency",), "limit_concurrency", dict(type=int, metavar="N", help="Answer 503 to connections beyond N per worker.")),
    (("--limit-request-line",), "limit_request_line_bytes", dict(type=int, metavar="BYTES", help="Longest request line (414 above). [default: 8192]")),
    (("--limit-request-headers",), "limit_request_header_bytes", dict(type=int, metavar="BYTES", help="Largest request head (431 above). [default: 65536]")),
    (("--limit-request-fields",), "limit_request_fields", dict(type=int, metavar="N", help="Most header fields per request (431 above). [default: 100]")),
    (("--limit-request-body",), "limit_request_body_bytes", dict(type=int, metavar="BYTES", help="Largest request body (413 above). [default: unlimited]")),
    (("--timeout-keep-alive",), "timeout_keep_alive_s", dict(type=float, metavar="SECONDS", help="Close idle connections after this long. [default: 5]")),
    (("--timeout-request-head",), "timeout_request_head_s", dict(type=float, metavar="SECONDS", help="Time allowed for a whole request head (408 after). [default: 10]")),
    (("--timeout-graceful-shutdown",), "timeout_graceful_shutdown_s", dict(type=float, metavar="SECONDS", help="On shutdown, wait this long for responses in flight. [default: 30]")),
    (("--server-header",), "server_header", dict(action=argparse.BooleanOptionalAction, default=None, help="Send 'server: selectserver'. [default: on]")),
    (("--date-header",), "date_header", dict(action=argparse.BooleanOptionalAction, default=None, help="Send a Date header. [default: on]")),
    # -- websockets
    (("--ws",), "ws", dict(choices=WS_MODES, help="WebSocket support. [default: auto]")),
    (("--ws-max-size",), "ws_max_size_bytes", dict(type=int, metavar="BYTES", help="Largest WebSocket message. [default: 16777216]")),
    (("--ws-ping-interval",), "ws_ping_interval_s", dict(type=_optional_float, metavar="SECONDS", help="Ping WebSocket clients this often (none: never). [default: 20]")),
    (("--ws-ping-timeout",), "ws_ping_timeout_s", dict(type=_optional_float, metavar="SECONDS", help="Close if a ping is not answered in time. [default: 20]")),
    (("--ws-per-message-deflate",), "ws_per_message_deflate", dict(action=argparse.BooleanOptionalAction, default=None, help="Offer permessage-deflate compression. [default: on]")),
    # -- proxies
    (("--proxy-headers",), "proxy_headers", dict(action=argparse.BooleanOptionalAction, default=None, help="Trust X-Forwarded-* and Forwarded from --forwarded-allow-ips. [default: on]")),
    (("--forwarded-allow-ips",), "forwarded_allow_ips", dict(metavar="IPS", help="Comma-separated IPs/CIDRs whose proxy headers are trusted ('*': all). [default: 127.0.0.1,::1]")),
    # -- TLS
    (("--ssl-certfile",), "ssl_certfile", dict(metavar="FILE", help="TLS certificate (PEM).")),
    (("--ssl-keyfile",), "ssl_keyfile", dict(metavar="FILE", help="TLS private key (PEM).")),
    (("--ssl-keyfile-password",), "ssl_keyfile_password", dict(metavar="PASSWORD", help="Password of the TLS key.")),
    (("--ssl-ca-certs",), "ssl_ca_certs", dict(metavar="FILE", help="CA certificates to verify clients with.")),
    (("--ssl-cert-reqs",), "ssl_cert_reqs", dict(type=int, metavar="N", help="Client certificate: 0 none, 1 optional, 2 required. [default: 0]")),
    (("--ssl-ciphers",), "ssl_ciphers", dict(metavar="CIPHERS", help="OpenSSL cipher string. [default: TLSv1]")),
    # -- logs
    (("--log-level",), "log_level", dict(choices=LOG_LEVELS, help="Log level. [default: info]")),
    (("--log-config",), "log_config", dict(metavar="FILE", help="Logging configuration: JSON dictConfig or ini fileConfig.")),
    (("--trace",), "trace", dict(action="store_true", default=None, help="Print every select() and connection state change (for learning and debugging).")),
    (("--access-log",), "access_log", dict(action=argparse.BooleanOptionalAction, default=None, help="Log one line per response. [default: on]")),
    (("--access-log-format",), "access_log_format", dict(metavar="FORMAT", help="Access line format, gunicorn-style (%%(h)s %%(r)s %%(s)s ...).")),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selectserver",
        description="Serve an ASGI or WSGI app over HTTP/1.1, using only the standard library.",
        epilog="Example: selectserver example:app --port 8000 --workers 2",
    )
    parser.add_argument("app", metavar="APP", help="The app, as module:attribute (e.g. myproject.asgi:application).")
    parser.add_argument("--version", action="version", version="selectserver %s" % __version__)
    for flags, field_name, kwargs in OPTIONS:
        kwargs = dict(kwargs)
        kwargs.setdefault("default", None)
        parser.add_argument(*flags, dest=field_name, **kwargs)
    return parser


def config_from_args(argv: Optional[List[str]] = None) -> Config:
    """Parse ``argv``; options not given keep ``Config``'s defaults."""
    args = build_parser().parse_args(argv)
    options: dict = {"app": args.app}
    for _, field_name, _ in OPTIONS:
        value = getattr(args, field_name)
        if value is not None:
            options[field_name] = value
    if "workers" not in options and os.environ.get("WEB_CONCURRENCY"):
        options["workers"] = int(os.environ["WEB_CONCURRENCY"])
    return Config(**options)


def main(argv: Optional[List[str]] = None) -> None:
    try:
        config = config_from_args(argv)
    except (ConfigError, ValueError) as exc:
        print("selectserver: error: %s" % exc, file=sys.stderr)
        sys.exit(2)
    try:
        logs.configure(config)
    except logs.LogConfigError as exc:
        print("selectserver: error: %s" % exc, file=sys.stderr)
        sys.exit(2)
    sys.exit(master.run(config))
