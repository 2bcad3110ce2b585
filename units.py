"""Byte sizes: the binary units settings are written in, and how a size is shown to people."""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

_UNITS = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB))


def human_size(size: int) -> str:
    """Bytes in the largest binary unit they reach, to one decimal: ``2 GiB``, ``1.5 MiB``.

    Binary units everywhere (the source's page, `sealdrop check`, `spool`, `open`, the
    README), because settings are written in them: ``max_body_bytes = "2 GiB"``.
    """
    for unit, factor in _UNITS:
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} B"
