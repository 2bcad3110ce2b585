"""gunicorn's logger for sealdrop: no access log, and an error log without request data.

A log line names what failed and where, never who or what was sent: request lines,
URIs, client addresses and tracebacks (whose frames can hold request data) are
withheld. A worker's death (killed for memory, or crashed) is not logged but counted
per day (storage/counters.py): its time would be the time of the upload it served.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from gunicorn.glogging import Logger

from ..storage.counters import WORKER_DIED, FailureCounters

# The arbiter's lines about one worker's death or hang: counted, never logged.
_WORKER_DEATH = ("Worker (pid:", "WORKER TIMEOUT")


class _Redact(logging.Filter):
    """Withhold request data and tracebacks from gunicorn's error log records, and
    workers' deaths (counted in `counters` instead)."""

    def __init__(self, counters: FailureCounters | None = None) -> None:
        super().__init__()
        self.counters = counters

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(_WORKER_DEATH):
            if self.counters is not None and message.startswith(_WORKER_DEATH[0]):
                self.counters.add(WORKER_DIED)
            return False
        if message.startswith("Invalid request from"):
            # One line per malformed request, each dated to the second by the log (and
            # by the journal): a record of when someone visited. Not logged at all.
            return False
        if "request" in message.lower() and record.args:
            if isinstance(record.args, tuple):
                record.args = tuple("[withheld]" for _ in record.args)
            else:
                record.msg = message.replace("%", "%%")
                record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            frames = traceback.extract_tb(error.__traceback__)
            where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            record.msg = f"{record.msg} [{type(error).__qualname__}{where}]"
            record.exc_info = None
            record.exc_text = None
        return True


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger with `_Redact` on the error log and no access log."""

    counters: FailureCounters | None = None

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if not any(isinstance(f, _Redact) for f in self.error_log.filters):
            self.error_log.addFilter(_Redact(self.counters))

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return None


def counting_logger(counters: FailureCounters) -> type[RedactingLogger]:
    """`RedactingLogger` counting workers' deaths in `counters` (gunicorn makes the
    logger from its class, so the counters travel on a subclass)."""
    return type("CountingRedactingLogger", (RedactingLogger,), {"counters": counters})
