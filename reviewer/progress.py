"""Progress of `sealdrop open`: a redrawn bar on a terminal, plain lines otherwise.

Opening gigabytes takes minutes on an old offline laptop; without a sign of life
the reviewer may pull the plug mid-write. Logs and pipes get one line per file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from ..units import human_size

_BAR_WIDTH = 30
# Redrawing more often than this costs more than it tells.
_REDRAW_SECONDS = 0.1


class Progress:
    """Reports per-file progress on `stream`; `tty` chooses the bar or the plain lines."""

    def __init__(
        self,
        stream: TextIO,
        total_files: int,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._total_files = total_files
        self._tty = tty
        self._clock = clock
        self._number = 0
        self._file_size = 0
        self._last_draw = float("-inf")
        self._bar_shown = False

    def start_file(self, name: str, size: int) -> None:
        self._number += 1
        self._file_size = size
        self._last_draw = float("-inf")
        if self._tty:
            self.advance(0)

    def advance(self, done: int) -> None:
        """`done` bytes of the current spool file have been read."""
        if not self._tty:
            return
        now = self._clock()
        if now - self._last_draw < _REDRAW_SECONDS and done < self._file_size:
            return
        self._last_draw = now
        fraction = min(done / self._file_size, 1.0) if self._file_size else 1.0
        filled = round(fraction * _BAR_WIDTH)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        self._stream.write(
            f"\r{self._counter()} [{bar}] {fraction:4.0%} "
            f"{human_size(done)} / {human_size(self._file_size)}\x1b[K"
        )
        self._stream.flush()
        self._bar_shown = True

    def finish_file(self, verb: str, detail: str) -> None:
        """End the current file with one line: 'opened 3/10: 2026-11-29_3fa2c1d0 (...)'."""
        self.note(f"{verb} {self._counter()}: {detail}")

    def note(self, line: str) -> None:
        """A line of its own, clearing the bar first so the two do not mix."""
        if self._bar_shown:
            self._stream.write("\r\x1b[K")
            self._bar_shown = False
        self._stream.write(line + "\n")
        self._stream.flush()

    def _counter(self) -> str:
        return f"{self._number}/{self._total_files}"
