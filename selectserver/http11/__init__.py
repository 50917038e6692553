"""HTTP/1.1 without I/O.

Bytes in, events out; events in, bytes out.  ``grammar`` spells the RFC 9110
and RFC 9112 rules as byte tables, ``events`` names what a request is made
of, ``parser.RequestParser`` turns received bytes into those events, and
``writer.ResponseWriter`` turns an application's status, headers and body
into bytes to send.  None of it knows about sockets, the loop, clocks or
logging: the connection (chapter 3) moves the bytes and keeps the time.

The one rule of the chapter: what a client sends can only produce events or
an ``errors.HTTPError`` carrying the status to answer, and what an
application sends can only produce valid HTTP or ``errors.InvalidResponse``.
``docs/http11.md`` explains the strictness rules and why.
"""

from .events import END_OF_MESSAGE, NEED_DATA, PAUSED, Data, EndOfMessage, Request
from .parser import Limits, RequestParser
from .writer import CONTINUE, ResponseWriter, error_response

__all__ = [
    "CONTINUE", "END_OF_MESSAGE", "NEED_DATA", "PAUSED", "Data", "EndOfMessage", "Limits",
    "Request", "RequestParser", "ResponseWriter", "error_response",
]
