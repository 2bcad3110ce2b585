"""Decrypted payload chunks pulled on demand, read as a stream of record pieces."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .layout import MalformedPayload


class ByteQueue:
    """Pulls plaintext chunks on demand so no record is buffered whole unless small.

    It keeps the current chunk and an offset into it rather than a buffer: a piece
    read from it is one slice (no copy at all when it is the whole chunk), and
    nothing is ever moved to the front of a buffer.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._chunk = b""
        self._offset = 0
        self._pulled = 0

    @property
    def consumed(self) -> int:
        return self._pulled - (len(self._chunk) - self._offset)

    def _fill(self) -> bool:
        """Make sure unread bytes are at hand; False at the end of the payload."""
        while self._offset == len(self._chunk):
            chunk = next(self._chunks, None)
            if chunk is None:
                return False
            self._pulled += len(chunk)
            # Slices of `bytes` are `bytes`, whatever buffer type a caller passed in.
            self._chunk = chunk if type(chunk) is bytes else bytes(chunk)
            self._offset = 0
        return True

    def _piece(self, most: int) -> bytes:
        if not self._fill():
            raise MalformedPayload("the payload ends inside a record")
        start = self._offset
        piece = self._chunk[start : start + most]
        self._offset = start + len(piece)
        return piece

    def take(self, size: int) -> bytes:
        piece = self._piece(size) if size else b""
        if len(piece) == size:
            return piece
        parts = [piece]
        left = size - len(piece)
        while left:
            piece = self._piece(left)
            parts.append(piece)
            left -= len(piece)
        return b"".join(parts)

    def take_streamed(self, size: int) -> Iterator[bytes]:
        left = size
        while left:
            piece = self._piece(left)
            left -= len(piece)
            yield piece

    def at_end(self) -> bool:
        return not self._fill()
