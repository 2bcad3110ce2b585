"""The framing of a multipart/form-data body: where each part's headers and data are.

Our own, not Werkzeug's. Werkzeug's sans-IO decoder has no documented way to hand a
part's data over without copying it through its own buffer, and used as it is it
put a delimiter's CR into a file when a read ended inside ``\\r\\n--BOUNDARY-`` or
inside a delimiter's padding; working around that meant reading its undocumented
state in eight places, with no pin on the release. The framing itself is small (a
line break, ``--``, the boundary, then ``--`` or padding and a line break), so
owning it is simpler to trust than tracking another project's internals: every
rule is below, and tests/test_upload_fastpath.py checks that any split of any body
gives what the whole body gives, and that browser-shaped bodies frame as Werkzeug
frames them.

The grammar (RFC 2046 section 5.1.1, with the line breaks browsers' peers send):

- a line break is CRLF, a lone CR or a lone LF;
- a delimiter is a line break, ``--`` and the boundary, then either ``--`` (the
  closing delimiter: what follows is the epilogue, ignored) or at most
  `MAX_DELIMITER_PADDING` spaces or tabs and a line break (the part headers follow);
  the body's first delimiter may also be the body's first line (no preamble);
- a part is header lines, an empty line, then data up to the next delimiter.

`MultipartFraming` is sans-IO: it is given the bytes at hand in the caller's buffer
and says how many it used; the rest (a possible delimiter cut by the end of a read,
or part headers not yet ended) must be given again with what follows. A part's data
goes to the sink as views of that buffer, never copied here. What it holds back is
bounded by `held_bound`.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Protocol

from .part_headers import PartHeaders, parse_part_headers
from .refusals import MalformedUpload, PartHeaderTooLarge

# Transport padding after a delimiter's boundary (RFC 2046); browsers send none.
MAX_DELIMITER_PADDING = 64
_CR, _LF, _DASH = ord("\r"), ord("\n"), ord("-")
_PADDING = frozenset(b" \t")


class PartSink(Protocol):
    """What the framing tells: parts begin, carry data, end."""

    def start_part(self, headers: PartHeaders) -> None: ...

    def part_data(self, data: memoryview) -> None:
        """More of the part's data: a view valid only during the call."""

    def end_part(self) -> None: ...


class _State(Enum):
    PREAMBLE = auto()
    HEADERS = auto()
    DATA = auto()
    EPILOGUE = auto()


class _Delimiter(Enum):
    INNER = auto()  # a part follows
    CLOSING = auto()  # the epilogue follows
    UNDECIDED = auto()  # the bytes after the boundary are not all at hand
    NONE = auto()  # not a delimiter: data that happens to hold ``--BOUNDARY``


# A ``--BOUNDARY`` right after a line break but followed by neither a delimiter's end
# nor its padding costs a step of Python each. A browser picks a boundary that appears
# nowhere in what it sends, so a real form has none; a body made of little else held
# the worker's event loop for about half a second per MiB (a hostile review), so an
# upload with more than this many is refused.
MAX_FALSE_DELIMITERS = 64


class MultipartFraming:
    """Frames one body, fed in pieces of any size (see the module's docstring)."""

    def __init__(self, boundary: bytes, max_header_bytes: int) -> None:
        self._dash_boundary = b"--" + boundary
        self._max_header_bytes = max_header_bytes
        # A delimiter cut by the end of the bytes at hand starts at a line break
        # within this many bytes of that end.
        self._tail = len(self._dash_boundary) + 1
        self._state = _State.PREAMBLE
        self._at_body_start = True
        self._preamble_bytes = 0
        self._false_delimiters = 0
        # Where the next header line starts, counted from the start of the headers.
        self._header_line = 0

    def may_close_within(self, data: bytearray, end: int) -> bool:
        """Whether `data[:end]` holds ``--BOUNDARY--``: only then can a body that ends
        there be a whole form (a browser never sends its boundary inside a part)."""
        return data.find(self._dash_boundary + b"--", 0, end) >= 0

    @property
    def held_bound(self) -> int:
        """The most bytes `feed` ever leaves unused: part headers not yet ended, or a
        delimiter's line break, boundary, padding and the CR of its last line break."""
        delimiter = 2 + len(self._dash_boundary) + MAX_DELIMITER_PADDING + 1
        return max(self._max_header_bytes, delimiter)

    @property
    def closed(self) -> bool:
        """The closing delimiter was seen: the rest of the body is the epilogue."""
        return self._state is _State.EPILOGUE

    def feed(self, data: bytearray, end: int, sink: PartSink, *, one_part: bool = False) -> int:
        """Frame `data[:end]`, telling `sink`; return how many bytes were used.

        With `one_part`, stop once a part has ended: what follows is for another sink.
        """
        position = 0
        while True:
            state = self._state
            if state is _State.EPILOGUE:
                position = end
            elif state is _State.HEADERS:
                position = self._headers(data, position, end, sink)
            else:
                position = self._data(data, position, end, sink)
            if position:
                self._at_body_start = False
            if self._state is state or (one_part and state is _State.DATA):
                return position

    def _data(self, data: bytearray, position: int, end: int, sink: PartSink) -> int:
        """A part's data (or the preamble) from `position`: hand out every byte that
        cannot begin a delimiter; at a delimiter, end the part. Returns where it stopped."""
        search = position
        while True:
            found = self._candidate(data, position, search, end)
            if found < 0:
                stop = self._data_end_without_delimiter(data, position, end)
                self._give(data, position, stop, sink)
                return stop
            start = self._delimiter_start(data, position, found)
            kind, after = (
                (_Delimiter.NONE, 0)
                if start is None
                else self._delimiter_end(data, found + len(self._dash_boundary), end)
            )
            if kind is _Delimiter.NONE:
                self._false_delimiters += 1
                if self._false_delimiters > MAX_FALSE_DELIMITERS:
                    raise MalformedUpload("the body repeats its boundary outside delimiters")
                search = found + 1
                continue
            assert start is not None
            self._give(data, position, start, sink)
            if kind is _Delimiter.UNDECIDED:
                return start
            if self._state is _State.DATA:
                sink.end_part()
            self._state = _State.HEADERS if kind is _Delimiter.INNER else _State.EPILOGUE
            return after

    def _candidate(self, data: bytearray, position: int, search: int, end: int) -> int:
        """The first ``--BOUNDARY`` at or after `search` that could belong to a
        delimiter: right after a line break at or after `position`, or at the body's
        very start; -1 if none. Searched for in C, so that a ``--BOUNDARY`` inside a
        line costs nothing."""
        dash_boundary = self._dash_boundary
        if search == position and self._at_body_start:
            if data.startswith(dash_boundary, position, end):
                return position
        first = -1
        for line_break in (b"\n", b"\r"):
            at = data.find(line_break + dash_boundary, max(search - 1, position), end)
            if at >= 0 and (first < 0 or at + 1 < first):
                first = at + 1
        return first

    def _data_end_without_delimiter(self, data: bytearray, position: int, end: int) -> int:
        """With no whole ``--BOUNDARY`` at hand, the data ends at the first line break
        close enough to the end to begin a cut delimiter (or at the end)."""
        if self._at_body_start and end - position < len(self._dash_boundary):
            if self._dash_boundary.startswith(data[position:end]):
                return position  # the body may begin with its first delimiter
        line_break = _first_line_break(data, max(position, end - self._tail), end)
        return end if line_break < 0 else line_break

    def _delimiter_start(self, data: bytearray, position: int, found: int) -> int | None:
        """Where the delimiter holding the ``--BOUNDARY`` at `found` starts, or None if
        no line break comes before it. Bytes before `position` were handed out as data,
        which never happens to a line break that may begin a delimiter."""
        if found - 2 >= position and data[found - 2] == _CR and data[found - 1] == _LF:
            return found - 2
        if found - 1 >= position and data[found - 1] in (_CR, _LF):
            return found - 1
        if found == position and self._at_body_start:
            return found
        return None

    @staticmethod
    def _delimiter_end(data: bytearray, after: int, end: int) -> tuple[_Delimiter, int]:
        """What follows a ``--BOUNDARY`` that ends at `after`, and where it ends."""
        if after < end and data[after] == _DASH:
            if after + 1 == end:
                return _Delimiter.UNDECIDED, 0
            if data[after + 1] == _DASH:
                return _Delimiter.CLOSING, after + 2
            return _Delimiter.NONE, 0
        position = after
        bound = min(end, after + MAX_DELIMITER_PADDING + 1)
        while position < bound and data[position] in _PADDING:
            position += 1
        if position - after > MAX_DELIMITER_PADDING:
            # Held back whole until its line break, it would be unbounded; refused
            # wherever the reads end, so that any split gives the same outcome.
            raise MalformedUpload("a delimiter padded with too much whitespace")
        if position == end:
            return _Delimiter.UNDECIDED, 0
        if data[position] == _LF:
            return _Delimiter.INNER, position + 1
        if data[position] == _CR:
            if position + 1 == end:
                return _Delimiter.UNDECIDED, 0  # CRLF or a lone CR: the next byte says
            return _Delimiter.INNER, position + (2 if data[position + 1] == _LF else 1)
        return _Delimiter.NONE, 0

    def _give(self, data: bytearray, start: int, stop: int, sink: PartSink) -> None:
        if stop <= start:
            return
        if self._state is _State.DATA:
            sink.part_data(memoryview(data)[start:stop])
            return
        self._preamble_bytes += stop - start
        if self._preamble_bytes > self._max_header_bytes:
            raise PartHeaderTooLarge("preamble too large")

    def _headers(self, data: bytearray, position: int, end: int, sink: PartSink) -> int:
        """A part's header lines from `position`, up to the empty line that ends them.
        Returns where the part's data starts, or `position` if the end is not at hand."""
        # Nothing past the limit is looked at: a longer block is refused either way.
        stop = min(end, position + self._max_header_bytes + 2)
        line = position + self._header_line
        while True:
            line_break = _first_line_break(data, line, stop)
            if line_break < 0 or (data[line_break] == _CR and line_break + 1 == end):
                break  # not ended yet (a CR last may be half of a CRLF)
            after = line_break + 1
            if data[line_break] == _CR and data[after] == _LF:
                after += 1
            if line_break == line:
                if after - position > self._max_header_bytes:
                    raise PartHeaderTooLarge("part header too large")
                sink.start_part(parse_part_headers(bytes(data[position:line_break])))
                self._state = _State.DATA
                self._header_line = 0
                return after
            line = after
        if end - position > self._max_header_bytes:
            raise PartHeaderTooLarge("part header too large")
        self._header_line = line - position
        return position


def _first_line_break(data: bytearray, start: int, stop: int) -> int:
    """The index of the first CR or LF in `data[start:stop]`, or -1."""
    breaks = [i for i in (data.find(b"\r", start, stop), data.find(b"\n", start, stop)) if i >= 0]
    return min(breaks) if breaks else -1
