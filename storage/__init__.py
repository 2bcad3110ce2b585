"""The spool: the only code that writes, renames or deletes files in the spool folder."""

from __future__ import annotations

from .spool import Spool, SpoolUnusable, StorageError, StorageFull, Submission

__all__ = ["Spool", "SpoolUnusable", "StorageError", "StorageFull", "Submission"]
