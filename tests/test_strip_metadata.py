"""`sealdrop open --strip-metadata`: real mat2, sandboxed, checked by real exiftool.

The reproduction of issue 12 (item 1): a real JPEG whose GPS position, Artist and
camera serial number exiftool wrote, uploaded as `photo.jpg` and again as
`photo.cleaned.jpg`. Before, the second was never cleaned and the first was
reported "already removed" with that file's name; now both are cleaned from their
bytes, into `cleaned/`, and checked.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import struct
import subprocess
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from sealdrop.cli import main
from sealdrop.keys import KdfCost, load_public_key, write_key_pair
from sealdrop.reviewer import metadata
from sealdrop.reviewer.metadata import CLEANED, NOT_CLEANED, Tools, find_tools
from sealdrop.reviewer.sandbox import Sandbox
from sealdrop.storage.spool import Spool

MAT2 = shutil.which("mat2")
EXIFTOOL = shutil.which("exiftool")
BWRAP = shutil.which("bwrap")
SYSTEM_PYTHON = "/usr/bin/python3"
needs_tools = pytest.mark.skipif(
    None in (MAT2, EXIFTOOL, BWRAP),
    reason="needs mat2, exiftool and bubblewrap (scripts/bootstrap --test installs them)",
)
SECRET_TEXT = b"Jane Informant, Kasese ranger post"
PASSPHRASE = "correct horse battery"
# What the review found in the "cleaned" upload: a place, a person, a camera.
GPS_ARTIST_SERIAL = [
    "-GPSLatitude=1.2833",
    "-GPSLatitudeRef=S",
    "-GPSLongitude=36.8167",
    "-GPSLongitudeRef=E",
    "-Artist=Jane Informant",
    "-SerialNumber=CAM-0042-7781",
    "-Make=Canon",
    "-Model=EOS 5D",
]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with_author() -> bytes:
    """A valid 4x4 red PNG whose tEXt chunk names its author, as a camera app might."""
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + png_chunk(b"tEXt", b"Author\x00" + SECRET_TEXT)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


def jpeg_with_gps(tmp_path: Path) -> bytes:
    """A real JPEG (GdkPixbuf's encoder) with GPS, Artist and serial written by exiftool."""
    path = tmp_path / "camera.jpg"
    encode = (
        "import gi, sys; gi.require_version('GdkPixbuf', '2.0')\n"
        "from gi.repository import GdkPixbuf\n"
        "p = GdkPixbuf.Pixbuf.new(GdkPixbuf.Colorspace.RGB, False, 8, 32, 24)\n"
        "p.fill(0x2f6b3aff); p.savev(sys.argv[1], 'jpeg', [], [])\n"
    )
    subprocess.run([SYSTEM_PYTHON, "-c", encode, str(path)], check=True)
    assert EXIFTOOL is not None
    subprocess.run(
        [EXIFTOOL, "-q", "-overwrite_original", *GPS_ARTIST_SERIAL, str(path)], check=True
    )
    return path.read_bytes()


def exif_tags(path: Path) -> dict[str, object]:
    """What exiftool (outside any sandbox: this is the test's own check) finds in `path`."""
    assert EXIFTOOL is not None
    shown = subprocess.run(
        [EXIFTOOL, "-json", "-a", "-u", "-G1", str(path)], capture_output=True, check=True
    )
    tags: dict[str, object] = json.loads(shown.stdout)[0]
    return tags


def identifying(tags: dict[str, object]) -> list[str]:
    wanted = ("GPS", "Artist", "Serial", "Make", "Model")
    return [k for k in tags if any(w in k.split(":")[-1] for w in wanted)]


def open_with(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    attachments: Sequence[tuple[str, str, bytes]],
    *extra: str,
) -> tuple[int, Path]:
    """Seal `attachments` as one submission, run `sealdrop open`; (status, its folder)."""
    monkeypatch.setenv("SEALDROP_PASSPHRASE", PASSPHRASE)
    keys = tmp_path / "keys"
    keys.mkdir()
    public, secret = write_key_pair(keys, PASSPHRASE, KdfCost.MIN)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    with Spool(spool_dir, load_public_key(public)).begin() as submission:
        submission.add_message("photos attached")
        for name, media_type, data in attachments:
            submission.begin_attachment(name, media_type)
            submission.write(data)
            submission.end_attachment()
        submission.commit()
    out = tmp_path / "out"
    status = main(["open", str(spool_dir), "--key", str(secret), "--out", str(out), *extra])
    [folder] = [p for p in out.iterdir() if p.is_dir() and p.name[0].isdigit()]
    return status, folder


def manifest_metadata(folder: Path) -> dict[str, dict[str, str | None]]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {a["saved_as"]: a["metadata"] for a in manifest["attachments"]}


@needs_tools
def test_a_file_named_cleaned_is_cleaned_like_any_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = jpeg_with_gps(tmp_path)
    assert len(identifying(exif_tags(tmp_path / "camera.jpg"))) >= 6
    status, folder = open_with(
        tmp_path,
        monkeypatch,
        [("photo.jpg", "image/jpeg", photo), ("photo.cleaned.jpg", "image/jpeg", photo)],
        "--strip-metadata",
    )
    output = capsys.readouterr().out
    assert status == 0
    assert "already removed" not in output
    name = folder.name
    assert (
        f"metadata removed and checked: {name}/files/photo.jpg -> {name}/cleaned/photo.jpg"
        in output
    )
    assert (
        f"metadata removed and checked: {name}/files/photo.cleaned.jpg -> "
        f"{name}/cleaned/photo.cleaned.jpg" in output
    )
    # The uploads are kept exactly as sent, metadata and all, for the reviewer's own work.
    assert (folder / "files" / "photo.cleaned.jpg").read_bytes() == photo
    assert identifying(exif_tags(folder / "files" / "photo.cleaned.jpg"))
    for cleaned in ("photo.jpg", "photo.cleaned.jpg"):
        copy = folder / "cleaned" / cleaned
        assert copy.read_bytes().startswith(b"\xff\xd8\xff")
        assert identifying(exif_tags(copy)) == []
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert manifest_metadata(folder) == {
        "files/photo.jpg": {
            "status": CLEANED,
            "type_from_bytes": "image/jpeg",
            "cleaned_copy": "cleaned/photo.jpg",
            "checked_by": "exiftool and mat2 --show",
        },
        "files/photo.cleaned.jpg": {
            "status": CLEANED,
            "type_from_bytes": "image/jpeg",
            "cleaned_copy": "cleaned/photo.cleaned.jpg",
            "checked_by": "exiftool and mat2 --show",
        },
    }
    # Nothing else was left in the submission folder (no work folders, no stray copies).
    assert sorted(p.name for p in folder.iterdir()) == [
        "cleaned",
        "files",
        "manifest.json",
        "message.txt",
    ]


@needs_tools
def test_the_type_comes_from_the_bytes_and_failures_are_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, folder = open_with(
        tmp_path,
        monkeypatch,
        [
            ("holiday.txt", "text/plain", png_with_author()),  # a PNG, whatever its name
            ("ledger.bin", "application/octet-stream", b"\x00\x01\x02 binary of no known type"),
            ("broken.png", "image/png", png_with_author()[:60]),
        ],
        "--strip-metadata",
    )
    output = capsys.readouterr().out
    assert status == 0
    cleaned = folder / "cleaned" / "holiday.png"
    assert cleaned.read_bytes().startswith(b"\x89PNG") and SECRET_TEXT not in cleaned.read_bytes()
    assert SECRET_TEXT in (folder / "files" / "holiday.txt").read_bytes()
    assert "(sent as text/plain, its bytes are image/png)" in output
    recorded = manifest_metadata(folder)
    assert recorded["files/holiday.txt"]["status"] == CLEANED
    assert recorded["files/ledger.bin"]["status"] == NOT_CLEANED
    assert "not a type mat2 can clean" in str(recorded["files/ledger.bin"]["reason"])
    assert recorded["files/broken.png"]["status"] == NOT_CLEANED
    assert "mat2 could not clean it" in str(recorded["files/broken.png"]["reason"])
    assert f"NOT CLEANED: {folder.name}/files/ledger.bin: " in output
    assert f"NOT CLEANED: {folder.name}/files/broken.png: " in output
    assert "1 attachment(s) cleaned and checked" in output and "2 NOT CLEANED" in output
    assert [p.name for p in (folder / "cleaned").iterdir()] == ["holiday.png"]


class MissesMetadata:
    """A stand-in for a mat2 that misses fields: its 'cleaned' copy is the input.

    Only mat2's cleaning is replaced; exiftool and mat2 --show still run for real in the
    real sandbox.
    """

    def __init__(self, real: Sandbox) -> None:
        self.real = real
        self.bwrap = real.bwrap

    def run(
        self, argv: Sequence[str], workdir: Path, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        if Path(argv[0]).name == "mat2" and "--show" not in argv:
            source = workdir / Path(argv[-1]).name
            shutil.copyfile(source, source.with_name("input.cleaned" + source.suffix))
            return subprocess.CompletedProcess(list(argv), 0, "", "")
        return self.real.run(argv, workdir, timeout)


@needs_tools
def test_a_copy_that_still_holds_metadata_is_thrown_away(tmp_path: Path) -> None:
    folder = tmp_path / "2026-01-01_abcd"
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "photo.jpg").write_bytes(jpeg_with_gps(tmp_path))
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "attachments": [
                    {"index": 0, "saved_as": "files/photo.jpg", "declared_media_type": ""}
                ]
            }
        )
    )
    real = find_tools(tmp_path)
    tools = Tools(MissesMetadata(real.sandbox), real.mat2, real.exiftool)  # type: ignore[arg-type]

    [result] = metadata.strip_folder(folder, tools)

    assert result.status == NOT_CLEANED and result.reason is not None
    for tag in ("GPSLatitude", "Artist", "SerialNumber", "Make", "Model"):
        assert (
            f"GPS:{tag}" in result.reason
            or f"IFD0:{tag}" in result.reason
            or (f"ExifIFD:{tag}" in result.reason)
        )
        assert f"mat2:{tag}" in result.reason
    assert list((folder / "cleaned").iterdir()) == []
    assert manifest_metadata(folder)["files/photo.jpg"]["status"] == NOT_CLEANED


def docx_with_author() -> bytes:
    """A minimal Word document whose core properties name its author and company."""
    declaration = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    package = "http://schemas.openxmlformats.org/package/2006"
    office = "http://schemas.openxmlformats.org/officeDocument/2006"
    word_type = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    parts = {
        "[Content_Types].xml": (
            f'<Types xmlns="{package}/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/word/document.xml" ContentType="{word_type}.main+xml"/>'
            '<Override PartName="/docProps/core.xml" ContentType="application/vnd.'
            'openxmlformats-package.core-properties+xml"/>'
            '<Override PartName="/docProps/app.xml" ContentType="application/vnd.'
            'openxmlformats-officedocument.extended-properties+xml"/></Types>'
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{package}/relationships">'
            f'<Relationship Id="rId1" Type="{office}/relationships/officeDocument" '
            'Target="word/document.xml"/>'
            f'<Relationship Id="rId2" Type="{package}/relationships/metadata/core-properties" '
            'Target="docProps/core.xml"/>'
            f'<Relationship Id="rId3" Type="{office}/relationships/extended-properties" '
            'Target="docProps/app.xml"/></Relationships>'
        ),
        "word/document.xml": (
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/'
            'main"><w:body><w:p><w:r><w:t>Ivory at the gate</w:t></w:r></w:p></w:body>'
            "</w:document>"
        ),
        "docProps/core.xml": (
            f'<cp:coreProperties xmlns:cp="{package}/metadata/core-properties" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/">'
            "<dc:creator>Jane Informant</dc:creator></cp:coreProperties>"
        ),
        "docProps/app.xml": (
            f'<Properties xmlns="{office}/extended-properties">'
            "<Company>Kasese ranger post</Company></Properties>"
        ),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, text in parts.items():
            archive.writestr(name, declaration + text)
    return out.getvalue()


@needs_tools
def test_an_office_document_is_checked_inside(tmp_path: Path) -> None:
    folder = tmp_path / "2026-01-01_abcd"
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "report.docx").write_bytes(docx_with_author())
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "attachments": [
                    {"index": 0, "saved_as": "files/report.docx", "declared_media_type": ""}
                ]
            }
        )
    )
    real = find_tools(tmp_path)
    # exiftool reads this document as a plain ZIP: alone, it would find nothing.
    assert identifying(exif_tags(folder / "files" / "report.docx")) == []
    missed = Tools(MissesMetadata(real.sandbox), real.mat2, real.exiftool)  # type: ignore[arg-type]

    [result] = metadata.strip_folder(folder, missed)

    assert result.status == NOT_CLEANED and result.reason is not None
    assert "mat2:dc:creator" in result.reason and "mat2:Company" in result.reason

    shutil.rmtree(folder / "cleaned")
    [result] = metadata.strip_folder(folder, real)
    assert result.status == CLEANED and result.cleaned_as == "cleaned/report.docx"
    assert b"Jane Informant" not in (folder / "cleaned" / "report.docx").read_bytes()
    with zipfile.ZipFile(folder / "cleaned" / "report.docx") as cleaned:
        assert all(b"Jane" not in cleaned.read(n) for n in cleaned.namelist())


def fake_program(directory: Path, name: str, body: str) -> None:
    directory.mkdir(exist_ok=True)
    script = directory / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o700)


@pytest.mark.parametrize(
    ("missing", "says"),
    [
        ("mat2", "mat2 is not installed; install mat2"),
        ("exiftool", "apt-get install libimage-exiftool-perl"),
        ("bwrap", "bubblewrap is not installed; install bubblewrap"),
    ],
)
def test_without_a_tool_nothing_is_parsed_and_all_is_marked(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    missing: str,
    says: str,
) -> None:
    # Every tool is a stand-in that leaves a mark if run; the one named is absent.
    tools = tmp_path / "bin"
    marks = tmp_path / "ran"
    for name in {"mat2", "exiftool", "bwrap"} - {missing}:
        fake_program(tools, name, f'echo "$0 $*" >> "{marks}"\nexit 1\n')
    monkeypatch.setenv("PATH", str(tools))
    status, folder = open_with(
        tmp_path, monkeypatch, [("photo.png", "image/png", png_with_author())], "--strip-metadata"
    )
    output = capsys.readouterr().out
    assert status == 0  # the submission itself was opened
    assert "NO hidden information was removed from any attachment" in output
    assert says in output
    assert f"NOT CLEANED: {folder.name}/files/photo.png" in output
    assert manifest_metadata(folder)["files/photo.png"]["status"] == NOT_CLEANED
    assert not (folder / "cleaned").exists()
    # mat2 never ran, sandboxed or not; at most bubblewrap was asked to start `true`.
    ran = marks.read_text() if marks.exists() else ""
    assert "mat2" not in ran.replace(str(tools / "bwrap"), "")
    assert "photo" not in ran


def test_a_sandbox_that_cannot_start_parses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = tmp_path / "bin"
    marks = tmp_path / "ran"
    fake_program(
        tools, "bwrap", 'echo "bwrap: No permissions to creating new namespace" >&2\nexit 1\n'
    )
    for name in ("mat2", "exiftool"):
        fake_program(tools, name, f'echo "$0" >> "{marks}"\n')
    monkeypatch.setenv("PATH", str(tools))
    _, folder = open_with(
        tmp_path, monkeypatch, [("photo.png", "image/png", png_with_author())], "--strip-metadata"
    )
    output = capsys.readouterr().out
    assert "bubblewrap cannot make a sandbox on this machine" in output
    assert "No permissions to creating new namespace" in output
    assert not marks.exists()
    assert manifest_metadata(folder)["files/photo.png"]["status"] == NOT_CLEANED


def test_without_the_option_nothing_is_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, folder = open_with(
        tmp_path, monkeypatch, [("photo.png", "image/png", png_with_author())]
    )
    assert status == 0
    assert "metadata" not in capsys.readouterr().out.lower()
    assert not (folder / "cleaned").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "metadata" not in manifest["attachments"][0]
