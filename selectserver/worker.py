"""Chapter 5, part 2: one worker process.

A worker builds its event loop (after any fork: a loop never crosses a
fork), imports the app, runs lifespan startup, and then accepts from the
listeners it was given.  Once a second a tick refreshes the ``Date``
header, closes connections whose deadline passed and, under a master,
beats the ``Heartbeat``.  When it stops taking work (a stop signal, the
master retiring it, ``--max-requests`` reached) it drains: it takes what
is already waiting in the listen queue, closes its copies of the
listeners, tells every connection to ``shutdown()`` (serve what it has
with ``connection: close``, close idle ones gently), waits for them up to
``--timeout-graceful-shutdown``, aborts the rest, then runs lifespan
shutdown.

The same class serves the CLI (in a worker process, or alone), the
``selectserver.run()`` call and ``ServerThread`` (a server on a background
thread, for tests and embedding).
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import importlib
import inspect
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

from . import logs, loop as loop_module
from .asgi import asgi2_to_asgi3, make_handler as make_asgi_handler
from .config import Config, parse_header
from .connection import Connection, ServerState
from .lifespan import Lifespan, LifespanFailure
from .logs import AccessLog
from .sockets import create_ssl_context, describe
from .websocket.asgi import upgrade_handler as websocket_upgrade

log = logging.getLogger("selectserver.error")

# Take at most this many connections per readiness event, so one busy
# listener cannot starve the connections already accepted.
ACCEPT_BATCH = 64

# The signals the worker's loop handles (_install_signal_handlers).
_LOOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1")
                      if hasattr(signal, name))

# After EMFILE/ENFILE stop accepting this long instead of spinning on a
# listener that stays readable.
ACCEPT_PAUSE_S = 0.5

_ACCEPT_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

TICK_S = 1.0

# While draining, look this often whether the last connection has closed.
DRAIN_POLL_S = 0.02

# What a worker writes on its pipe to the master (docs/processes.md).
MESSAGE_READY = b"R"
MESSAGE_BEAT = b"."
MESSAGE_MAX_REQUESTS = b"M"


class AppLoadError(Exception):
    """The app could not be imported or is not an app.

    ``str()`` is one line: what was loaded and why it failed.  ``details``
    is the traceback of the app's own frames (importlib's and ours left
    out), or "" when the fault is not in the app's code.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def import_app(target: str, app_dir: str = ".") -> Any:
    """``"package.module:attr.sub"`` -> the object.

    Raises ``AppLoadError``; an exception raised by the app's module while
    it is imported becomes one too, with the app's frames as ``details``.
    """
    module_name, _, attrs = target.partition(":")
    if not module_name or not attrs:
        raise AppLoadError('app must be given as "module:attribute", not %r' % (target,))
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name != module_name:
            raise _app_error("cannot import %r" % target, exc) from None
        raise AppLoadError("cannot import %r: no module named %r" % (target, module_name)) from None
    except Exception as exc:   # whatever the app's module raised while it ran
        raise _app_error("cannot import %r" % target, exc) from None
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise AppLoadError("cannot import %r: module %r has no attribute %r" % (
                target, module_name, attrs)) from None
    return obj


def _app_error(what: str, exc: BaseException) -> AppLoadError:
    """``AppLoadError`` for an exception raised by the app's own code."""
    import traceback

    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not _is_machinery(frame.filename)]
    lines = traceback.format_exception_only(type(exc), exc)
    # The first line says it all for most errors; a SyntaxError's caret
    # lines and the app's frames follow as details.
    summary = lines[-1].strip()
    if isinstance(exc, SyntaxError) and exc.filename:
        summary += " (%s, line %s)" % (exc.filename, exc.lineno)
    details = ""
    if frames:
        details = "Traceback (the app's frames):\n" + "".join(traceback.format_list(frames))
    details = (details + "".join(lines[:-1])).rstrip("\n")
    return AppLoadError("%s: %s" % (what, summary), details)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _is_machinery(filename: str) -> bool:
    # CPython names its frozen importlib "<frozen importlib._bootstrap>",
    # PyPy "<builtin>/frozen importlib._bootstrap".
    return ((filename.startswith("<") and "importlib" in filename)
            or os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
            or os.path.basename(os.path.dirname(filename)) == "importlib")


def load_app(config: Config) -> Any:
    """The app object the options name (calling the factory if asked).

    Raises ``AppLoadError``.
    """
    app = config.app
    if isinstance(app, str):
        app = import_app(app, config.app_dir)
    if config.factory:
        try:
            app = app()
        except Exception as exc:   # the factory's own error
            raise _app_error("the app factory %r failed" % (config.app,), exc) from None
    if not callable(app):
        raise AppLoadError("the app %r is not callable" % (app,))
    return app


def detect_interface(app: Any) -> str:
    """``asgi3``, ``asgi2`` or ``wsgi`` by the shape of ``app``.

    Raises ``AppLoadError`` naming what was found when it is none of them.
    """
    if inspect.isclass(app):
        if inspect.iscoroutinefunction(getattr(app, "__call__", None)):
            return "asgi2"
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", app)
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        return "asgi3"
    try:
        parameters = list(inspect.signature(app).parameters.values())
    except (TypeError, ValueError):
        parameters = []
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(p.default is p.empty for p in positional)
    variadic = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    takes_two, takes_three = ((required <= n and (variadic or len(positional) >= n)) for n in (2, 3))
    if takes_two:
        # A sync callable taking (environ, start_response) -- or *args, as
        # wsgiref.validate's wrapper does -- is WSGI; should it be ASGI after
        # all, the WSGI adapter names the awaitable it got back in its error.
        return "wsgi"
    if takes_three:
        return "asgi3"
    raise AppLoadError(
        "cannot tell the interface of %r: it is not a coroutine function and takes %d "
        "positional arguments (WSGI takes 2, ASGI 3); use --interface" % (app, len(positional)))


class Worker:
    """Serves ``config``'s app on ``listeners`` until asked to stop."""

    def __init__(self, config: Config, listeners: List[socket.socket],
                 app: Any = None, on_ready: Optional[Callable[[], None]] = None,
                 heartbeat: Optional["Heartbeat"] = None, close_listeners: bool = False) -> None:
        self.config = config
        self.listeners = listeners
        self.app = app
        self.on_ready = on_ready
        # Under a master: the pipe to it (liveness, readiness, --max-requests).
        self.heartbeat = heartbeat
        # A process that owns its copies of the listeners closes them when it
        # stops taking work: once every process has, connections are refused.
        self.close_listeners = close_listeners
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.state: Optional[ServerState] = None
        self.interface = ""
        self.exit_code = 0
        # Why the worker could not start (one line), when exit_code is 3.
        self.boot_error = ""
        # ... and the exception that said so.
        self.failure: Optional[BaseException] = None
        self._stopping: Optional[asyncio.Future] = None
        self._accepting: List["Listener"] = []
        self._tick_handle: Optional[asyncio.TimerHandle] = None
        self._executor_shutdown: List[Callable[[], None]] = []

    # -- running --------------------------------------------------------------

    def run(self, install_signals: bool = True) -> int:
        """Build a loop, serve until stopped, return an exit code."""
        loop = loop_module.new_event_loop(self.config.loop, self.config.selector)
        self.loop = loop
        asyncio.set_event_loop(loop)
        try:
            if install_signals:
                self._install_signal_handlers()
            loop.run_until_complete(self.serve())
        except (AppLoadError, LifespanFailure) as exc:
            # One line first: whoever reads the log (or ServerThread, from
            # boot_error) learns what failed without a traceback to scroll.
            self.boot_error = str(exc)
            log.error("%s", exc)
            details = getattr(exc, "details", "")
            if details:
                log.error("%s", details)
            self.failure = exc
            self.exit_code = 3
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                if install_signals and self.heartbeat is not None:
                    # A worker that stopped itself may still get the master's
                    # SIGTERM (or SIGUSR1): ignore it from here, or it would
                    # hit the wake-up pipe the loop closes before it drops its
                    # handlers.  With the last handler gone the wake-up fd is
                    # unset too, so the master's SIGQUIT (a Python handler,
                    # not the loop's) cannot write to the closed pipe either.
                    for signum in _LOOP_SIGNALS:
                        loop.remove_signal_handler(signum)
                        signal.signal(signum, signal.SIG_IGN)
                loop.close()
        return self.exit_code

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self._stopping = loop.create_future()
        app = self.app if self.app is not None else load_app(self.config)
        handler, lifespan = self._make_handler(app)
        await lifespan.startup()
        if lifespan.found_unsupported and logs.first_in_server("lifespan-unsupported"):
            log.info("ASGI 'lifespan' protocol appears unsupported.")
        if lifespan.supported:
            handler = make_asgi_handler(lifespan.app, self.config, lifespan.state,
                                        upgrade=websocket_upgrade(self.config))
        self.state = state = ServerState(self.config, handler)
        if self.heartbeat is not None and self.config.max_requests:
            # Each worker its own limit, so that workers started together
            # do not all recycle together.
            limit = self.config.max_requests + random.randint(0, self.config.max_requests_jitter)
            state.handler = self._count_requests(handler, limit)
        if self.config.access_log:
            state.on_response = AccessLog(self.config)
        if self.config.is_ssl:
            state.ssl_context = create_ssl_context(self.config)
        if self.config.trace:
            from . import trace

            trace.install(loop, state)
        self._tick()
        for sock in self.listeners:
            listener = Listener(self, sock)
            self._accepting.append(listener)
            listener.resume()
        if self._stopping.done():
            self._stop_taking_work()   # asked to stop while it booted
        if self.heartbeat is not None:
            self.heartbeat.ready()
        if self.on_ready is not None:
            self.on_ready()
        await self._stopping
        await self._drain()
        await lifespan.shutdown()
        for shutdown in self._executor_shutdown:
            shutdown()

    def _make_handler(self, app: Any) -> Any:
        """The request handler for ``app`` and its lifespan (off for WSGI)."""
        interface = self.config.interface
        if interface == "auto":
            interface = detect_interface(app)
            log.debug("detected interface: %s", interface)
        self.interface = interface
        if interface == "wsgi":
            from . import wsgi

            handler, shutdown = wsgi.make_handler(app, self.config, self.loop)
            self._executor_shutdown.append(shutdown)
            return handler, Lifespan(app, "off")
        if interface == "asgi2":
            app = asgi2_to_asgi3(app)
        handler = make_asgi_handler(app, self.config, upgrade=websocket_upgrade(self.config))
        return handler, Lifespan(app, self.config.lifespan)

    def stop(self) -> None:
        """Ask for a graceful stop; safe from any thread and from signal handlers."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        if self._stopping is not None and not self._stopping.done():
            self._stop_taking_work()
            self._stopping.set_result(None)

    def _count_requests(self, handler: Callable[..., Any], limit: int) -> Callable[..., Any]:
        """``handler`` counting requests: at ``limit`` the worker stops taking work.

        Counted as each request starts, not on the tick, so a worker serving
        20k requests a second stops within a few requests of its limit: the
        one that reaches it, and one more at most on each connection (read
        already, or arriving in the drain's grace window).
        """
        left = limit

        def counted(conn: Connection, request: Any) -> Any:
            nonlocal left
            left -= 1
            if left == 0:
                log.info("Worker %d served %d requests (--max-requests); stopping",
                         os.getpid(), limit)
                self.heartbeat.send(MESSAGE_MAX_REQUESTS)
                # Now, not on the next turn: every head read from here on is
                # a last request (Connection._begin), this one included, so a
                # busy keep-alive client cannot slip in more before the drain.
                self.state.draining = True
                conn.shutdown()
                # From the loop, not inside this connection's dispatch.
                self.loop.call_soon(self._begin_stop)
            return handler(conn, request)

        return counted

    def _install_signal_handlers(self) -> None:
        loop = self.loop
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_stop_signal, signum)
        if hasattr(signal, "SIGUSR1"):
            loop.add_signal_handler(signal.SIGUSR1, self._on_reopen_signal)
            if logs.take_owed_reopen():   # it came while we booted
                self._on_reopen_signal()

    def _on_reopen_signal(self) -> None:
        logs.reopen()
        log.info("Worker %d reopened its log files", os.getpid())

    def _on_stop_signal(self, signum: int) -> None:
        if self._stopping is not None and self._stopping.done():
            if signum != signal.SIGINT:
                return   # SIGTERM again (from the master and from systemd, say): still graceful
            # A second SIGINT: stop now.
            log.info("Stopping at once.")
            for conn in list(self.state.connections if self.state else ()):
                conn.abort()
            return
        log.info("Shutting down (signal %s)", signal.Signals(signum).name)
        self._begin_stop()

    # -- accepting ----------------------------------------------------------------

    def on_accept(self, sock: socket.socket, address: Any,
                  local: Optional[Tuple[str, int]] = None) -> None:
        state = self.state
        sock.setblocking(False)
        if type(address) is tuple:
            # A TCP peer: (host, port), plus flow and scope with IPv6; that of
            # a Unix socket is a path.  (Cheaper than sock.family, an enum.)
            # Responses are written whole; Nagle would only delay them.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = (address[0], address[1])
        else:
            client = None
        # Read the request at once (Connection's read_now), except under
        # --trace, whose stand-ins go in when a socket is registered.
        Connection(self.loop, sock, state, client, local, read_now=state.trace is None)

    # -- the tick ------------------------------------------------------------------

    def _tick(self) -> None:
        state = self.state
        loop = self.loop
        state.date_server = date_server_block(self.config)
        now = loop.time()
        for conn in list(state.connections):
            deadline = conn.deadline
            if deadline and deadline <= now:
                conn.on_timeout()
        self._tick_handle = loop.call_later(TICK_S, self._tick)
        if self.heartbeat is not None:
            self.heartbeat.beat(self)

    # -- stopping -----------------------------------------------------------------------

    def _stop_taking_work(self) -> None:
        """Accept what is already queued, then stop listening; from now on
        every response says ``connection: close``."""
        for listener in self._accepting:
            # A connection the kernel completed before we stopped was promised
            # service; the last process to close the listener would reset it.
            listener.on_readable()
            listener.pause()
            if self.close_listeners:
                listener.sock.close()
        self._accepting = []
        if self.state is not None:
            self.state.draining = True

    async def _drain(self) -> None:
        state = self.state
        for conn in list(state.connections):
            conn.shutdown()
        deadline = time.monotonic() + self.config.timeout_graceful_shutdown_s
        while state.connections and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        if state.connections:
            log.warning("Graceful shutdown timed out; closing %d connection(s)", len(state.connections))
            for conn in list(state.connections):
                conn.abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()


class Heartbeat:
    """The worker's end of its pipe to the master.

    The master reads single bytes: ``R`` once the worker serves, ``.`` on
    every tick (a loop that stops ticking is stuck and gets killed), ``M``
    once ``--max-requests`` is reached.  A write that would block is
    dropped: the master is behind, and the next byte says the same.
    """

    def __init__(self, pipe: int, master_pid: int) -> None:
        self.pipe = pipe
        self.master_pid = master_pid
        self.was_ready = False
        self._orphaned = False
        os.set_blocking(pipe, False)

    def ready(self) -> None:
        self.was_ready = True
        self.send(MESSAGE_READY)

    def beat(self, worker: "Worker") -> None:
        """Once a tick: say we are alive; stop if the master is gone."""
        self.send(MESSAGE_BEAT)
        if os.getppid() != self.master_pid and not self._orphaned:
            # Nobody would restart or stop us any more.
            self._orphaned = True
            log.warning("Worker %d: the master process is gone; stopping", os.getpid())
            worker.stop()

    def send(self, message: bytes) -> None:
        try:
            os.write(self.pipe, message)
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise


class Listener:
    """A listening socket on the loop: readable means connections to accept."""

    __slots__ = ("worker", "sock", "local", "_resume_handle")

    def __init__(self, worker: Worker, sock: socket.socket) -> None:
        self.worker = worker
        self.sock = sock
        # The local address of the connections it accepts, when it is known
        # here: that of a listener bound to one address.  On a wildcard
        # (0.0.0.0, ::) each connection asks the kernel (getsockname()).
        self.local = _specific_address(sock)
        self._resume_handle: Optional[asyncio.TimerHandle] = None

    def resume(self) -> None:
        self._resume_handle = None
        self.worker.loop.add_connection(self.sock, self, loop_module.EVENT_READ)

    def pause(self) -> None:
        self.worker.loop.remove_connection(self.sock)
        if self._resume_handle is not None:
            self._resume_handle.cancel()
            self._resume_handle = None

    # region: accept
    def on_readable(self) -> None:
        accept = self.sock.accept
        on_accept = self.worker.on_accept
        local = self.local
        state = self.worker.state
        for _ in range(ACCEPT_BATCH):
            if state.draining:
                # A request of this batch reached --max-requests, or the stop
                # began: each connection accepted now would be served a last
                # request at once (on_accept reads it), so take no more.
                return
            try:
                sock, address = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_RESOURCE_ERRNOS:
                    log.warning("accept() failed: %s; pausing accepts for %.1fs",
                                exc.strerror, ACCEPT_PAUSE_S)
                    self.pause()
                    self._resume_handle = self.worker.loop.call_later(ACCEPT_PAUSE_S, self.resume)
                    return
                # ECONNABORTED and friends: that client is gone, others wait.
                continue
            on_accept(sock, address, local)
    # endregion: accept

    def on_writable(self) -> None:
        pass

    def abort(self) -> None:
        self.pause()


def _specific_address(sock: socket.socket) -> Optional[Tuple[str, int]]:
    """``(host, port)`` of a TCP listener bound to one address, else None."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    name = sock.getsockname()
    host = name[0]
    if host in ("0.0.0.0", "::"):
        return None
    return (host, name[1])


def date_server_block(config: Config) -> bytes:
    """The header lines sent with every response: ``date``, ``server``, ``--header``.

    Built once a second by the tick, so a response pays nothing for them
    beyond copying the block.
    """
    block = b""
    if config.date_header:
        block += b"date: " + email.utils.formatdate(usegmt=True).encode("ascii") + b"\r\n"
    if config.server_header:
        block += b"server: selectserver\r\n"
    for header in config.headers:
        name, value = parse_header(header)
        block += name + b": " + value + b"\r\n"
    return block


class ServerStartError(RuntimeError):
    """A ``ServerThread`` did not start; the message says why, ``__cause__`` is the error."""


class ServerThread:
    """A server on a background thread: ``start()`` binds and waits until it
    serves, ``stop()`` drains it and joins.  For tests and embedding.

    ``address`` (``(host, port)``) and ``url`` are known once ``start()``
    returns.  ``start()`` raises ``ServerStartError`` saying what kept the
    worker from starting (the import error, the failed lifespan startup),
    or that it did not start in time; ``stop()`` re-raises what ended the
    server thread, and raises ``RuntimeError`` if the thread did not stop.
    """

    def __init__(self, app: Any, listeners: Optional[List[socket.socket]] = None, **options: Any) -> None:
        from .sockets import create_listeners

        options.setdefault("port", 0)
        options.setdefault("access_log", False)
        self.config = Config(app=app, **options)
        self.listeners = listeners if listeners is not None else create_listeners(self.config)
        # An import string, or a factory to call, is loaded by the worker as the CLI's is.
        given = None if isinstance(app, str) or self.config.factory else app
        self.worker = Worker(self.config, self.listeners, app=given, on_ready=self._on_ready)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="selectserver", daemon=True)
        # What ended the thread, until start() or stop() has raised it.
        self._error: Optional[BaseException] = None

    @property
    def address(self) -> Any:
        return self.listeners[0].getsockname()

    @property
    def url(self) -> str:
        url = describe(self.listeners[0])
        return "https" + url[4:] if self.config.is_ssl and url.startswith("http:") else url

    def start(self, timeout_s: float = 30.0) -> "ServerThread":
        self._thread.start()
        if not self._ready.wait(timeout_s):
            try:
                self.stop(timeout_s=5.0)
            except Exception as exc:
                raise ServerStartError("server did not start within %.0fs" % timeout_s) from exc
            raise ServerStartError("server did not start within %.0fs" % timeout_s)
        error, self._error = self._error, None
        if error is not None:
            if isinstance(error, ServerStartError):
                raise error
            raise ServerStartError("server failed to start: %s" % (error,)) from error
        return self

    def _on_ready(self) -> None:
        self._ready.set()

    def _run(self) -> None:
        try:
            self.worker.run(install_signals=False)
            failure = self.worker.failure
            if failure is not None:
                # Worker.run logged it and chose exit code 3; the caller gets the reason.
                self._error = ServerStartError("server failed to start (exit code %d): %s"
                                               % (self.worker.exit_code, failure))
                self._error.__cause__ = failure
            elif self.worker.exit_code:
                self._error = ServerStartError("server failed to start (exit code %d)"
                                               % self.worker.exit_code)
        except BaseException as exc:  # handed to the thread that calls start() or stop()
            self._error = exc
        finally:
            for sock in self.listeners:
                sock.close()
            self._ready.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain and join; raises what ended the server, or that it did not stop."""
        self.worker.stop()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise RuntimeError("server thread did not stop within %.0fs" % timeout_s)
        error, self._error = self._error, None
        if error is not None:
            raise error

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
