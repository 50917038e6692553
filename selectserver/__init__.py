"""selectserver: an HTTP/1.1 server for ASGI and WSGI apps, standard library only.

    import selectserver
    selectserver.run(app, host="127.0.0.1", port=8000)

or, on a background thread (tests, embedding)::

    with selectserver.ServerThread(app, port=0) as server:
        print(server.url)
"""

from __future__ import annotations

from typing import Any

from .config import Config

__version__ = "0.1.0"

__all__ = ["Config", "ServerThread", "run", "__version__"]


def __getattr__(name: str) -> Any:
    # ServerThread pulls in the whole server; importing a chapter (say
    # selectserver.http11.parser) should not.
    if name == "ServerThread":
        from .worker import ServerThread

        return ServerThread
    raise AttributeError("module 'selectserver' has no attribute %r" % name)


def run(app: Any, **options: Any) -> int:
    """Serve ``app`` (an object or ``"module:attr"``) until stopped; returns the exit code.

    Options are ``Config`` fields (``host``, ``port``, ``workers``, ...).
    """
    from . import logs, master

    config = Config(app=app, **options)
    logs.configure(config)
    return master.run(config)
