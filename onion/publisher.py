"""The onion service as ``sealdrop serve``'s Publisher: progress lines for the operator.

serve starts it once, in the gunicorn master (``when_ready``), and stops it in
``on_exit``. Progress goes to the terminal as it happens: the address when tor
accepts the service, then a separate line once its descriptor is uploaded.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TextIO

from .service import OnionConfig, OnionEvent, OnionEventKind, OnionService

_WARNINGS = {
    OnionEventKind.NOT_PUBLISHED,
    OnionEventKind.POW_UNAVAILABLE,
    OnionEventKind.CONNECTION_LOST,
    OnionEventKind.RECONNECT_FAILED,
}


class OnionPublisher:
    """Publishes serve's listening socket as an onion service; see server.serve.Publisher."""

    def __init__(
        self,
        config: OnionConfig,
        out: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self._config = config
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._service: OnionService | None = None

    def start(self, target: str) -> str:
        """Publish ``target`` (``unix:/path`` or ``127.0.0.1:PORT``); return the onion URL."""
        self._service = OnionService(replace(self._config, target=target), self._print)
        self._service.start()
        return self._service.url

    def stop(self) -> None:
        if self._service is not None:
            self._service.stop()
            self._service = None

    def _print(self, event: OnionEvent) -> None:
        stream = self._err if event.kind in _WARNINGS else self._out
        print(f"sealdrop serve: {event.message}", file=stream, flush=True)
