"""One way to show a size, in binary units, everywhere a person reads one."""

from __future__ import annotations

import pytest

from sealdrop.units import GiB, KiB, MiB, TiB, human_size


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (KiB, "1 KiB"),
        (1536, "1.5 KiB"),
        (3000, "2.9 KiB"),
        (8 * KiB, "8 KiB"),
        (512 * MiB, "512 MiB"),
        (2 * GiB, "2 GiB"),
        (3 * TiB + 512 * GiB, "3.5 TiB"),
        (2048 * TiB, "2048 TiB"),
    ],
)
def test_sizes_are_shown_in_the_largest_binary_unit_to_one_decimal(size: int, shown: str) -> None:
    assert human_size(size) == shown
