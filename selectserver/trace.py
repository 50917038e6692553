"""Chapter 6, part 3: watching the loop, the connections and the app work.

``--trace`` narrates what the other chapters describe, as it happens, one
line per step, with the time since the trace began and a topic:

* ``loop``: each ``select()`` -- its timeout and why that one (callbacks
  ready, the next timer, or none), how long it waited and which fds came
  back -- every register/modify/unregister with its events, timers firing;
* ``conn``: accepts, every ``recv``/``send``/``sendmsg`` with its byte count
  (partial sends, ``EAGAIN``, EOF), the parser's events (head, body bytes,
  end) and each state change with its cause;
* ``app``: each application task started, suspended (in which coroutine,
  waiting on what), resumed (by what) and finished; each move of a WSGI
  request, on the loop or on the pool thread that runs it.

``--trace`` alone means ``--trace all``; ``--trace loop,conn`` picks topics.

The code it watches does not know it is watched.  Turning the trace on puts
stand-ins in place, and only then: the loop's selector is wrapped in a
``TracingSelector`` (which also swaps the ready queue for a deque that says
what the loop takes from it); when a listener or a connection registers with it, its
socket is wrapped in a tracing proxy and its parser becomes a
``TracingParser`` (the same object, a subclass with no fields of its own);
an ``AppTask`` becomes a ``TracingAppTask`` the same way when it starts.
The connection and the WSGI cycle report their state changes through a
``trace`` hook.  Off, it costs one ``is None`` test per task and per state
change.

Invariant: the trace changes what is printed, never what the server does;
every stand-in returns (or raises) exactly what the object it stands for
does.

    $ python -m selectserver selectserver.demo:app --trace
      1.3926 loop select(timeout=0.999, until the worker tick) waited 0.389s -> fd 3 (listener 127.0.0.1:8000) R
      1.3928 conn accept fd 7 from 127.0.0.1:56346 (listener fd 3)
      1.3930 loop register fd 7 (127.0.0.1:56346) for R

docs/trace.md reads a whole trace, line by line.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import ssl
import threading
import time
import weakref
from asyncio import futures
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple, Union

from . import task as task_module
from .asgi import HTTPCycle
from .errors import HTTPError
from .http11.events import Data, EndOfMessage, Request
from .http11.parser import RequestParser
from .loop import EVENT_READ, EVENT_WRITE
from .task import AppTask
from .wsgi import cycle as wsgi_cycle

TRACE = 5
TOPICS = ("loop", "conn", "app")
log = logging.getLogger("selectserver.trace")

# What the deadline of each state is called (connection.py sets them).
_TIMEOUTS = {"idle": "keep-alive timeout", "reading head": "request head timeout",
             "tls handshake": "TLS handshake timeout", "closing": "graceful close timeout",
             "running": "request body timeout", "running last": "request body timeout",
             "grace": "no last request in the grace window",
             "reading last head": "request head timeout", "lingering": "lingering close over"}

# The tracer of each traced loop, for the stand-ins that only know their loop.
_tracers: "weakref.WeakKeyDictionary[Any, Tracer]" = weakref.WeakKeyDictionary()


def parse_topics(value: Union[bool, str, None]) -> FrozenSet[str]:
    """The topics ``--trace VALUE`` selects: True or ``all`` is every topic.

    Raises ``ValueError`` naming an unknown topic.
    """
    if value is True:
        return frozenset(TOPICS)
    if not value:
        return frozenset()
    topics = set()
    for word in str(value).replace(" ", "").split(","):
        if word == "all":
            topics.update(TOPICS)
        elif word in TOPICS:
            topics.add(word)
        elif word:
            raise ValueError("unknown trace topic %r" % word)
    return frozenset(topics)


def install(loop: Any, server: Any) -> "Tracer":
    """Trace ``loop`` and the connections of ``server`` (``server.config.trace``
    says which topics)."""
    logging.addLevelName(TRACE, "TRACE")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(TRACE)
    config = server.config
    topics = parse_topics(config.trace)
    prefix = "[%d] " % os.getpid() if getattr(config, "workers", 1) > 1 else ""
    tracer = Tracer(loop, topics, prefix)
    _tracers[loop] = tracer
    loop._selector = TracingSelector(loop._selector, tracer)
    _trace_timers(loop, tracer)
    server.trace = tracer.on_transition
    task_module.trace_start = _on_task_start
    wsgi_cycle.trace = _on_wsgi_move
    wake_fd = _wake_up_fd(loop)
    if wake_fd is not None:
        tracer.say("loop", "fd %d is the wake-up pipe: other threads write a byte to it to "
                           "end a select() early (call_soon_threadsafe, when the loop may be "
                           "blocked in one)" % wake_fd)
    return tracer


class Tracer:
    """Writes the lines, and remembers what a later line needs to say."""

    def __init__(self, loop: Any, topics: FrozenSet[str], prefix: str = "") -> None:
        self.loop = loop
        self.topics = topics
        self.prefix = prefix
        self.started = time.monotonic()
        self.interest: Dict[int, int] = {}
        # fds whose peer closed its side: the next close is "EOF from the peer".
        self.eof: set = set()
        # The timer whose callback runs now: a close inside it was a deadline.
        self.current_timer: Optional[_Timer] = None
        # The request head parsed last, for the task its cycle starts.
        self.last_head: Optional[str] = None
        # The task whose resumption this tracer has just announced.
        self.announced: Optional[AppTask] = None
        # Futures of asyncio.sleep() by id, with their delay.
        self.sleeps: Dict[int, float] = {}
        # The ready callbacks the last select() line named, by id.
        self.named_handles: set = set()

    def say(self, topic: str, text: str, *args: Any) -> None:
        if topic in self.topics:
            if args:
                text = text % args
            log.log(TRACE, "%s%8.4f %-4s %s", self.prefix, time.monotonic() - self.started, topic, text)

    # -- connections ---------------------------------------------------------------

    def on_transition(self, conn: Any, old: Any, *event_and_new: Any) -> None:
        """The connection's trace hook: ``(conn, old, new)`` or ``(conn, old, event, new)``."""
        new = event_and_new[-1]
        if _state_name(new) in ("idle", "closed"):
            self.last_head = None
        if _state_name(new) == "closed":
            _parser_owners.pop(id(getattr(conn, "parser", None)), None)
        if "conn" not in self.topics:
            return
        fd = _fd_of(conn)
        if len(event_and_new) == 2:
            cause = self._describe_event(fd, old, event_and_new[0])
        else:
            cause = self._guess_cause(conn, old, new)
        self.say("conn", "fd %s %s -> %s%s", fd, _state_name(old), _state_name(new),
                 " (%s)" % cause if cause else "")

    def _describe_event(self, fd: Any, old: Any, event: Any) -> str:
        """The event the connection named, with what the trace knows of it."""
        cause = _event_name(event)
        if cause == "timeout":
            cause = _TIMEOUTS.get(_state_name(old), _state_name(old) + " timeout")
        elif cause == "peer gone" and fd in self.eof:
            self.eof.discard(fd)
            cause = "peer gone: EOF"
        return cause

    def _guess_cause(self, conn: Any, old: Any, new: Any) -> str:
        # Until the connection names the event itself: what the trace saw.
        old_name, new_name = _state_name(old), _state_name(new)
        fd = _fd_of(conn)
        if new_name == "running":
            return "a whole request head"
        if new_name == "reading head":
            return "part of a head arrived"
        if new_name == "idle":
            return "TLS handshake done" if old_name == "tls handshake" else "response done, keep-alive"
        if new_name == "upgraded":
            return "101 sent: the socket speaks another protocol now"
        if new_name == "closing":
            return "last response queued; close once it is sent"
        if new_name == "closed":
            if fd in self.eof:
                self.eof.discard(fd)
                return "EOF from the peer"
            if self.current_timer is not None:
                timeout = _TIMEOUTS.get(old_name, old_name + " deadline")
                return "%s, found by a timer: %s" % (timeout, self.current_timer.describe())
            if old_name == "closing":
                return "last response sent"
            if old_name == "running":
                return "response done, no keep-alive"
        return ""

    # -- tasks -----------------------------------------------------------------------------

    def describe_future(self, future: Any) -> str:
        delay = self.sleeps.get(id(future))
        if delay is not None:
            return "asyncio.sleep(%g)" % delay
        return "a " + type(future).__name__

    def describe_callback(self, callback: Any, args: tuple = ()) -> str:
        if isinstance(callback, _Timer):
            return callback.describe()
        if callback is futures._set_result_unless_cancelled and args:
            delay = self.sleeps.get(id(args[0]))
            waiter = _task_waiting_on(args[0])
            return "asyncio.sleep(%s)%s" % ("%g" % delay if delay is not None else "",
                                            " of " + waiter.get_name() if waiter else "")
        owner = getattr(callback, "__self__", None)
        name = getattr(callback, "__name__", "")
        if isinstance(owner, AppTask):
            return "%s of %s" % ("wake-up" if name == "_wakeup" else "step", owner.get_name())
        if name == "_tick" and type(owner).__name__ == "Worker":
            return "the worker tick"
        if name == "_guarded" and len(args) == 2:
            target, method = args
            who = (_peer(getattr(target, "client", None)) if hasattr(target, "parser")
                   else "the listener")
            return "%s() of %s (--loop asyncio: a reader's turn comes through the ready queue)" % (
                getattr(method, "__name__", "?"), who)
        if name == "_read_from_self":
            return "empty the wake-up pipe"
        if name == "submit_started":
            return "hand the WSGI requests of this turn to the thread pool"
        if name == "_run_batch" and hasattr(owner, "_pending"):
            # Each a callback, or a partial of one with its arguments.
            asked = [getattr(getattr(c, "func", c), "__name__", "?").strip("_")
                     for c in list(owner._pending)]
            return "do what WSGI threads asked: %s" % (", ".join(asked[:4]) + (", ..." if len(asked) > 4 else "")
                                                     if asked else "nothing left")
        if type(callback).__name__ == "TaskStepMethWrapper":
            return "a step of an asyncio task"
        if isinstance(owner, asyncio.Task):
            return "%s of asyncio task %s" % (name or "a step", owner.get_name())
        return getattr(callback, "__qualname__", None) or type(callback).__name__


# -- the loop: its selector and its timers -----------------------------------------------


class TracingSelector:
    """Wraps the loop's selector: says what each call asked and got."""

    def __init__(self, selector: Any, tracer: Tracer) -> None:
        self.selector = selector
        self.tracer = tracer

    def register(self, fileobj: Any, events: int, data: Any = None) -> Any:
        key = self.selector.register(fileobj, events, data)
        _attach_stand_ins(self.tracer, key.fd, _owner(data))
        self.tracer.interest[key.fd] = events
        self.tracer.say("loop", "register fd %d (%s) for %s", key.fd, _label(self.tracer, key), _events(events))
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> Any:
        key = self.selector.modify(fileobj, events, data)
        old = self.tracer.interest.get(key.fd, 0)
        self.tracer.interest[key.fd] = events
        if old != events:
            self.tracer.say("loop", "modify fd %d (%s): %s -> %s", key.fd, _label(self.tracer, key),
                            _events(old), _events(events))
        return key

    def unregister(self, fileobj: Any) -> Any:
        key = self.selector.unregister(fileobj)
        self.tracer.interest.pop(key.fd, None)
        self.tracer.say("loop", "unregister fd %d (%s)", key.fd, _label(self.tracer, key))
        return key

    def select(self, timeout: Optional[float] = None) -> List[Tuple[Any, int]]:
        tracer = self.tracer
        loop = tracer.loop
        ready_queue = getattr(loop, "_ready", None)
        if ready_queue is not None and type(ready_queue) is collections.deque:
            # Swapped here, between two turns' callbacks, with its contents:
            # a loop that reads loop._ready at every pop sees one queue, and
            # one that kept it in a local for this turn still runs it.
            loop._ready = TracingReadyQueue(ready_queue, tracer)
            ready_queue.clear()
        why = _why(tracer, timeout) if "loop" in tracer.topics else ""
        # Named in this select's line already: their turn to run says nothing.
        tracer.named_handles = set(map(id, loop._ready)) if timeout == 0 else set()
        began = time.monotonic()
        ready = self.selector.select(timeout)
        if "loop" in tracer.topics:
            waited = time.monotonic() - began
            if timeout is None:
                asked = "select(timeout=None, %s)" % why
            else:
                asked = "select(timeout=%s%s)" % ("%.3f" % timeout if timeout else "0",
                                                  ", " + why if why else "")
            if waited >= 0.0005:
                asked += " waited %.3fs" % waited
            if ready:
                got = ", ".join("fd %d (%s) %s" % (key.fd, _label(tracer, key), _events(mask))
                                for key, mask in ready)
            elif timeout:
                got = "timed out"
            else:
                got = "no I/O"
            tracer.say("loop", "%s -> %s", asked, got)
        return ready

    def __getattr__(self, name: str) -> Any:
        # get_key, get_map, close ...: the wrapped selector's own.
        return getattr(self.selector, name)


def _why(tracer: Tracer, timeout: Optional[float]) -> str:
    """Why ``select()`` got this timeout, read from the loop's queues."""
    loop = tracer.loop
    if timeout is None:
        return "no timers: only I/O can wake the loop"
    if timeout == 0:
        ready = list(getattr(loop, "_ready", ()))
        if not ready:
            return "the loop is stopping" if getattr(loop, "_stopping", False) else ""
        names = [tracer.describe_callback(h._callback, h._args) for h in ready[:3]]
        more = ", ..." if len(ready) > 3 else ""
        return "%d ready callback%s: %s%s" % (len(ready), "" if len(ready) == 1 else "s",
                                              ", ".join(names), more)
    scheduled = getattr(loop, "_scheduled", None)
    if scheduled:
        top = scheduled[0]
        return "until " + tracer.describe_callback(top._callback, top._args)
    return ""


class TracingReadyQueue(collections.deque):
    """The loop's ready queue, saying which callback the loop runs next.

    Callbacks that other lines already tell of are not repeated: timers
    (they say they fired), a task's steps (the task says it resumed).
    """

    def __init__(self, items: Any, tracer: Tracer) -> None:
        super().__init__(items)
        self.tracer = tracer

    def popleft(self) -> Any:
        handle = super().popleft()
        callback = getattr(handle, "_callback", None)
        if (not getattr(handle, "_cancelled", False) and not isinstance(callback, _Timer)
                and id(handle) not in self.tracer.named_handles):
            owner = getattr(callback, "__self__", None)
            if not isinstance(owner, AppTask) and "loop" in self.tracer.topics:
                self.tracer.say("loop", "run callback: %s",
                                self.tracer.describe_callback(callback, getattr(handle, "_args", ())))
        return handle


class _Timer:
    """A timer's callback, wrapped to say when it fires and what it is."""

    __slots__ = ("tracer", "callback", "args", "delay_s")

    def __init__(self, tracer: Tracer, callback: Any, args: tuple, delay_s: float) -> None:
        self.tracer = tracer
        self.callback = callback
        self.args = args
        self.delay_s = delay_s

    def describe(self) -> str:
        return self.tracer.describe_callback(self.callback, self.args)

    def __call__(self, *args: Any) -> Any:
        tracer = self.tracer
        if self.callback is futures._set_result_unless_cancelled:
            # Describe before it runs: then the sleeping task is still known.
            tracer.say("loop", "timer fired after %.3fs: %s ends; its task's wake-up is queued",
                       self.delay_s, self.describe())
        elif not (getattr(self.callback, "__name__", "") == "_tick"):
            # (The worker tick fires every second; its select() line says so.)
            tracer.say("loop", "timer fired after %.3fs: %s", self.delay_s, self.describe())
        tracer.current_timer = self
        try:
            return self.callback(*args)
        finally:
            tracer.current_timer = None


def _trace_timers(loop: Any, tracer: Tracer) -> None:
    # call_later() and asyncio.sleep() go through call_at(); an attribute of
    # the loop object shadows the method, for this loop only.
    call_at = loop.call_at

    def traced_call_at(when: float, callback: Any, *args: Any, context: Any = None) -> Any:
        delay = when - loop.time()
        if callback is futures._set_result_unless_cancelled and args:
            tracer.sleeps[id(args[0])] = round(delay, 3)
        return call_at(when, _Timer(tracer, callback, args, delay), *args, context=context)

    loop.call_at = traced_call_at


def _wake_up_fd(loop: Any) -> Optional[int]:
    ssock = getattr(loop, "_ssock", None)
    return ssock.fileno() if ssock is not None else None


# -- labels ----------------------------------------------------------------------------------


def _events(mask: int) -> str:
    return ("R" if mask & EVENT_READ else "") + ("W" if mask & EVENT_WRITE else "") or "nothing"


def _owner(data: Any) -> Any:
    """The listener or connection behind a selector key's data.

    On ``--loop asyncio`` a connection is watched through asyncio's
    ``add_reader()``: the data is a pair of handles calling
    ``StockLoop._guarded(conn, method)``.
    """
    if isinstance(data, tuple) and len(data) == 2:
        for handle in data:
            if handle is not None and getattr(handle._callback, "__name__", "") == "_guarded":
                return handle._args[0]
    return data


def _label(tracer: Tracer, key: Any) -> str:
    """What an fd is, for a reader: listener, peer address, wake-up pipe, websocket."""
    data = key.data
    if isinstance(data, tuple):
        if key.fd == _wake_up_fd(tracer.loop):
            return "wake-up pipe"
        owner = _owner(data)
        if owner is data:
            handle = data[0] or data[1]
            owner = getattr(getattr(handle, "_callback", None), "__self__", None)
            return "asyncio %s" % (type(owner).__name__ if owner is not None else "socket")
        data = owner
    if hasattr(data, "parser"):
        peer = _peer(getattr(data, "client", None))
        return "websocket " + peer if _state_name(getattr(data, "state", None)) == "upgraded" else peer
    if hasattr(data, "sock"):
        return "listener " + _sockname(data.sock)
    return type(data).__name__


def _peer(client: Any) -> str:
    return "%s:%s" % (client[0], client[1]) if client else "unix socket"


def _sockname(sock: Any) -> str:
    try:
        name = sock.getsockname()
    except OSError:
        return "?"
    if isinstance(name, tuple):
        return "%s:%s" % (name[0], name[1])
    return "unix:%s" % (name or "?")


def _fd_of(conn: Any) -> Union[int, str]:
    sock = getattr(conn, "sock", None)
    if isinstance(sock, TracingSocket):
        return sock.fd
    try:
        fd = sock.fileno()
    except (AttributeError, OSError):
        return "?"
    return fd if fd >= 0 else "?"


def _state_name(state: Any) -> str:
    value = getattr(state, "value", state)
    return value if isinstance(value, str) else getattr(state, "name", str(state)).lower()


def _event_name(event: Any) -> str:
    value = getattr(event, "value", None)
    if isinstance(value, str):
        return value
    return getattr(event, "name", str(event)).lower().replace("_", " ")


# -- stand-ins: sockets, parsers -----------------------------------------------------------


# region: stand-ins
def _attach_stand_ins(tracer: Tracer, fd: int, data: Any) -> None:
    """Put tracing stand-ins into what was just registered (the first time)."""
    sock = getattr(data, "sock", None)
    if sock is None:
        return
    if hasattr(data, "parser"):
        # A connection.  (Whether it speaks TLS the connection asks of its
        # server's ssl_context, not of the socket, so a stand-in is safe.)
        if not isinstance(sock, TracingSocket):
            data.sock = TracingSocket(sock, fd, tracer)
            tracer.eof.discard(fd)
        parser = data.parser
        if type(parser) is RequestParser:
            parser.__class__ = TracingParser
            _parser_owners[id(parser)] = (tracer, fd)
    elif hasattr(sock, "accept") and not isinstance(sock, TracingListenSocket):
        data.sock = TracingListenSocket(sock, fd, tracer)
# endregion: stand-ins


class TracingListenSocket:
    """A listening socket that says what each ``accept()`` returned."""

    def __init__(self, sock: Any, fd: int, tracer: Tracer) -> None:
        self.sock = sock
        self.fd = fd
        self.tracer = tracer

    def accept(self) -> Any:
        try:
            conn, address = self.sock.accept()
        except BlockingIOError:
            self.tracer.say("conn", "accept on fd %d: EAGAIN (no more connections waiting)", self.fd)
            raise
        self.tracer.say("conn", "accept fd %d from %s (listener fd %d)", conn.fileno(),
                        _peer(address) if isinstance(address, tuple) else "a unix socket", self.fd)
        return conn, address

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class TracingSocket:
    """A connection's socket that says what each ``recv``/``send`` moved.

    Over TLS the byte counts are the application's (decrypted) bytes, and
    "the TLS layer wants to read" is TLS's way of saying EAGAIN: a record
    is not whole yet, or the handshake needs the peer's next message.
    """

    def __init__(self, sock: Any, fd: int, tracer: Tracer) -> None:
        self.sock = sock
        self.fd = fd
        self.tracer = tracer
        self.tls = isinstance(sock, ssl.SSLSocket)
        if self.tls:
            tracer.say("conn", "fd %d speaks TLS: recv/send below count decrypted bytes", fd)

    def do_handshake(self) -> None:
        try:
            self.sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            self.tracer.say("conn", "fd %d TLS handshake: %s", self.fd, _tls_wants(exc))
            raise
        except OSError as exc:
            self.tracer.say("conn", "fd %d TLS handshake failed: %s", self.fd, exc)
            raise
        self.tracer.say("conn", "fd %d TLS handshake done: %s, %s", self.fd,
                        self.sock.version(), (self.sock.cipher() or ("?",))[0])

    def recv(self, size: int) -> bytes:
        try:
            data = self.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            self.tracer.say("conn", "fd %d recv: EAGAIN (nothing to read after all)", self.fd)
            raise
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            self.tracer.say("conn", "fd %d recv: %s", self.fd, _tls_wants(exc))
            raise
        except OSError as exc:
            self.tracer.say("conn", "fd %d recv: %s", self.fd, _errno_name(exc))
            raise
        if data:
            self.tracer.say("conn", "fd %d recv %d bytes", self.fd, len(data))
        else:
            self.tracer.eof.add(self.fd)
            self.tracer.say("conn", "fd %d recv: EOF (the peer closed its side)", self.fd)
        return data

    def send(self, data: Any) -> int:
        return self._sent("send", len(data), 1, self.sock.send, data)

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        buffers = list(buffers)
        return self._sent("sendmsg", sum(len(b) for b in buffers), len(buffers),
                          self.sock.sendmsg, buffers, *args)

    def _sent(self, call: str, size: int, pieces: int, method: Callable, *args: Any) -> int:
        what = "%s %d piece%s" % (call, pieces, "" if pieces == 1 else "s") if pieces > 1 else call
        try:
            sent = method(*args)
        except (BlockingIOError, InterruptedError):
            self.tracer.say("conn", "fd %d %s: EAGAIN (the kernel's send buffer is full; "
                                    "wait for EVENT_WRITE)", self.fd, what)
            raise
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as exc:
            self.tracer.say("conn", "fd %d %s: %s", self.fd, what, _tls_wants(exc))
            raise
        except OSError as exc:
            self.tracer.say("conn", "fd %d %s: %s", self.fd, what, _errno_name(exc))
            raise
        if sent < size:
            self.tracer.say("conn", "fd %d %s %d of %d bytes (partial: the rest waits for EVENT_WRITE)",
                            self.fd, what, sent, size)
        else:
            self.tracer.say("conn", "fd %d %s %d bytes", self.fd, what, sent)
        return sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def _tls_wants(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLWantReadError):
        return "the TLS layer wants to read first (no whole record yet; wait for EVENT_READ)"
    return "the TLS layer wants to write first (wait for EVENT_WRITE)"


def _errno_name(exc: OSError) -> str:
    code = exc.errno
    return errno.errorcode.get(code, str(exc)) if code else type(exc).__name__


# The tracer and fd of each TracingParser (a parser has no room for them).
_parser_owners: Dict[int, Tuple[Tracer, int]] = {}


class TracingParser(RequestParser):
    """The same parser, saying which events it hands out."""

    __slots__ = ()   # same layout as RequestParser: an object can switch class

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except HTTPError as exc:
            owner = _parser_owners.get(id(self))
            if owner is not None:
                tracer, fd = owner
                tracer.say("conn", "fd %d parser: %d %s", fd, exc.status, exc.detail)
            raise
        cls = event.__class__
        if cls is Request or cls is Data or cls is EndOfMessage:
            owner = _parser_owners.get(id(self))
            if owner is not None:
                tracer, fd = owner
                if cls is Request:
                    head = "%s %s HTTP/%s" % (event.method.decode("ascii", "replace"),
                                              event.target.decode("ascii", "replace"),
                                              event.http_version)
                    tracer.last_head = head.rsplit(" ", 1)[0]
                    tracer.say("conn", "fd %d parser: head %s", fd, head)
                elif cls is Data:
                    tracer.say("conn", "fd %d parser: body, %d bytes", fd, len(event.data))
                else:
                    tracer.say("conn", "fd %d parser: end of request", fd)
        return event

    def take_body(self) -> Any:
        body = super().take_body()
        owner = _parser_owners.get(id(self))
        if body is not None and owner is not None:
            # The body and the end at once, said as next_event() says them.
            tracer, fd = owner
            tracer.say("conn", "fd %d parser: body, %d bytes", fd, len(body))
            tracer.say("conn", "fd %d parser: end of request", fd)
        return body

    def next_request(self, skip_body: bool = True) -> bool:
        before = self.buffered_bytes
        ready = super().next_request(skip_body)
        owner = _parser_owners.get(id(self))
        if owner is not None:
            tracer, fd = owner
            if not ready:
                tracer.say("conn", "fd %d parser: the request body is not all here or may not be "
                                   "read; the connection cannot be reused", fd)
            else:
                skipped = before - self.buffered_bytes
                tracer.say("conn", "fd %d parser: request done; ready for the next one%s", fd,
                           " (%d unread body bytes skipped)" % skipped if skipped else "")
        return ready


# -- tasks --------------------------------------------------------------------------------------


def _on_task_start(task: AppTask) -> None:
    """``task.trace_start``: a task's first step is about to run."""
    tracer = _tracers.get(task._loop)
    tracing_class = _TRACING_CLASSES.get(type(task))
    if tracer is None or "app" not in tracer.topics or tracing_class is None:
        return
    task.__class__ = tracing_class
    coro = task._coro
    name = getattr(coro, "__qualname__", type(coro).__name__)
    head, tracer.last_head = tracer.last_head, None
    tracer.announced = task
    tracer.say("app", "%s started: %s()%s, its first step runs now", task.get_name(), name,
               " for " + head if head else "")


def _task_waiting_on(future: Any) -> Optional[AppTask]:
    for callback, _ in getattr(future, "_callbacks", None) or ():
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, AppTask):
            return owner
    return None


def _await_chain(coro: Any) -> str:
    """Where a coroutine is suspended: ``app > receive``."""
    names = []
    while coro is not None and len(names) < 32:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if code is None or code.co_name == "__await__":
            break   # the future itself (pure-Python futures are generators)
        names.append(code.co_name + "()")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if len(names) > 4:
        names = names[:1] + ["..."] + names[-2:]
    return " > ".join(names)


def _on_wsgi_move(cycle: Any, old: Any, event: Any, new: Any) -> None:
    """``wsgi.cycle.trace``: a WSGI request moved, on the loop or on a pool thread."""
    conn = cycle.conn
    tracer = _tracers.get(getattr(conn, "loop", None))
    if tracer is None or old is new:
        return
    environ = cycle.environ
    on_loop = threading.get_ident() == getattr(tracer.loop, "_thread_id", None)
    tracer.say("app", "WSGI %s %s on fd %s: %s -> %s (%s, %s)",
               environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", "?"), _fd_of(conn),
               _state_name(old), _state_name(new), _event_name(event),
               "on the loop" if on_loop else "in thread " + threading.current_thread().name)


class TracingSteps:
    """What the tracing variant of a task class adds: it says how the task
    is stepped.  Mixed in before the class it traces, with no fields of its
    own, so that a started task can switch class."""

    __slots__ = ()

    def _step(self, exc: Optional[BaseException] = None) -> None:
        tracer = _tracers.get(self._loop)
        if tracer is not None:
            if tracer.announced is not self:
                # Not from start() or a future's callback: a queued step.
                tracer.say("app", "%s resumed from the ready queue%s", self.get_name(),
                           " with %s" % type(exc).__name__ if exc is not None else
                           " (it yielded to the loop, as asyncio.sleep(0) does)")
            tracer.announced = None
        super()._step(exc)

    def _wait_for(self, result: Any) -> None:
        super()._wait_for(result)
        tracer = _tracers.get(self._loop)
        if tracer is not None and self._state == "PENDING":
            where = _await_chain(self._coro)
            if getattr(result, "_asyncio_future_blocking", None) is not None:
                tracer.say("app", "%s suspended in %s, waiting on %s", self.get_name(), where,
                           tracer.describe_future(result))
            else:
                tracer.say("app", "%s suspended in %s until the next turn", self.get_name(), where)

    def _wakeup(self, future: Any) -> None:
        tracer = _tracers.get(self._loop)
        if tracer is not None:
            tracer.announced = self
            described = tracer.describe_future(future)
            if described.startswith("a "):
                described = "the %s it waited on" % described[2:]
            if future.cancelled():
                how = "%s was cancelled" % described
            elif future.exception() is not None:
                how = "%s failed: %s" % (described, type(future.exception()).__name__)
            elif described.startswith("asyncio.sleep"):
                how = "%s is over" % described
            else:
                how = "%s is done" % described
            tracer.sleeps.pop(id(future), None)
            tracer.say("app", "%s resumed: %s", self.get_name(), how)
        super()._wakeup(future)

    def _ended(self) -> None:
        tracer = _tracers.get(self._loop)
        if tracer is not None:
            exc = self._exception
            if self._state == "CANCELLED":
                how = "cancelled"
            elif exc is not None:
                how = "raised " + type(exc).__name__
            else:
                how = "returned"
            tracer.say("app", "%s finished: %s", self.get_name(), how)
        super()._ended()


class TracingAppTask(TracingSteps, AppTask):
    """An ``AppTask``, saying how it is stepped."""

    __slots__ = ()   # same layout as AppTask


class TracingHTTPCycle(TracingSteps, HTTPCycle):
    """An ASGI exchange (its own task), saying how its app is stepped."""

    __slots__ = ()   # same layout as HTTPCycle


# The tracing variant of each task class; a task of another class (a
# subclass, or one already switched) is not traced.
_TRACING_CLASSES = {AppTask: TracingAppTask, HTTPCycle: TracingHTTPCycle}

