"""What `sealdrop open` did with every spool file: the report, its summary, its exit status."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..languages import describe_tag
from ..units import human_size
from .safe_names import printable_name
from .spool_folder import describe_left_out
from .unpack import CUT_WHERE, Unpacked


@dataclass
class Report:
    """What happened to every entry of the spool folder, for the summary and the exit status."""

    opened: list[str] = field(default_factory=list)
    # Of those opened, the ones whose upload was cut off (folder names, as in `opened`).
    partial: list[str] = field(default_factory=list)
    already_opened: int = 0
    # (spool file name, the name its identical copy was opened under).
    copies: list[tuple[str, str]] = field(default_factory=list)
    removed: int = 0
    parts: int = 0
    litter: list[tuple[str, str]] = field(default_factory=list)
    not_opened: list[tuple[str, str]] = field(default_factory=list)
    # (spool file name, the cause it was refused for); each is left in the spool.
    refused: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    stale_incoming: int = 0
    # Source folder name -> its submissions in order, for the sources opened this run.
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Source folder name -> the language to answer in (its latest submission's pages).
    source_languages: dict[str, str] = field(default_factory=dict)
    # The pages' language of each submission opened this run (records.LANGUAGE).
    languages: Counter[str] = field(default_factory=Counter)

    @property
    def status(self) -> int:
        """1 if anything that may be a submission was not opened, else 0."""
        return 1 if self.refused or self.unreadable or self.not_opened else 0


def describe_cut(unpacked: Unpacked) -> str:
    """`` PARTIAL: ...`` for a submission whose upload was cut off, else nothing."""
    cut = unpacked.cut
    if cut is None:
        return ""
    where = CUT_WHERE[cut.where]
    if where == "attachment":
        saved = unpacked.attachments[cut.index].saved_as
        place = f"in file {cut.index + 1} ({saved}) after {human_size(cut.received)}"
    elif where == "message":
        place = f"in the message after {human_size(cut.received)}"
    else:
        place = f"after {len(unpacked.attachments)} whole file(s)"
    return f" PARTIAL: upload cut off {place}"


def format_summary(report: Report, out: Path) -> str:
    rows = _rows(report)
    width = max(len(label) for label, _ in rows)
    lines = [f"Summary ({out})"] + [f"  {label:<{width}}  {value:>5}" for label, value in rows]
    if report.languages:
        counts = ", ".join(f"{describe_tag(t)} {n}" for t, n in sorted(report.languages.items()))
        lines.append(f"Languages of the pages the sources used: {counts}")
    for name, order in sorted(report.sources.items()):
        language = report.source_languages.get(name)
        answer = f"; answer in {describe_tag(language)}" if language else ""
        lines.append(
            f"Source {name}: {len(order)} submission(s), in order: {', '.join(order)}{answer}"
        )
    if report.sources:
        lines.append(
            "Submissions sent with the same codename are in one source folder; answer one "
            "with `sealdrop reply SOURCE_FOLDER --out DIR`."
        )
    if report.partial:
        lines.append(
            "PARTIAL submissions hold what arrived before the source's connection broke "
            "(their folders end in _PARTIAL, the cut file in .partial; manifest.json says "
            "where the cut came). The source may have sent everything again in another "
            "submission."
        )
    if report.stale_incoming:
        lines.append(
            f"Removed {report.stale_incoming} unfinished folder(s) left by an interrupted run."
        )
    for name, first in report.copies:
        lines.append(
            f"Not opened again: '{printable_name(name)}' is a copy of "
            f"'{printable_name(first)}', already opened (same sealed header and size; "
            "verified in full)."
        )
    if report.parts:
        lines.append(
            ".part files are uploads still in progress (or abandoned) on the server; copy "
            "them again once they end in .sealed."
        )
    lines += describe_left_out(report.litter, report.not_opened)
    if report.refused:
        lines.append(
            "Files that could not be opened were left in the spool as they were; see the "
            "reasons above. One not sealed to this key opens with another reviewer's key."
        )
    return "\n".join(lines)


def _rows(report: Report) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("opened", str(len(report.opened)))]
    if report.partial:
        rows.append(("  of which PARTIAL (cut off)", str(len(report.partial))))
    rows.append(("skipped, already opened", str(report.already_opened)))
    if report.copies:
        rows.append(("skipped, copy of one opened", str(len(report.copies))))
    if report.removed:
        rows.append(("spool files removed", str(report.removed)))
    if report.parts:
        rows.append(("skipped, unfinished .part", str(report.parts)))
    if report.litter:
        rows.append(("ignored, file manager litter", str(len(report.litter))))
    if report.not_opened:
        rows.append(("NOT OPENED, see below", str(len(report.not_opened))))
    rows.append(("not opened, left as is", str(len(report.refused))))
    for cause, count in sorted(Counter(c for _, c in report.refused).items()):
        rows.append((f"  {cause}", str(count)))
    if report.unreadable:
        rows.append(("could not read", str(len(report.unreadable))))
    return rows
