"""Chapter 4: WSGI (PEP 3333) on a thread pool.

A WSGI application blocks, so it runs on one of ``--threads`` pool threads
while the loop goes on serving other connections.  One module per job:

* ``bridge``: how an app's thread asks the loop to act (``LoopQueue``);
* ``input``: ``wsgi.input``, the body between the loop and the thread;
* ``files``: ``wsgi.file_wrapper``, a file the loop sends by itself;
* ``environ``: the request as PEP 3333 describes it;
* ``cycle``: one request, its state table, both threads' sides;
* ``pool``: the threads, the bounded queue, the connection's handler.

Threads never touch a socket (DESIGN.md decision 6): the loop alone calls
the connection.
"""

from .bridge import LoopQueue
from .cycle import TRANSITIONS, CycleEvent, CycleState, ResponseGone, WSGICycle
from .environ import Environs, build_environ, script_name_of
from .files import FileWrapper
from .input import NO_BODY, ClientDisconnected, WSGIInput
from .pool import ThreadPool, make_handler

__all__ = [
    "LoopQueue", "TRANSITIONS", "CycleEvent", "CycleState", "ResponseGone", "WSGICycle",
    "Environs", "build_environ", "script_name_of", "FileWrapper", "NO_BODY", "ClientDisconnected",
    "WSGIInput", "ThreadPool", "make_handler",
]
