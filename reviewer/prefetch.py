"""Decrypt ahead on a second core while the reviewer's machine hashes and writes.

Opening is three kinds of work of about equal cost: decryption (libsodium),
SHA-256 of each attachment (hashlib) and writing the plaintext out. All three run
in C and release the GIL, so decrypting the next chunks in a thread while the
caller verifies and writes the previous ones overlaps them: about 1.3-1.6x faster
on 2 cores (docs/PERFORMANCE.md). Order, errors and the end of the stream are
passed on exactly; memory stays bounded by `depth` batches of `batch` chunks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

T = TypeVar("T")

_PUT_WAIT = 0.1


class _End:
    """Put after the last batch: the source iterator ended without an error."""


class _Failed:
    """Put instead of a batch: the source iterator raised `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetched(items: Iterable[T], depth: int = 4, batch: int = 16) -> Generator[T, None, None]:
    """Yield what `items` yields, in order, computed ahead in a background thread.

    An exception from `items` is raised here, after everything before it was
    yielded. Closing this iterator early (or an exception in the consumer) stops
    the thread and waits for it, so nothing keeps reading once the caller gave up.
    """
    handoff: queue.Queue[list[T] | _End | _Failed] = queue.Queue(depth)
    stop = threading.Event()

    def hand_over(item: list[T] | _End | _Failed) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=_PUT_WAIT)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        group: list[T] = []
        try:
            for item in items:
                group.append(item)
                if len(group) == batch:
                    if not hand_over(group):
                        return
                    group = []
        except BaseException as error:  # handed to the consumer, which raises it
            if not group or hand_over(group):
                hand_over(_Failed(error))
            return
        if not group or hand_over(group):
            hand_over(_End())

    worker = threading.Thread(target=produce, name="sealdrop-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            got = handoff.get()
            if isinstance(got, _End):
                return
            if isinstance(got, _Failed):
                raise got.error
            yield from got
    finally:
        stop.set()
        worker.join()
