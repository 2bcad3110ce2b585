"""The body's rate floor (web.body.RateFloor): a trickling body is dropped as a
ClientGone that keeps nothing (web.upload), a Tor-like upload with a minute's
stalls never is. A simulated clock: hours of sending in milliseconds."""

from __future__ import annotations

import io
from typing import IO, cast

import pytest

from sealdrop.web.body import BodyReader, RateFloor
from sealdrop.web.refusals import BodyTooSlow, ClientGone

RATE = 500
WINDOW = 120.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(floor: RateFloor, clock: Clock, pattern: list[tuple[float, int]], repeat: int) -> int:
    """Send (seconds to wait, bytes then) pieces `repeat` times; the bytes sent."""
    received = 0
    for _ in range(repeat):
        for wait, size in pattern:
            clock.now += wait
            received += size
            floor.check(received)
    return received


def test_a_tor_upload_at_20_kb_s_with_a_minutes_stalls_is_never_dropped() -> None:
    clock = Clock()
    floor = RateFloor(RATE, WINDOW, clock)
    # 60 s at 20 KB/s (a read a second), then a 60 s stall, for two hours.
    flowing = [(1.0, 20_000)] * 60
    assert feed(floor, clock, [*flowing, (60.0, 1)], repeat=60) > 70_000_000


def test_a_body_below_the_floor_is_dropped_as_a_client_gone_once_the_window_passed() -> None:
    clock = Clock()
    floor = RateFloor(RATE, WINDOW, clock)
    # 400 bytes a second: dropped at the first read after the first whole window.
    with pytest.raises(BodyTooSlow) as raised:
        feed(floor, clock, [(1.0, 400)], repeat=1000)
    assert isinstance(raised.value, ClientGone)
    assert WINDOW <= clock.now - 1000.0 <= WINDOW + 1


def test_a_fast_start_earns_no_right_to_trickle_later() -> None:
    clock = Clock()
    floor = RateFloor(RATE, WINDOW, clock)
    feed(floor, clock, [(1.0, 1_000_000)], repeat=30)
    started = clock.now
    with pytest.raises(BodyTooSlow):
        feed(floor, clock, [(2.0, 1)], repeat=1000)
    # Dropped within a window and a mark's step after the trickle began.
    assert clock.now - started <= WINDOW + WINDOW / 16 + 2


def test_a_byte_every_few_minutes_is_dropped_at_its_second_read() -> None:
    clock = Clock()
    floor = RateFloor(RATE, WINDOW, clock)
    feed(floor, clock, [(100.0, 1)], repeat=1)
    with pytest.raises(BodyTooSlow):
        feed(floor, clock, [(100.0, 1)], repeat=1)


def test_exactly_the_floor_passes() -> None:
    clock = Clock()
    floor = RateFloor(RATE, WINDOW, clock)
    feed(floor, clock, [(1.0, RATE)], repeat=1000)


class Slow(io.RawIOBase):
    """A stream handing out `piece` bytes per read while the clock moves `step`."""

    def __init__(self, data: bytes, piece: int, clock: Clock, step: float) -> None:
        self._data, self._piece, self._clock, self._step = data, piece, clock, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self._clock.now += self._step
        size = min(self._piece, len(buffer), len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


def test_the_body_reader_applies_the_floor_and_counts_what_arrived() -> None:
    clock = Clock()
    data = b"x" * 100_000
    reader = BodyReader(
        cast(IO[bytes], Slow(data, 100, clock, 1.0)),
        len(data),
        10**9,
        0,
        RateFloor(RATE, WINDOW, clock),
    )
    with pytest.raises(BodyTooSlow):
        while reader.read():
            reader.filled = 0
    assert 120 * 100 <= reader.received <= 122 * 100


def test_without_a_floor_the_body_reader_waits_for_any_rate() -> None:
    clock = Clock()
    data = b"x" * 20_000
    reader = BodyReader(cast(IO[bytes], Slow(data, 10, clock, 1.0)), len(data), 10**9, 0)
    while reader.read():
        reader.filled = 0
    assert reader.received == len(data)
