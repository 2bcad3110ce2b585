from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from sealdrop.reviewer.prefetch import prefetched


def test_yields_everything_in_order_across_batches() -> None:
    assert list(prefetched(iter(range(1000)), depth=2, batch=7)) == list(range(1000))


def test_an_empty_source_ends_at_once() -> None:
    assert list(prefetched(iter([]))) == []


def test_an_error_comes_after_everything_before_it() -> None:
    def source() -> Iterator[int]:
        yield from range(40)
        raise ValueError("damaged chunk 40")

    received: list[int] = []
    with pytest.raises(ValueError, match="damaged chunk 40"):
        for item in prefetched(source(), batch=16):
            received.append(item)

    assert received == list(range(40))


def test_closing_early_stops_the_thread_and_the_source() -> None:
    produced: list[int] = []
    finished = threading.Event()

    def endless() -> Iterator[int]:
        try:
            n = 0
            while True:
                produced.append(n)
                yield n
                n += 1
        finally:
            finished.set()

    before = threading.active_count()
    chunks = prefetched(endless(), depth=2, batch=4)
    assert next(chunks) == 0
    chunks.close()

    assert threading.active_count() == before
    # Bounded read-ahead: at most the batches that fit in the hand-off, plus one in hand.
    assert len(produced) <= 4 * (2 + 2) + 1
