"""The headers of one form part, read by a small strict parser of our own.

Only two headers matter: Content-Disposition (``form-data``, the field's name, a
file's name) and Content-Type (a file's media type); any other header is ignored.
The rules are what browsers send under the HTML form-submission algorithm, which
is stricter than the general MIME grammar:

- Header lines end with CRLF, CR or LF (the same line breaks the framing accepts);
  folded (continued) lines are refused, as RFC 7230 made them obsolete.
- The whole block must be UTF-8 (browsers send names in the page's encoding, which
  is UTF-8) and hold no NUL: no browser sends one, so one is a forged body.
- A quoted parameter value runs to the next double quote, and a backslash in it is
  an ordinary character: browsers escape only ``"``, CR and LF in names (as ``%22``,
  ``%0D``, ``%0A``), so ``C:\\Users\\x\\report.txt`` is a name with three
  backslashes, kept exactly (the reviewer's side makes names safe, see
  reviewer/safe_names.py). Reading it as a MIME quoted-string, as Werkzeug does,
  drops every backslash. ``%22`` is read back as ``"``, as Werkzeug did: a name with
  a double quote is plausible, one with a literal ``%22`` is not; ``%0D`` and
  ``%0A`` stay as sent (a line break in a name serves no one).
- ``name`` is required (RFC 7578 4.2); ``name*`` and ``filename*`` are refused
  (RFC 7578 4.2 forbids them); a parameter given twice, or a second
  Content-Disposition or Content-Type, is refused rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .refusals import MalformedUpload

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 7230 tchar
_HEADER = re.compile(rf"({_TOKEN}):[ \t]*(.*?)[ \t]*", re.ASCII | re.DOTALL)
_DISPOSITION_TYPE = re.compile(r"form-data[ \t]*", re.ASCII | re.IGNORECASE)
_PARAMETER = re.compile(rf';[ \t]*({_TOKEN})=(?:"([^"]*)"|({_TOKEN}))[ \t]*', re.ASCII)
_FORBIDDEN_PARAMETERS = frozenset({"name*", "filename*"})


@dataclass(frozen=True)
class PartHeaders:
    """What a part says about itself."""

    name: str
    filename: str | None  # None: a field; "": a file input left empty
    media_type: str | None  # the Content-Type value as sent, or None without one


def parse_part_headers(block: bytes) -> PartHeaders:
    """The headers of a part: `block` is its header lines, each with its line break,
    without the empty line that ends them. Raises MalformedUpload for anything a
    browser does not send."""
    if b"\x00" in block:
        raise MalformedUpload("NUL in a part's headers")
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedUpload("a part's headers are not UTF-8") from None
    fields: dict[str, str] = {}
    lines = _LINE_BREAK.split(text)
    lines.pop()  # what follows the last line break: nothing
    for line in lines:
        match = _HEADER.fullmatch(line)
        if match is None:
            raise MalformedUpload("a part header line is not 'Name: value'")
        name = match.group(1).lower()
        if name in fields and name in ("content-disposition", "content-type"):
            raise MalformedUpload("a part header given twice")
        fields.setdefault(name, match.group(2))
    disposition = fields.get("content-disposition")
    if disposition is None:
        raise MalformedUpload("a part without Content-Disposition")
    parameters = _disposition_parameters(disposition)
    if "name" not in parameters:
        raise MalformedUpload("a part without a name")
    return PartHeaders(parameters["name"], parameters.get("filename"), fields.get("content-type"))


def _disposition_parameters(value: str) -> dict[str, str]:
    """The parameters of a ``form-data`` Content-Disposition value, names lowercased."""
    start = _DISPOSITION_TYPE.match(value)
    if start is None:
        raise MalformedUpload("a part's disposition is not form-data")
    parameters: dict[str, str] = {}
    position = start.end()
    while position < len(value):
        match = _PARAMETER.match(value, position)
        if match is None:
            raise MalformedUpload("a Content-Disposition parameter that does not parse")
        name = match.group(1).lower()
        if name in parameters or name in _FORBIDDEN_PARAMETERS:
            raise MalformedUpload("a Content-Disposition parameter repeated or forbidden")
        quoted, token = match.group(2), match.group(3)
        parameters[name] = (quoted if quoted is not None else token).replace("%22", '"')
        position = match.end()
    return parameters
