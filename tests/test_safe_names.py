from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from sealdrop.reviewer.safe_names import (
    MAX_NAME_BYTES,
    EscapesFolder,
    contained_path,
    safe_name,
    unique_name,
)

RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{d}" for p in ("COM", "LPT") for d in "123456789"}


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("Фото лес 2026.jpg", "Фото лес 2026.jpg"),
        ("../../etc/passwd", "passwd"),
        ("/abs", "abs"),
        ("/etc/", "attachment-4"),
        ("..", "attachment-4"),
        (".", "attachment-4"),
        ("", "attachment-4"),
        ("...", "attachment-4"),
        ("..\\..\\Windows\\win.ini", "win.ini"),
        ("C:\\Users\\x\\evidence.jpg", "evidence.jpg"),
        ("C:evidence.jpg", "C_evidence.jpg"),
        (".bashrc", "bashrc"),
        ("...hidden", "hidden"),
        ("CON.txt", "_CON.txt"),
        ("con", "_con"),
        ("Lpt9.tar.gz", "_Lpt9.tar.gz"),
        ("COM1 .log", "_COM1 .log"),
        ("CONSOLE.txt", "CONSOLE.txt"),
        ("a\x00b", "ab"),
        ("tab\there\nnewline\r.txt", "tabherenewline.txt"),
        ("del\x7fc1\x85\x9f.txt", "delc1.txt"),
        ("photo\u202egpj.exe", "photogpj.exe"),
        ("\u2066\u2067\u2068\u2069\u202a\u202b\u202c\u202dx", "x"),
        ("trailing. . .", "trailing"),
        ("  spaced  ", "spaced"),
        ('what?<>:"|*.txt', "what_______.txt"),
        ("\x00/\x00", "attachment-4"),
        (".\x00.", "attachment-4"),
    ],
)
def test_safe_name_examples(original: str, expected: str) -> None:
    assert safe_name(original, 3) == expected


def test_long_name_is_cut_to_200_bytes_keeping_the_extension() -> None:
    name = safe_name("a" * 300 + ".pdf", 0)
    assert name == "a" * (MAX_NAME_BYTES - 4) + ".pdf"


def test_long_multibyte_name_is_cut_between_characters() -> None:
    name = safe_name("ж" * 300 + ".jpeg", 0)
    assert name.endswith("ж.jpeg")
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert set(name[: -len(".jpeg")]) == {"ж"}


def test_a_long_extension_is_treated_as_part_of_the_name() -> None:
    name = safe_name("x." + "e" * 300, 0)
    assert name == ("x." + "e" * 300)[:MAX_NAME_BYTES]


def test_cutting_does_not_leave_a_trailing_dot() -> None:
    name = safe_name("a" * 195 + "." * 10 + "b" * 100 + ".txt", 0)
    assert name == "a" * 195 + ".txt"


def test_duplicates_get_numbered() -> None:
    taken: set[str] = set()
    names = [unique_name(n, taken) for n in ["a.txt", "a.txt", "A.TXT", "a (2).txt", "b"]]
    assert names == ["a.txt", "a (2).txt", "A (3).TXT", "a (2) (2).txt", "b"]


def test_a_numbered_duplicate_of_a_long_name_stays_within_the_limit() -> None:
    taken: set[str] = set()
    long = safe_name("n" * 400 + ".pdf", 0)
    first = unique_name(long, taken)
    second = unique_name(long, taken)
    assert first == long
    assert second.endswith(" (2).pdf")
    assert len(second.encode("utf-8")) <= MAX_NAME_BYTES


def test_contained_path_accepts_a_plain_name(tmp_path: Path) -> None:
    assert contained_path(tmp_path, "a.txt") == tmp_path.resolve() / "a.txt"


@pytest.mark.parametrize("name", ["../x", "..", "/etc/passwd", ".", "a/../../b"])
def test_contained_path_refuses_an_escape(tmp_path: Path, name: str) -> None:
    with pytest.raises(EscapesFolder):
        contained_path(tmp_path / "inner", name)


def test_contained_path_refuses_a_symlink_out(tmp_path: Path) -> None:
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "link").symlink_to(tmp_path)
    with pytest.raises(EscapesFolder):
        contained_path(tmp_path / "inner", "link")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=400), st.integers(min_value=0, max_value=1000))
def test_every_result_obeys_the_rules(original: str, index: int) -> None:
    name = safe_name(original, index)
    assert name
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not any(unicodedata.category(c) == "Cc" for c in name)
    assert not any(0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069 for c in name)
    assert not name.startswith((".", " "))
    assert not name.endswith((".", " "))
    assert name.split(".")[0].rstrip(" ").upper() not in RESERVED
    assert safe_name(name, index) == name


# --- Windows paths: the server now stores the name the browser sent, backslashes and all ---


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("C:\\Users\\x\\report.txt", "report.txt"),
        ("\\\\server\\share\\a.pdf", "a.pdf"),
        ("C:..\\evil.sh", "evil.sh"),
        ("a\\.bashrc", "bashrc"),
        ("C:\\Users\\x\\CON", "_CON"),
        ("C:\\", "attachment-3"),
        ("back\\", "attachment-3"),
        ("D:\\..\\..", "attachment-3"),
    ],
)
def test_a_windows_path_comes_out_as_its_last_safe_component(original: str, expected: str) -> None:
    assert safe_name(original, 2) == expected


def test_a_windows_path_sent_through_the_server_is_opened_safely(
    tmp_path: Path,
    spool_dir: Path,
    make_app: Callable[..., Flask],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sealdrop import cli, keys

    from .conftest import message_and_files

    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    public_path, secret_path = keys.write_key_pair(key_dir, "pass phrase", keys.KdfCost.MIN)
    client = make_app(public_key_file=public_path).test_client()
    sent = "C:\\Users\\x\\report.txt"
    body = message_and_files("see the file", (sent, b"evidence"))
    assert client.post("/submit", data=body.body, content_type=body.content_type).status_code == 200

    monkeypatch.setenv("SEALDROP_PASSPHRASE", "pass phrase")
    out = tmp_path / "out"
    assert cli.main(["open", str(spool_dir), "--key", str(secret_path), "--out", str(out)]) == 0

    [folder] = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert [p.name for p in (folder / "files").iterdir()] == ["report.txt"]
    assert (folder / "files" / "report.txt").read_bytes() == b"evidence"
    manifest = json.loads((folder / "manifest.json").read_text("ascii"))
    [attachment] = manifest["attachments"]
    assert attachment["original_name"] == sent
    assert attachment["saved_as"] == "files/report.txt"
