"""`sealdrop open --strip-metadata`: cleaned copies of attachments, checked, in `cleaned/`.

Documents and photos carry information their author never sees: a camera's serial
number and GPS position, a word processor's author name and edit history. Sharing
such a file can identify the source. For each attachment of each folder opened in
this run, listed in its manifest.json:

1. its type is told from its bytes (sniff.py), never from its name;
2. a copy goes into a fresh private work folder, and mat2 cleans it there, the
   whole of mat2 running in a bubblewrap sandbox (sandbox.py) that sees only that
   folder and the system's programs, with no network;
3. exiftool, a second reader, and mat2's own reader (``--show``, which looks
   inside office documents and archives), both sandboxed too, read the result; if
   either finds a location, author, serial-number or device field, it is thrown away;
4. what passed goes into the submission's ``cleaned/`` folder, which no attachment
   can occupy (attachments are only ever written into ``files/``).

Every attachment ends CLEANED (with its copy in ``cleaned/``) or NOT CLEANED with
the reason, in what is printed and in manifest.json. Where mat2, exiftool or a
working sandbox is missing, nothing is parsed at all and every attachment is NOT
CLEANED, with how to install what is missing. The originals are never changed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import durable
from .safe_names import EscapesFolder, contained_path, printable_name, unique_name
from .sandbox import INSIDE, Sandbox, SandboxUnavailable, find_sandbox
from .sniff import Kind, sniff
from .unpack import DIR_MODE, FILE_MODE, FILES_DIR, MANIFEST_FILE

MAT2 = "mat2"
EXIFTOOL = "exiftool"
CLEANED_DIR = "cleaned"
CHECKED_BY = "exiftool and mat2 --show"
CLEANED = "cleaned"
NOT_CLEANED = "NOT CLEANED"
# A large video can take minutes; a file mat2 is stuck on must not stop the others.
MAT2_TIMEOUT = 900.0
MAT2_HINT = "install mat2 (`sudo apt-get install mat2`; it is part of Tails)"
EXIFTOOL_HINT = "install exiftool (`sudo apt-get install libimage-exiftool-perl`)"
# Tag names (exiftool's, any group) that name a place, a person, a serial number or a
# device. Broad on purpose: a false alarm costs a NOT CLEANED, a miss costs a source.
IDENTIFYING = re.compile(
    r"GPS|Location|Latitude|Longitude|City|Country|Province|Sublocation|Artist|Author"
    r"|Creator|By-?line|Copyright|Owner|LastModifiedBy|Company|Manager|Serial|UniqueID"
    r"|DocumentID|InstanceID|Make|Model|Lens|Software|Application|HostComputer|Device|Camera",
    re.IGNORECASE,
)
# exiftool's groups about the file on disk (its name, size, permissions), not in it.
_ABOUT_THE_FILE = frozenset({"ExifTool", "System", "File"})
_WORK_PREFIX = ".cleaning-"
MANIFEST_NOTE = (
    "Only the copies in cleaned/ had hidden metadata removed (by mat2, in a sandbox) and "
    "were checked by exiftool and by mat2 --show. Do not share a file marked NOT CLEANED "
    "as it is; the files in files/ are exactly as sent."
)


@dataclass(frozen=True)
class Attachment:
    """One attachment of an opened folder, as its manifest.json lists it."""

    index: int
    saved_as: str
    declared_media_type: str


@dataclass(frozen=True)
class Result:
    attachment: Attachment
    status: str  # CLEANED or NOT_CLEANED
    kind: Kind | None = None
    cleaned_as: str | None = None
    reason: str | None = None

    def manifest_entry(self) -> dict[str, str | None]:
        entry: dict[str, str | None] = {
            "status": self.status,
            "type_from_bytes": None if self.kind is None else self.kind.media_type,
        }
        if self.status == CLEANED:
            entry["cleaned_copy"] = self.cleaned_as
            entry["checked_by"] = CHECKED_BY
        else:
            entry["reason"] = self.reason
        return entry


@dataclass(frozen=True)
class Tools:
    """What cleaning needs; built only when all of it is present and working."""

    sandbox: Sandbox
    mat2: str
    exiftool: str


class Unavailable(Exception):
    """Cleaning cannot run on this machine; the message says what is missing and the fix."""


def find_tools(scratch: Path) -> Tools:
    mat2 = shutil.which(MAT2)
    if mat2 is None:
        raise Unavailable(f"mat2 is not installed; {MAT2_HINT}")
    exiftool = shutil.which(EXIFTOOL)
    if exiftool is None:
        raise Unavailable(f"exiftool, which checks mat2's work, is not installed; {EXIFTOOL_HINT}")
    try:
        sandbox = find_sandbox(scratch)
    except SandboxUnavailable as err:
        raise Unavailable(
            f"{err}. Without a sandbox no attachment is parsed: a file made to attack "
            "mat2 would run on this machine"
        ) from None
    return Tools(sandbox, os.path.realpath(mat2), os.path.realpath(exiftool))


def strip_opened(out: Path, folders: Iterable[str], say: Callable[[str], None]) -> None:
    """The `--strip-metadata` step of `sealdrop open`, for the folders it just opened."""
    folders = list(folders)
    if not folders:
        return
    scratch = Path(tempfile.mkdtemp(prefix=_WORK_PREFIX, dir=out))
    try:
        tools: Tools | Unavailable = find_tools(scratch)
    except Unavailable as err:
        tools = err
        say(f"--strip-metadata: NO hidden information was removed from any attachment: {err}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    counts = {CLEANED: 0, NOT_CLEANED: 0}
    for name in folders:
        for result in strip_folder(out / name, tools):
            counts[result.status] += 1
            say(describe(result, name))
    if counts[CLEANED] or counts[NOT_CLEANED]:
        say(
            f"Metadata: {counts[CLEANED]} attachment(s) cleaned and checked (share only the "
            f"copies in each folder's {CLEANED_DIR}/), {counts[NOT_CLEANED]} NOT CLEANED: do "
            "not share those as they are."
        )


def strip_folder(folder: Path, tools: Tools | Unavailable) -> list[Result]:
    """Clean every attachment manifest.json lists; record each outcome in it."""
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="ascii"))
    attachments = [
        Attachment(entry["index"], entry["saved_as"], entry["declared_media_type"])
        for entry in manifest["attachments"]
    ]
    if not attachments:
        return []
    if isinstance(tools, Unavailable):
        results = [Result(a, NOT_CLEANED, reason=str(tools)) for a in attachments]
    else:
        cleaned_dir = folder / CLEANED_DIR
        # A fresh folder: nothing in it was put there by anyone but this run.
        cleaned_dir.mkdir(mode=DIR_MODE)
        taken: set[str] = set()
        results = [clean(tools, folder, a, taken) for a in attachments]
        durable.fsync_directory(cleaned_dir)
    _record(folder, manifest, results)
    return results


def clean(tools: Tools, folder: Path, attachment: Attachment, taken: set[str]) -> Result:
    """Clean one attachment into `folder/cleaned/`, or say why it was not."""
    try:
        original = contained_path(folder / FILES_DIR, Path(attachment.saved_as).name)
        kind = sniff(original)
    except (EscapesFolder, OSError) as err:
        return Result(attachment, NOT_CLEANED, reason=f"it could not be read ({err})")
    if kind is None:
        return Result(
            attachment,
            NOT_CLEANED,
            reason="its bytes are not a type mat2 can clean (or sealdrop does not recognise)",
        )
    work = Path(tempfile.mkdtemp(prefix=_WORK_PREFIX, dir=folder))
    try:
        reason = _clean_in_sandbox(tools, original, kind, work)
        if reason is not None:
            return Result(attachment, NOT_CLEANED, kind, reason=reason)
        name = unique_name(Path(attachment.saved_as).stem + kind.extension, taken)
        target = folder / CLEANED_DIR / name
        # link, not rename: it fails rather than replace anything already there.
        os.link(work / f"input.cleaned{kind.extension}", target)
        os.chmod(target, FILE_MODE)
        return Result(attachment, CLEANED, kind, cleaned_as=f"{CLEANED_DIR}/{name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _clean_in_sandbox(tools: Tools, original: Path, kind: Kind, work: Path) -> str | None:
    """Run mat2 then exiftool on a copy in `work`; None if the result is clean, else why not."""
    source = work / f"input{kind.extension}"
    shutil.copyfile(original, source)
    os.chmod(source, FILE_MODE)
    cleaned = f"input.cleaned{kind.extension}"
    try:
        # No `--no-sandbox`: Debian 12's mat2 (0.13.3) reads that flag inverted, and
        # turns its own bubblewrap ON with it. Its default there runs exiftool and ffmpeg
        # inside this sandbox; a mat2 that nests its own bubblewrap where nesting is not
        # allowed fails, and the file is then NOT CLEANED, never cleaned outside.
        ran = tools.sandbox.run([tools.mat2, f"{INSIDE}/{source.name}"], work, MAT2_TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"mat2 did not finish within {MAT2_TIMEOUT:.0f} s"
    if ran.returncode != 0 or not (work / cleaned).is_file():
        if "not supported" in ran.stdout + ran.stderr:
            return f"mat2 cannot clean this type of file ({kind.media_type})"
        said = ran.stderr.strip().splitlines()[-1:] or ["no reason given"]
        return (
            "mat2 could not clean it (the file may be damaged or unusual; mat2 said: "
            f"{printable_name(said[0][:200])})"
        )
    left = _identifying_fields(tools, work, cleaned)
    if left is None:
        return "exiftool could not check mat2's copy, so it is not trusted"
    # mat2's own reader looks inside containers (office documents, archives) that
    # exiftool reads only in part: both must find nothing.
    also = _mat2_leftovers(tools, work, cleaned)
    if also is None:
        return "mat2 could not re-read its copy, so it is not trusted"
    if left or also:
        return "metadata remains after cleaning: " + ", ".join(left + also)
    return None


def _identifying_fields(tools: Tools, work: Path, name: str) -> list[str] | None:
    """The identifying tags exiftool finds in `work/name`; None if it cannot tell."""
    try:
        ran = tools.sandbox.run(
            [tools.exiftool, "-json", "-a", "-u", "-G1", f"{INSIDE}/{name}"], work, MAT2_TIMEOUT
        )
        [tags] = json.loads(ran.stdout)
    except (subprocess.TimeoutExpired, ValueError, TypeError):
        return None
    if not isinstance(tags, dict) or "Error" in tags or "ExifTool:Error" in tags:
        return None
    found = []
    for key in tags:
        group, _, tag = key.rpartition(":")
        if group not in _ABOUT_THE_FILE and key != "SourceFile" and IDENTIFYING.search(tag):
            found.append(key)
    return sorted(found)


def _mat2_leftovers(tools: Tools, work: Path, name: str) -> list[str] | None:
    """The identifying fields `mat2 --show` lists in `work/name`; None if it cannot tell."""
    try:
        ran = tools.sandbox.run([tools.mat2, "--show", f"{INSIDE}/{name}"], work, MAT2_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    if ran.returncode != 0:
        return None
    found = []
    for line in ran.stdout.splitlines():
        field, separator, _ = line.strip().partition(": ")
        if separator and not line.lstrip().startswith("[") and IDENTIFYING.search(field):
            found.append(f"mat2:{field}")
    return sorted(found)


def _record(folder: Path, manifest: dict[str, Any], results: list[Result]) -> None:
    """Write each attachment's outcome into manifest.json (atomically, fsync'd)."""
    by_index = {r.attachment.index: r for r in results}
    for entry in manifest["attachments"]:
        entry["metadata"] = by_index[entry["index"]].manifest_entry()
    manifest["metadata_note"] = MANIFEST_NOTE
    text = json.dumps(manifest, indent=2, ensure_ascii=True) + "\n"
    durable.replace_file(folder / MANIFEST_FILE, text.encode("ascii"), FILE_MODE)


def describe(result: Result, folder: str) -> str:
    shown = f"{folder}/{result.attachment.saved_as}"
    declared = result.attachment.declared_media_type
    note = ""
    if result.kind is not None and declared not in (result.kind.media_type, ""):
        note = f" (sent as {declared}, its bytes are {result.kind.media_type})"
    if result.status == CLEANED:
        return (
            f"metadata removed and checked: {shown} -> {folder}/{result.cleaned_as}{note} "
            "(share only this copy)"
        )
    return f"NOT CLEANED: {shown}{note}: {result.reason}; do not share it as it is"
