"""Building a submission from the parts of a form: the message, then the files.

The framing (web.multipart) says where parts begin and end; this decides what each
part means for the `Submission` and enforces the content limits as the bytes come.
The form sends the message field first, then the files; any other field is
ignored. File names go to the submission exactly as the browser sent them (the
format bounds their length, records.MAX_NAME_BYTES; the reviewer's side makes them
safe to use as file names).
"""

from __future__ import annotations

from ..storage.spool import Submission
from ..wipe import zero
from .part_headers import PartHeaders
from .refusals import EmptySubmission, MalformedUpload, MessageTooLong, TooManyFiles, UploadLimits

MESSAGE_FIELD = "message"
FILES_FIELD = "files"
DEFAULT_MEDIA_TYPE = "application/octet-stream"
# UTF-8 needs at most 4 bytes per character: a longer body is too long whatever it says.
_MAX_UTF8_BYTES_PER_CHAR = 4
# Parts beyond the files and the message: room for a browser's odd extra field, no more.
_EXTRA_PARTS = 2


class SubmissionBuilder:
    """Turns the framing's parts into calls on the Submission (a web.multipart.PartSink)."""

    def __init__(self, submission: Submission, limits: UploadLimits) -> None:
        self._submission = submission
        self._limits = limits
        self._part: str | None = None  # "message", "file", or "ignored"
        self._parts = 0
        self._message = bytearray()
        self._message_seen = False
        self._message_added = False
        self._files = 0
        self._pending_file: tuple[str, str] | None = None  # (name, media type) not begun yet
        self._file_open = False

    def start_part(self, headers: PartHeaders) -> None:
        self._parts += 1
        if self._parts > self._limits.max_files + _EXTRA_PARTS:
            raise TooManyFiles("too many parts")
        if headers.filename is None:
            self._start_field(headers.name)
        else:
            self._start_file(headers.name, headers.filename, headers.media_type)

    def part_data(self, data: memoryview) -> None:
        """More of the current part's data (the view is only valid during the call)."""
        if self._part == MESSAGE_FIELD:
            self._message += data
            if len(self._message) > self._limits.max_message_chars * _MAX_UTF8_BYTES_PER_CHAR:
                raise MessageTooLong("message too long")
        elif self._part == "file" and data:
            if not self._file_open:
                self._begin_file()
            self._submission.write(data)

    def end_part(self) -> None:
        if self._part == "file" and self._file_open:
            self._submission.end_attachment()
            self._file_open = False
        self._pending_file = None
        self._part = None

    def finish(self) -> None:
        """Check the whole: something must have been sent. Called after the last part."""
        self._flush_message()
        if not self._message_added and self._files == 0:
            raise EmptySubmission("nothing was sent")

    def cut(self) -> bool:
        """The client went away: keep what arrived, if anything (Submission.commit_partial).

        Bytes the framing still held back (they could have begun a delimiter) are not
        known to be part data, and are dropped; so is a character the cut split in two.
        The content limits still apply. Returns whether anything was kept.
        """
        in_message = self._part == MESSAGE_FIELD
        whole = bytearray(_whole_characters(self._message))
        self._wipe_message()
        self._message = whole
        self._flush_message()
        return self._submission.commit_partial(in_message=in_message and self._message_added)

    def _start_field(self, name: str) -> None:
        if name != MESSAGE_FIELD:
            self._part = "ignored"
            return
        if self._message_seen or self._files:
            raise MalformedUpload("a second message, or the message after a file")
        self._message_seen = True
        self._part = MESSAGE_FIELD

    def _start_file(self, name: str, filename: str, media_type: str | None) -> None:
        if name != FILES_FIELD:
            self._part = "ignored"
            return
        self._part = "file"
        # The attachment begins with its first byte: a browser sends an empty part with
        # filename="" for a file input left empty, and that must not become an attachment.
        self._pending_file = (filename, DEFAULT_MEDIA_TYPE if media_type is None else media_type)
        if filename:
            self._begin_file()

    def _begin_file(self) -> None:
        assert self._pending_file is not None
        self._files += 1
        if self._files > self._limits.max_files:
            raise TooManyFiles("too many files")
        self._flush_message()
        name, media_type = self._pending_file
        self._submission.begin_attachment(name, media_type)
        self._pending_file = None
        self._file_open = True

    def _flush_message(self) -> None:
        """Hand the message to the submission once; it must precede every attachment."""
        if self._message_added or not self._message:
            self._wipe_message()
            return
        text = self._message.decode("utf-8", "replace")
        self._wipe_message()
        # Browsers send a textarea's line breaks as CRLF but count (maxlength) each as one.
        if len(text.replace("\r\n", "\n")) > self._limits.max_message_chars:
            raise MessageTooLong("message too long")
        if text.strip():
            self._submission.add_message(text)
            self._message_added = True

    def _wipe_message(self) -> None:
        """Zero the message's bytes (ours to zero; the text decoded from them is not)."""
        zero(self._message)
        self._message = bytearray()


def _whole_characters(data: bytearray) -> bytes:
    """`data` less a UTF-8 character cut short at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # the last character's first byte
            length = 1 if byte < 0xC0 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return bytes(data) if back >= length else bytes(data[:-back])
    return bytes(data)
