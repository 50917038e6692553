"""Chapter 6, part 2: the command line.

``selectserver module:app [options]`` -> a ``Config`` -> the master.  Flags
follow uvicorn's names where uvicorn has one, gunicorn's where only it
does.  Every flag maps to one ``Config`` field; the table below is the
whole command line.

An option can also come from the environment (``SELECTSERVER_<FLAG>``, and
``WEB_CONCURRENCY``/``FORWARDED_ALLOW_IPS`` as other servers read them) or
from a file (``-c FILE``, Python assignments; ``[tool.selectserver]`` in
``pyproject.toml``).  The command line wins, then the environment, then
``-c FILE``, then pyproject.  Each source is read here, as text or Python
values, and checked by the same code, so an error names where it came from.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import __version__, logs, master, trace
from .config import (INTERFACES, LIFESPAN_MODES, LOG_LEVELS, LOOPS, SELECTORS, WS_MODES,
                     Config, ConfigError)

ENV_PREFIX = "SELECTSERVER_"
# Read as other servers read them; SELECTSERVER_WORKERS and
# SELECTSERVER_FORWARDED_ALLOW_IPS win over these.
ENV_ALIASES = {"WEB_CONCURRENCY": "workers", "FORWARDED_ALLOW_IPS": "forwarded_allow_ips"}


def _octal(text: str) -> int:
    return int(text, 8)


def _optional_float(text: str) -> Optional[float]:
    return None if text.lower() in ("none", "off", "0") else float(text)


class _BadTraceTopics(argparse.ArgumentTypeError, ValueError):
    """Said by argparse for the command line, by convert() for the others."""


def _trace_topics(text: str) -> str:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):   # SELECTSERVER_TRACE=1
        return "all"
    if lowered in ("0", "false", "no", "off"):
        return ""
    try:
        trace.parse_topics(lowered)
    except ValueError as exc:
        raise _BadTraceTopics("expected all, or some of %s: %s" % (",".join(trace.TOPICS), exc)) from None
    return lowered


# (flags, Config field, argparse keyword arguments)
OPTIONS: List[tuple] = [
    # -- where to listen
    (("--host",), "host", dict(metavar="HOST", help="Bind to this address (:: for all IPv6 and IPv4). [default: 127.0.0.1]")),
    (("--port",), "port", dict(type=int, metavar="PORT", help="Bind to this port (0: any free port). [default: 8000]")),
    (("--uds",), "uds", dict(metavar="PATH", help="Bind to a Unix domain socket.")),
    (("--uds-permissions",), "uds_permissions", dict(type=_octal, metavar="MODE", help="Permissions of the Unix socket file, in octal. [default: 666, whatever the umask]")),
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
    (("--threads-queue",), "threads_queue", dict(type=int, metavar="N", help="WSGI requests that may wait for a thread; beyond, 503 with Retry-After. [default: 32 x --threads]")),
    (("--wsgi-stream-input",), "wsgi_stream_input", dict(action="store_true", default=None, help="WSGI: start the app before the request body has arrived and stream wsgi.input (holds a thread while a slow client uploads).")),
    (("--reload",), "reload", dict(action="store_true", default=None, help="Restart the worker when the app's source files change (development).")),
    (("--reload-dir",), "reload_dirs", dict(action="append", metavar="DIR", help="Directory to watch for --reload (repeatable).")),
    (("--timeout-worker",), "timeout_worker_s", dict(type=float, metavar="SECONDS", help="Replace a worker whose loop is stuck this long. [default: 30]")),
    (("--max-requests",), "max_requests", dict(type=int, metavar="N", help="Recycle a worker after N requests (0: never). [default: 0]")),
    (("--max-requests-jitter",), "max_requests_jitter", dict(type=int, metavar="N", help="Add up to N to --max-requests per worker. [default: 0]")),
    (("--pid",), "pid_file", dict(metavar="FILE", help="Write the master's PID to this file.")),
    (("--preload",), "preload", dict(action="store_true", default=None, help="Import the app in the master, before forking the workers.")),
    (("--user",), "user", dict(metavar="USER", help="Workers switch to this user (name or uid) after binding.")),
    (("--group",), "group", dict(metavar="GROUP", help="Workers switch to this group (name or gid) after binding. [default: USER's]")),
    (("--chdir",), "chdir", dict(metavar="DIR", help="Change to this directory before loading the app.")),
    (("--umask",), "umask", dict(type=_octal, metavar="MODE", help="Set the process umask, in octal (e.g. 027).")),
    # -- the loop
    (("--loop",), "loop", dict(choices=LOOPS, help="Event loop: our own run-once step, or stock asyncio. [default: selectserver]")),
    (("--selector",), "selector", dict(choices=SELECTORS, help="selectors backend. [default: auto]")),
    # -- HTTP
    (("--limit-concurrency",), "limit_concurrency", dict(type=int, metavar="N", help="Requests in flight per worker (admitted when their head is read, until their response ends; a websocket until it closes); a request beyond N is answered 503 with Retry-After: 1 and Connection: close, without calling the app.")),
    (("--limit-request-line",), "limit_request_line_bytes", dict(type=int, metavar="BYTES", help="Longest request line (414 above). [default: 8192]")),
    (("--limit-request-headers",), "limit_request_header_bytes", dict(type=int, metavar="BYTES", help="Largest request head (431 above). [default: 65536]")),
    (("--limit-request-fields",), "limit_request_fields", dict(type=int, metavar="N", help="Most header fields per request (431 above). [default: 100]")),
    (("--limit-request-body",), "limit_request_body_bytes", dict(type=int, metavar="BYTES", help="Largest request body (413 above). [default: unlimited]")),
    (("--timeout-keep-alive",), "timeout_keep_alive_s", dict(type=float, metavar="SECONDS", help="Close idle connections after this long. [default: 5]")),
    (("--timeout-request-head",), "timeout_request_head_s", dict(type=float, metavar="SECONDS", help="Time allowed for a whole request head (408 after). [default: 10]")),
    (("--timeout-request-body",), "timeout_request_body_s", dict(type=float, metavar="SECONDS", help="Time allowed for a request body, extended by 1 s per --request-body-min-rate bytes received (408 after). [default: 20]")),
    (("--request-body-min-rate",), "request_body_min_rate_bytes", dict(type=int, metavar="BYTES", help="Bytes per second a request body must keep up to gain time. [default: 500]")),
    (("--timeout-graceful-shutdown",), "timeout_graceful_shutdown_s", dict(type=float, metavar="SECONDS", help="On shutdown, wait this long for responses in flight. [default: 30]")),
    (("--server-header",), "server_header", dict(action=argparse.BooleanOptionalAction, default=None, help="Send 'server: selectserver'. [default: on]")),
    (("--date-header",), "date_header", dict(action=argparse.BooleanOptionalAction, default=None, help="Send a Date header. [default: on]")),
    (("--header",), "headers", dict(action="append", metavar="NAME:VALUE", help="Send this header with every response (repeatable).")),
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
    (("--trace",), "trace", dict(nargs="?", const="all", type=_trace_topics, metavar="TOPICS", help="Narrate what the loop does, for learning and debugging: all, or some of loop,conn,app. [default: off; alone: all]")),
    (("--access-log",), "access_log", dict(action=argparse.BooleanOptionalAction, default=None, help="Log one line per response. [default: on]")),
    (("--access-log-format",), "access_log_format", dict(metavar="FORMAT", help="Access line format, gunicorn-style (%%(h)s %%(r)s %%(s)s ...).")),
    (("--access-logfile",), "access_logfile", dict(metavar="FILE", help="Write access lines to FILE ('-': stdout); SIGUSR1 reopens it. [default: -]")),
    (("--error-logfile",), "error_logfile", dict(metavar="FILE", help="Write the server's log to FILE ('-': stderr); SIGUSR1 reopens it. [default: -]")),
]


_EXPECTED = {int: "expected a whole number", float: "expected a number",
             _octal: "expected an octal mode (e.g. 660)",
             _optional_float: "expected a number, or none"}

# Flags of the command line only: where the other sources are.
CONFIG_FILE_FLAGS = ("--config", "-c")
ENV_FILE_FLAG = "--env-file"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        # One line, not the whole usage: the error is what the user needs to see.
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="selectserver",
        description="Serve an ASGI or WSGI app over HTTP/1.1, using only the standard library.",
        epilog="Every option can also be set as SELECTSERVER_<OPTION> in the environment "
               "(SELECTSERVER_TIMEOUT_KEEP_ALIVE=10) or in a -c file (timeout_keep_alive = 10). "
               "Example: selectserver example:app --port 8000 --workers 2",
    )
    parser.add_argument("app", metavar="APP", nargs="?",
                        help="The app, as module:attribute (e.g. myproject.asgi:application).")
    parser.add_argument("--version", action="version", version="selectserver %s" % __version__)
    parser.add_argument(*CONFIG_FILE_FLAGS, dest="config_file", metavar="FILE",
                        help="Read options from FILE, Python assignments (workers = 4). [default: "
                             "the [tool.selectserver] table of ./pyproject.toml, on Python 3.11+]")
    parser.add_argument(ENV_FILE_FLAG, dest="env_file", metavar="FILE",
                        help="Add the variables of FILE (dotenv: NAME=value lines) to the environment; "
                             "variables already set win.")
    for flags, field_name, kwargs in OPTIONS:
        kwargs = dict(kwargs)
        kwargs.setdefault("default", None)
        parser.add_argument(*flags, dest=field_name, **kwargs)
    return parser


def option_name(flags: Tuple[str, ...]) -> str:
    """``("--timeout-keep-alive",)`` -> ``"timeout_keep_alive"``: its name in files and variables."""
    return flags[0][2:].replace("-", "_")


# Every name an option has outside the command line -> (flag, field, argparse kwargs).
_BY_NAME: Dict[str, Tuple[str, str, dict]] = {}
for _flags, _field, _kwargs in OPTIONS:
    _BY_NAME[option_name(_flags)] = _BY_NAME[_field] = (_flags[0], _field, _kwargs)
_BY_NAME["app"] = ("APP", "app", {})


def convert(name: str, value: Any, source: str) -> Any:
    """The value of option ``name`` as given by ``source`` (a variable, a file), checked.

    Text is read as the command line reads it; a file's Python values are
    taken as they are.  Raises ``ConfigError`` naming ``source``.
    """
    flag, field_name, kwargs = _BY_NAME[name]
    action = kwargs.get("action")
    try:
        if action in ("store_true", argparse.BooleanOptionalAction):
            return value if isinstance(value, bool) else parse_bool(value)
        if action == "append":
            if isinstance(value, str):
                # --header values may hold commas; one a line.
                separator = "\n" if field_name == "headers" else ","
                value = [item.strip() for item in value.split(separator) if item.strip()]
            return list(value)
        if isinstance(value, str):
            convert_text = kwargs.get("type")
            value = convert_text(value) if convert_text is not None else value
        if "choices" in kwargs and value not in kwargs["choices"]:
            raise ValueError("expected one of %s" % ", ".join(kwargs["choices"]))
        return value
    except (ValueError, TypeError) as exc:
        reason = str(exc) if str(exc).startswith("expected") else _EXPECTED.get(
            kwargs.get("type"), "expected %s" % ("a list" if action == "append" else "text"))
        raise ConfigError("%s: %r is not a valid %s: %s" % (source, value, flag, reason)) from None


def parse_bool(text: Any) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")


def options_from_environ(environ: Mapping[str, str]) -> Dict[str, Any]:
    """``SELECTSERVER_<OPTION>`` variables (and the aliases) -> options."""
    options: Dict[str, Any] = {}
    for variable, field_name in ENV_ALIASES.items():
        if environ.get(variable):
            options[field_name] = convert(field_name, environ[variable], variable)
    names = [option_name(flags) for flags, _, _ in OPTIONS] + ["app"]
    for name in names:
        variable = ENV_PREFIX + name.upper()
        if variable in environ:
            options[_BY_NAME[name][1]] = convert(name, environ[variable], variable)
    return options


def options_from_file(path: str) -> Dict[str, Any]:
    """``-c FILE``: the option assignments of a Python file (``workers = 4``).

    Modules it imports and names starting with ``_`` are skipped; any other
    name must be an option.  Raises ``ConfigError``.
    """
    if not os.path.isfile(path):
        raise ConfigError("-c %s: no such file" % path)
    try:
        namespace = runpy.run_path(path, run_name="__selectserver_config__")
    except Exception as exc:   # the file's own error, whatever it is: say which file
        raise ConfigError("-c %s: %s: %s" % (path, type(exc).__name__, exc)) from None
    return _options_from_mapping(
        {name: value for name, value in namespace.items()
         if not name.startswith("_") and type(value).__name__ != "module"},
        "-c %s" % path)


def options_from_pyproject(path: str) -> Dict[str, Any]:
    """The ``[tool.selectserver]`` table of ``path``, if there is one.

    ``tomllib`` is in the standard library from Python 3.11; before, the
    table is skipped with a warning (use ``-c FILE`` there).
    """
    if not os.path.isfile(path):
        return {}
    try:
        import tomllib
    except ImportError:
        with open(path, encoding="utf-8", errors="replace") as file:
            if "[tool.selectserver]" in file.read():
                logs.error_log.warning(
                    "%s: [tool.selectserver] needs Python 3.11+ (tomllib) and is ignored; "
                    "use -c FILE", path)
        return {}
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file).get("tool", {}).get("selectserver", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("%s: %s" % (path, exc)) from None
    return _options_from_mapping(table, "%s [tool.selectserver]" % path)


def _options_from_mapping(values: Mapping[str, Any], source: str) -> Dict[str, Any]:
    options: Dict[str, Any] = {}
    for name, value in values.items():
        key = name.replace("-", "_")
        if key not in _BY_NAME:
            raise ConfigError("%s: unknown option %r" % (source, name))
        options[_BY_NAME[key][1]] = convert(key, value, "%s: %s" % (source, name))
    return options


def read_env_file(path: str) -> Dict[str, str]:
    """``--env-file``: the ``NAME=value`` lines of a dotenv file.

    ``export`` before a name, blank lines and ``#`` comments are allowed;
    'single quotes' keep the value as written, "double quotes" read \\n, \\t,
    \\" and \\\\.  Nothing is expanded (no ``${VAR}``).  Raises ``ConfigError``.
    """
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--env-file %s: %s" % (path, getattr(exc, "strerror", None) or exc)) from None
    variables: Dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export "):].lstrip()
        name, equals, value = text.partition("=")
        name = name.strip()
        if not equals or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ConfigError("--env-file %s, line %d: expected NAME=value" % (path, number))
        try:
            variables[name] = _dotenv_value(value.strip())
        except ValueError as exc:
            raise ConfigError("--env-file %s, line %d: %s" % (path, number, exc)) from None
    return variables


_DOUBLE_QUOTED_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _dotenv_value(text: str) -> str:
    if text[:1] in ("'", '"'):
        quote = text[0]
        end = 1
        value = []
        while end < len(text) and text[end] != quote:
            if quote == '"' and text[end] == "\\" and end + 1 < len(text):
                value.append(_DOUBLE_QUOTED_ESCAPES.get(text[end + 1], "\\" + text[end + 1]))
                end += 2
                continue
            value.append(text[end])
            end += 1
        if end >= len(text):
            raise ValueError("no closing %s" % quote)
        rest = text[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise ValueError("text after the closing %s" % quote)
        return "".join(value)
    # Unquoted: a comment starts at " #".
    return text.split(" #", 1)[0].rstrip()


def config_from_args(argv: Optional[List[str]] = None,
                     environ: Optional[Dict[str, str]] = None) -> Config:
    """``argv`` over the environment over ``-c FILE`` over pyproject over the defaults.

    ``--env-file`` adds its variables to ``environ`` (``os.environ``) first,
    so that both the options read from it and the app see them.  Raises
    ``ConfigError`` naming the source of a bad value.
    """
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    env_file = args.env_file or environ.get(ENV_PREFIX + "ENV_FILE")
    if env_file:
        for name, value in read_env_file(env_file).items():
            environ.setdefault(name, value)
    options = options_from_pyproject(os.path.join(os.getcwd(), "pyproject.toml"))
    config_file = args.config_file or environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        options.update(options_from_file(config_file))
    options.update(options_from_environ(environ))
    if args.app is not None:
        options["app"] = args.app
    for _, field_name, _ in OPTIONS:
        value = getattr(args, field_name)
        if value is not None:
            options[field_name] = value
    if not options.get("app"):
        raise ConfigError("the APP argument is required, as module:attribute (see selectserver --help)")
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
