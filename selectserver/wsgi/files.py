"""``wsgi.file_wrapper``: a file the loop may send without reading it.

An app returns ``environ["wsgi.file_wrapper"](file, block_size)``; Flask,
Django and Bottle all do for their file responses.  Iterated, the wrapper
reads the file in blocks like any iterable.  The cycle looks for this class
instead: around a regular file with a descriptor, the loop sends it with
``Connection.send_file()`` (``os.sendfile``, the bytes never enter Python).
"""

from __future__ import annotations

from typing import Any

_FILE_BLOCK_BYTES = 8192


class FileWrapper:
    """``wsgi.file_wrapper``: a file as an iterable of blocks."""

    __slots__ = ("filelike", "block_size")

    def __init__(self, filelike: Any, block_size: int = _FILE_BLOCK_BYTES) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Any:
        read = self.filelike.read
        size = self.block_size
        while True:
            data = read(size)
            if not data:
                return
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()
