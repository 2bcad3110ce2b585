"""The strict part-header parser (web.part_headers): what browsers send, and nothing else."""

from __future__ import annotations

import pytest

from sealdrop.web.part_headers import PartHeaders, parse_part_headers
from sealdrop.web.refusals import MalformedUpload


def parse(*lines: str, line_break: str = "\r\n") -> PartHeaders:
    return parse_part_headers("".join(line + line_break for line in lines).encode())


@pytest.mark.parametrize(
    ("filename"),
    [
        "C:\\Users\\x\\report.txt",
        "\\\\server\\share\\a.pdf",
        "back\\",
        "semi;colon=and spaces.txt",
        "Фото лес 2026.jpg",
        "tab\there",
        "",
    ],
)
def test_a_file_name_is_kept_exactly(filename: str) -> None:
    headers = parse(f'Content-Disposition: form-data; name="files"; filename="{filename}"')
    assert headers == PartHeaders("files", filename, None)


def test_a_browsers_escaped_double_quote_is_read_back() -> None:
    # Browsers send a file named 'a "b".txt' as 'a %22b%22.txt'; CR and LF stay escaped.
    headers = parse('Content-Disposition: form-data; name="files"; filename="a %22b%22%0A.txt"')
    assert headers.filename == 'a "b"%0A.txt'


def test_fields_types_and_case() -> None:
    assert parse('content-disposition: FORM-DATA; NAME="message"') == PartHeaders(
        "message", None, None
    )
    assert parse(
        "Content-Type:  image/jpeg  ",
        "X-Other: ignored",
        'Content-Disposition: form-data;name=files; filename="a.jpg" ',
        line_break="\n",
    ) == PartHeaders("files", "a.jpg", "image/jpeg")
    assert parse('Content-Disposition: form-data; name="m"; other="x"', line_break="\r").name == "m"


@pytest.mark.parametrize(
    "block",
    [
        b"",
        b"Content-Type: text/plain\r\n",
        b'Content-Disposition: attachment; name="files"\r\n',
        b"Content-Disposition: form-data\r\n",
        b'Content-Disposition: form-data; filename="a"\r\n',
        b'Content-Disposition: form-data; name="a"; name="b"\r\n',
        b"Content-Disposition: form-data; name=\"a\"; filename*=UTF-8''b\r\n",
        b"Content-Disposition: form-data; name*=UTF-8''a\r\n",
        b'Content-Disposition: form-data; name="files"; filename="a\\"b.txt"\r\n',
        b'Content-Disposition: form-data; name="a" junk\r\n',
        b'Content-Disposition: form-data; name="a\r\n',
        b'Content-Disposition: form-data; name="a"\r\nContent-Disposition: form-data\r\n',
        b'Content-Disposition: form-data; name="a"\r\nContent-Type: a\r\nContent-Type: b\r\n',
        b'Content-Disposition: form-data;\r\n name="a"\r\n',
        b'Content-Disposition : form-data; name="a"\r\n',
        b"no colon\r\n",
        b'Content-Disposition: form-data; name="a\x00b"\r\n',
        b'Content-Disposition: form-data; name="files"; filename="\xff"\r\n',
        b'Content-Disposition: form-data; name="a"\r\nX-Bin: \xc3\r\n',
    ],
)
def test_anything_a_browser_does_not_send_is_refused(block: bytes) -> None:
    with pytest.raises(MalformedUpload):
        parse_part_headers(block)
