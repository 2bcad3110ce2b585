"""The text rules every key file is read by, and the names in that text.

docs/FORMAT.md ("Key files", "Text rules shared by both files") is normative:
ASCII only, LF or CRLF line endings, SP and HT the only blanks, and the
``public key: `` label with exactly one space. The reviewer's key files
(keys/public.py, keys/secret.py) and the reply-signing files (signing.py) all
read their text through `key_file_lines`.

Both pairs share one layout too, told apart by a `KeyKind`: its prefix begins the
public line and personalises its checksum, and its header begins the secret file,
so one kind's text is never read as the other's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import MalformedKey

PUBLIC_KEY_PREFIX = "sealdrop-pub1"
SECRET_KEY_HEADER = "sealdrop secret key v1"
# The reply-signing key file (signing.py): the same layout under its own header, which
# holds the secret-key marker so that the server's checks refuse it like reviewer.key.
SIGNING_KEY_HEADER = "sealdrop secret key for reply signing v1"
PUBLIC_KEY_LABEL = "public key: "
DEFAULT_KEY_NAME = "reviewer"
PUBLIC_KEY_FILENAME = DEFAULT_KEY_NAME + ".pub"
SECRET_KEY_FILENAME = DEFAULT_KEY_NAME + ".key"
SECRET_KEY_MARKER = "sealdrop secret key"
SIGNING_PUBLIC_PREFIX = "sealdrop-sig1"
# The only whitespace a key file may hold: around a line, never inside a key.
BLANKS = " \t"


@dataclass(frozen=True)
class KeyKind:
    """One kind of key pair's texts: the 32-byte public key as `prefix` and base32, the
    secret file under `header`; the names say which in messages."""

    prefix: str
    header: str
    owner: str  # "a reviewer SECRET key"
    public_name: str  # "not a sealdrop public key"
    secret_name: str  # "not a sealdrop secret key file"
    public_filename: str
    secret_filename: str


REVIEWER_KEYS = KeyKind(
    prefix=PUBLIC_KEY_PREFIX,
    header=SECRET_KEY_HEADER,
    owner="reviewer",
    public_name="sealdrop public key",
    secret_name="sealdrop secret key",
    public_filename=PUBLIC_KEY_FILENAME,
    secret_filename=SECRET_KEY_FILENAME,
)
REPLY_SIGNING_KEYS = KeyKind(
    prefix=SIGNING_PUBLIC_PREFIX,
    header=SIGNING_KEY_HEADER,
    owner="reply-signing",
    public_name="reply-signing public key",
    secret_name="reply-signing key",
    public_filename="reply-signing.pub",
    secret_filename="reply-signing.key",
)
KEY_KINDS = (REVIEWER_KEYS, REPLY_SIGNING_KEYS)


def looks_like_secret_key(text_or_bytes: str | bytes) -> bool:
    """True if this holds a sealdrop secret key file's contents (any version).

    Deliberately loose: it exists to make the server refuse to start, so a false
    alarm costs a confused operator while a miss could put the key on the server.
    """
    if isinstance(text_or_bytes, bytes):
        return SECRET_KEY_MARKER.encode("ascii") in text_or_bytes
    return SECRET_KEY_MARKER in text_or_bytes


def key_file_lines(text: str, source: str) -> list[str]:
    """The lines of a key file's text, read by the rules of docs/FORMAT.md ("Key files").

    ASCII only; lines end in LF or CRLF (a CR anywhere else is refused); spaces and
    tabs around a line are ignored, as are blank lines before the first line and
    after the last; no other control character may appear. MalformedKey otherwise.
    """
    if not text.isascii():
        raise MalformedKey(
            f"{source} holds characters that are not ASCII (a no-break space, a curly "
            "quote or a byte-order mark that an editor added?); a key file is plain "
            "ASCII text: copy it again from the original"
        )
    lines = []
    pieces = text.split("\n")
    for number, raw in enumerate(pieces, start=1):
        # A CR counts only as the first half of CRLF: the last piece has no LF after it.
        line = raw.removesuffix("\r") if number < len(pieces) else raw
        if "\r" in line:
            raise MalformedKey(
                f"{source} has a carriage return that does not end a line (old Mac line "
                "endings?); a key file's lines end in LF or CRLF: copy it again"
            )
        if any(char < " " and char != "\t" or char == "\x7f" for char in line):
            raise MalformedKey(
                f"{source} holds a control character; a key file is plain text: copy it "
                "again from the original"
            )
        lines.append(line.strip(BLANKS))
    while lines and not lines[-1]:
        lines.pop()
    first = next((i for i, line in enumerate(lines) if line), len(lines))
    return lines[first:]


def labelled_key(line: str) -> str | None:
    """The key text of a secret key file's second line, or None if the label is wrong.

    The label is ``public key: `` with exactly one space after the colon: it is part
    of the format, not decoration (docs/FORMAT.md, "Key files").
    """
    if not line.startswith(PUBLIC_KEY_LABEL):
        return None
    rest = line[len(PUBLIC_KEY_LABEL) :]
    return None if rest[:1] in ("", " ", "\t") else rest
