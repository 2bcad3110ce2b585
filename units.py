"""Byte sizes: the binary units settings are written in, and how a size is shown to people."""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_UNITS = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))


def in_largest_unit(size: int) -> tuple[float, str]:
    """Bytes as a number, to one decimal, in the largest binary unit they reach:
    ``(1.5, "MiB")``; below 1 KiB, ``(size, "B")``."""
    for unit, factor in _UNITS:
        if size >= factor:
            return round(size / factor, 1), unit
    return size, "B"


def human_size(size: int) -> str:
    """Bytes in the largest binary unit they reach, to one decimal: ``2 GiB``, ``1.5 MiB``.

    Binary units everywhere (the source's page, `sealdrop check`, `spool`, `open`, the
    README), because settings are written in them: ``max_body_bytes = "2 GiB"``. The
    source's page writes the same number and unit in its language (web.language).
    """
    number, unit = in_largest_unit(size)
    return f"{number:.1f}".removesuffix(".0") + f" {unit}"
