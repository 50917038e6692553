"""``wsgi.input``: the request body between the loop and the app's thread.

The loop feeds the body in (de-chunked by the parser) and the app's thread
reads it out with blocking calls.  Two ways, chosen per request by the
cycle (see docs/wsgi.md, "The request body"):

* buffered (the default): the loop collects the whole body before the app
  runs, in memory up to a bound, then in an anonymous temporary file; the
  app's reads never wait;
* whole at the head (a body that came with its head, the usual small
  POST): a plain ``io.BytesIO`` over the bytes, made by the cycle (this
  module's ``NO_BODY`` stands for it on the loop's side: nothing to feed);
* streamed (``--wsgi-stream-input``): the app runs at once and its first
  read asks the loop for the body; the loop stops pulling while the buffer
  holds ``high_bytes`` and resumes when the app has read it down to half.

It shares the cycle's lock: the cycle's state and the input change
together.  Invariant: a read never waits once the body has ended or
failed; after a failure, reads past the buffered bytes raise it.
"""

from __future__ import annotations

import collections
from typing import Any, List, Optional


class ClientDisconnected(OSError):
    """The client went away: raised by ``wsgi.input`` reads and ``write()``."""


class WSGIInput:
    """``wsgi.input``: the request body, filled by the loop, read by the app.

    ``read(n)`` returns ``n`` bytes unless the body ends first; ``read()``
    reads to the end; ``readline``, ``readlines`` and iteration behave as on
    a file.  Raises ``ClientDisconnected`` (an ``OSError``) when the body
    cannot come: the client left or its deadline passed.
    """

    __slots__ = ("_cycle", "_lock", "_chunks", "_offset", "_size", "_eof", "_error",
                 "_asked", "_paused", "_high_bytes", "_resume_bytes", "_file")

    def __init__(self, cycle: Any, has_body: bool, high_bytes: int) -> None:
        self._cycle = cycle
        self._lock = cycle.lock if cycle is not None else None
        self._chunks: collections.deque = collections.deque()
        self._offset = 0           # bytes of _chunks[0] already read
        self._size = 0             # unread bytes in _chunks
        self._eof = not has_body
        self._error: Optional[BaseException] = None
        self._asked = False        # the app's thread asked the loop for the body
        self._paused = False       # the buffer is full: the loop waits for reads
        self._high_bytes = high_bytes
        self._resume_bytes = high_bytes // 2
        self._file: Any = None     # the temporary file a large buffered body went to

    # -- the loop's side ------------------------------------------------------------

    @property
    def buffered_bytes(self) -> int:
        return self._size

    @property
    def ended(self) -> bool:
        """The whole body is here, or it failed: nothing more will be fed."""
        return self._eof or self._error is not None

    def wants_more(self) -> bool:
        """Should the loop pull the body now?  (Streamed: asked and not full.)"""
        return self._asked and not self._paused and not self._eof

    def feed(self, data: bytes) -> bool:
        """Streamed: add body bytes; True when the buffer is full and the
        loop should pause."""
        with self._lock:
            self._chunks.append(data)
            self._size += len(data)
            if self._size >= self._high_bytes:
                self._paused = True
            self._cycle.notify()
            return self._paused

    def collect(self, data: bytes) -> None:
        """Buffered: add body bytes before any thread has the input (no lock,
        nobody to wake; saves two lock round trips per request)."""
        file = self._file
        if file is not None:
            file.write(data)
        else:
            self._chunks.append(data)
            self._size += len(data)

    def collect_eof(self) -> None:
        """Buffered: the body is whole (before any thread has the input)."""
        if self._file is not None:
            self._file.seek(0)
        self._eof = True

    def spill(self, file: Any) -> None:
        """Buffered: move what is here, and what comes, to ``file`` (the
        app's thread does not read before ``feed_eof``)."""
        chunks = self._chunks
        while chunks:
            file.write(chunks.popleft())
        self._size = 0
        self._offset = 0
        self._file = file

    def feed_eof(self) -> None:
        with self._lock:
            self._eof = True
            self._cycle.notify()

    def fail(self, error: BaseException) -> None:
        """No more body will come: reads past the buffered bytes raise ``error``."""
        if self._eof:
            return
        with self._lock:
            self._error = error
            self._cycle.notify()

    def close(self) -> None:
        """Drop a temporary file (the cycle calls it when the request is done)."""
        if self._file is not None:
            self._file.close()

    # -- the app's side ----------------------------------------------------------------

    def read(self, size: Optional[int] = -1) -> bytes:
        return self._read(size, False)

    def readline(self, size: Optional[int] = -1) -> bytes:
        return self._read(size, True)

    def readlines(self, hint: Optional[int] = -1) -> List[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> "WSGIInput":
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _read(self, size: Optional[int], line: bool) -> bytes:
        """Up to ``size`` bytes (all if negative), stopping after a newline if ``line``."""
        if size is None or size < 0:
            size = -1
        elif size == 0:
            return b""
        pieces = []
        got = 0
        while size < 0 or got < size:
            piece = self._read_some(size - got if size >= 0 else -1, line)
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
            if line and piece[-1:] == b"\n":
                break
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _read_some(self, limit: int, line: bool) -> bytes:
        """At least one byte (at most ``limit``; up to a newline if ``line``),
        or ``b""`` at the end of the body.  Blocks while nothing is here."""
        if self._eof:
            # Nothing will be fed any more: no lock to take, nobody to wait for.
            file = self._file
            if file is not None:
                return file.readline(limit) if line else file.read(limit)
            return self._take(limit, line) if self._size else b""
        lock = self._lock
        while True:
            with lock:
                if self._size:
                    data = self._take(limit, line)
                    resume = self._paused and self._size <= self._resume_bytes
                    if resume:
                        self._paused = False
                    break
                if self._eof:
                    return b""
                if self._error is not None:
                    raise self._error
                if self._asked:
                    self._cycle.wait()
                    continue
                self._asked = True
            # Outside the lock: the loop may answer at once.  RFC 9110
            # §10.1.1: a 100 Continue goes out now, from the loop.
            self._cycle.request_body()
        if resume:
            self._cycle.request_body()
        return data

    def _take(self, limit: int, line: bool) -> bytes:
        chunks = self._chunks
        pieces = []
        taken = 0
        while chunks and (limit < 0 or taken < limit):
            chunk = chunks[0]
            start = self._offset
            end = len(chunk) if limit < 0 else min(len(chunk), start + limit - taken)
            found = -1
            if line:
                found = chunk.find(b"\n", start, end)
                if found >= 0:
                    end = found + 1
            if start == 0 and end == len(chunk):
                pieces.append(chunk)
            else:
                pieces.append(chunk[start:end])
            taken += end - start
            if end == len(chunk):
                chunks.popleft()
                self._offset = 0
            else:
                self._offset = end
            if found >= 0:
                break
        self._size -= taken
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


# A request without a body: one shared input, always at its end.
NO_BODY = WSGIInput(None, False, 0)
