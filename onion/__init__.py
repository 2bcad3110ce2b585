"""Publishing sealdrop as a Tor onion service (ADD_ONION over tor's control port)."""

from __future__ import annotations

from .errors import (
    AuthenticationFailed,
    BootstrapStuck,
    ControlPortRefused,
    OnionError,
    OnionStateError,
    PublishFailed,
    TorNotInstalled,
    TorStartFailed,
    TorTooOld,
)
from .keys import (
    ClientAuthUnusable,
    ClientCredentials,
    ServiceKey,
    add_client,
    load_or_create_service_key,
)
from .publisher import OnionPublisher
from .service import OnionConfig, OnionEvent, OnionEventKind, OnionService

__all__ = [
    "AuthenticationFailed",
    "BootstrapStuck",
    "ClientAuthUnusable",
    "ClientCredentials",
    "ControlPortRefused",
    "OnionConfig",
    "OnionError",
    "OnionEvent",
    "OnionEventKind",
    "OnionPublisher",
    "OnionService",
    "OnionStateError",
    "PublishFailed",
    "ServiceKey",
    "TorNotInstalled",
    "TorStartFailed",
    "TorTooOld",
    "add_client",
    "load_or_create_service_key",
]
