"""The request class: Flask's, with every path to Werkzeug's file spooling closed.

Werkzeug parses a form on first access to ``request.form``/``request.files``, and
its default stream factory writes any file over 500 KB to a *plaintext* temporary
file. The upload route never touches those attributes (it streams the body itself,
see upload.py), but a later change, an extension or a debugging aid could. Here
both the parser and its stream factory refuse, so such a mistake fails loudly with
a 500 instead of silently putting a source's file on the disk unencrypted.
"""

from __future__ import annotations

from typing import IO, NoReturn

from flask import Request
from werkzeug.formparser import FormDataParser


class FormParsingRefused(RuntimeError):
    """Code asked Werkzeug to parse the request body as a form (``request.form``,
    ``request.files``, ``request.values``). Only upload.py may read the body."""


_WHY = (
    "request.form/request.files must not be used: Werkzeug would spool uploaded "
    "files to plaintext temporary files; read the body through web.upload instead"
)


class _RefusingFormDataParser(FormDataParser):
    def parse(
        self,
        stream: IO[bytes],
        mimetype: str,
        content_length: int | None,
        options: dict[str, str] | None = None,
    ) -> NoReturn:
        raise FormParsingRefused(_WHY)


class SealingRequest(Request):
    form_data_parser_class = _RefusingFormDataParser

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> NoReturn:
        raise FormParsingRefused(_WHY)
