"""Overwriting a buffer that held a source's plaintext, once it is done with.

Only the buffers sealdrop owns can be zeroed (bytearrays: the read buffer, the
message, the sealer's spare, a typed codename); what Python copies into immutable
objects is overwritten when freed, by glibc (server.memory).
"""

from __future__ import annotations

import ctypes


def zero(buffer: bytearray) -> None:
    """Overwrite every byte of `buffer` with zero (its length is kept), in place: a
    buffer of zeroes to copy from would be one more megabyte for a megabyte zeroed."""
    if buffer:
        ctypes.memset((ctypes.c_char * len(buffer)).from_buffer(buffer), 0, len(buffer))
