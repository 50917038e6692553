"""Errors a client can cause, each carrying the status that answers it.

Chapter 2 raises these; chapter 3 (the connection) catches ``HTTPError`` in
one place, answers ``exc.status`` with ``connection: close`` and stops parsing
that socket.  Nothing here knows about sockets or logging.
"""

from __future__ import annotations


class HTTPError(Exception):
    """A request the server refuses; ``status`` is the answer to send."""

    status = 400
    reason = "Bad Request"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason


class BadRequest(HTTPError):
    status, reason = 400, "Bad Request"


class RequestTimeout(HTTPError):
    status, reason = 408, "Request Timeout"


class ContentTooLarge(HTTPError):
    status, reason = 413, "Content Too Large"


class URITooLong(HTTPError):
    status, reason = 414, "URI Too Long"


class ExpectationFailed(HTTPError):
    status, reason = 417, "Expectation Failed"


class HeaderFieldsTooLarge(HTTPError):
    status, reason = 431, "Request Header Fields Too Large"


class NotImplementedCoding(HTTPError):
    """A Transfer-Encoding other than a final ``chunked`` (RFC 9112 §6.1)."""

    status, reason = 501, "Not Implemented"


class VersionNotSupported(HTTPError):
    status, reason = 505, "HTTP Version Not Supported"


class InvalidResponse(ValueError):
    """The application asked to send something HTTP cannot carry.

    Raised by the response writer (for example a header value with CR, LF or
    NUL).  It is the application's fault, so it is answered with 500 and
    logged as an application error, never sent.
    """
