"""The onion service's keys: the service identity and the v3 client-authorization keys.

The service key is stored in tor's own ``hs_ed25519_secret_key`` format, so the
same file works in a torrc ``HiddenServiceDir`` too. sealdrop makes the key
itself (rather than asking tor for ``NEW:ED25519-V3``) so the address is known,
and client credentials can be issued, before any tor runs.

Layout of the state folder (0700, outside the spool)::

    hs_ed25519_secret_key          service identity, 0600
    authorized_clients/NAME.auth   "descriptor:x25519:<base32 public key>", 0600
    tor/                           DataDirectory of a tor that sealdrop starts itself
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from nacl import bindings
from nacl.public import PrivateKey

from .. import durable
from ..private_folder import PrivateFileRefused, folder_problem, read_private_file, user_name
from .errors import OnionStateError

KEY_FILE = "hs_ed25519_secret_key"
CLIENTS_DIR = "authorized_clients"
# tor's file header: 29 characters padded with NULs to 32 bytes.
_KEY_HEADER = b"== ed25519v1-secret: type0 ==\x00\x00\x00"
_EXPANDED_KEY_BYTES = 64
_SERVICE_KEY_FILE_BYTES = len(_KEY_HEADER) + _EXPANDED_KEY_BYTES
_ONION_VERSION = b"\x03"
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
# One "descriptor:x25519:" line and its 52-character key, with room for white space.
_MAX_CLIENT_FILE = 256


@dataclass(frozen=True)
class ServiceKey:
    """A v3 onion service identity: tor's expanded ed25519 secret key."""

    expanded: bytes

    @classmethod
    def generate(cls) -> ServiceKey:
        # Expansion as in ed25519 itself: SHA-512 of the seed, lower half clamped.
        digest = bytearray(hashlib.sha512(secrets.token_bytes(32)).digest())
        digest[0] &= 248
        digest[31] &= 127
        digest[31] |= 64
        return cls(bytes(digest))

    @property
    def public_key(self) -> bytes:
        return bindings.crypto_scalarmult_ed25519_base_noclamp(self.expanded[:32])

    @property
    def service_id(self) -> str:
        """The 56 characters before ``.onion`` (rend-spec-v3, "Encoding onion addresses")."""
        public = self.public_key
        checksum = hashlib.sha3_256(b".onion checksum" + public + _ONION_VERSION).digest()[:2]
        return base64.b32encode(public + checksum + _ONION_VERSION).decode("ascii").lower()

    @property
    def control_blob(self) -> str:
        """The ``KeyType:KeyBlob`` argument of ADD_ONION."""
        return "ED25519-V3:" + base64.b64encode(self.expanded).decode("ascii")


@dataclass(frozen=True)
class ClientCredentials:
    """What one authorised source needs to reach a service that has client authorization."""

    name: str
    service_id: str
    private_key_b32: str

    @property
    def auth_private_line(self) -> str:
        """One line for a ``ClientOnionAuthDir`` ``.auth_private`` file."""
        return f"{self.service_id}:descriptor:x25519:{self.private_key_b32}"

    def instructions(self) -> str:
        return (
            f"Client '{self.name}' may now reach http://{self.service_id}.onion/\n"
            "Give the source, by a safe channel, this private key. Tor Browser asks for it "
            "when the address is opened ('Onion site requires authentication'):\n"
            f"{self.private_key_b32}\n"
            "For a tor configured by hand (ClientOnionAuthDir), the .auth_private line is:\n"
            f"{self.auth_private_line}\n"
            "Anyone holding this key can reach the service: keep no other copy.\n"
        )


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def ensure_private_dir(path: Path, label: str = "onion state folder") -> Path:
    """Create ``path`` 0700 if missing; refuse one that breaks the private-folder rule."""
    problem = folder_problem(path, label, create=True)
    if problem is not None:
        raise OnionStateError(str(problem))
    return path


def _write_new_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` (0600), durably; never replace an existing one."""
    durable.create_new_file(path, data, 0o600)


def load_service_key(state_dir: Path) -> ServiceKey | None:
    """The stored service key, or None when this state folder has none yet."""
    path = ensure_private_dir(state_dir) / KEY_FILE
    try:
        data = read_private_file(path, "onion service key", _SERVICE_KEY_FILE_BYTES)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise OnionStateError(
            f"cannot read the onion service key {path} ({err.strerror}); restore it from a "
            "backup, or give it to the user sealdrop runs as (mode 600)"
        ) from None
    except PrivateFileRefused as err:
        raise OnionStateError(str(err)) from None
    if len(data) != _SERVICE_KEY_FILE_BYTES or not data.startswith(_KEY_HEADER):
        raise OnionStateError(
            f"{path} is not a v3 onion service key. Restore it from a backup, or move it "
            "away to start over with a new onion address."
        )
    return ServiceKey(data[len(_KEY_HEADER) :])


def load_or_create_service_key(state_dir: Path) -> ServiceKey:
    """The service key of ``state_dir``, made and stored on first use."""
    key = load_service_key(state_dir)
    if key is not None:
        return key
    key = ServiceKey.generate()
    try:
        _write_new_file(state_dir / KEY_FILE, _KEY_HEADER + key.expanded)
    except FileExistsError:
        # Another sealdrop process made it between our read and write: use theirs.
        stored = load_service_key(state_dir)
        assert stored is not None
        return stored
    return key


def add_client(state_dir: Path, name: str) -> ClientCredentials:
    """Authorise one more client: store its public key, return what the source must enter.

    The private half is returned and never stored: only the source keeps it.
    """
    if not _CLIENT_NAME.fullmatch(name):
        raise OnionStateError(
            f"client name {name!r} is not usable: use 1 to 32 letters, digits, '-' or '_', "
            "starting with a letter or digit."
        )
    service = load_or_create_service_key(state_dir)
    clients = ensure_private_dir(state_dir / CLIENTS_DIR, "client authorization folder")
    private = PrivateKey.generate()
    line = f"descriptor:x25519:{_b32(bytes(private.public_key))}\n"
    try:
        _write_new_file(clients / f"{name}.auth", line.encode("ascii"))
    except FileExistsError as exc:
        raise OnionStateError(
            f"a client named {name!r} already exists. Pick another name, or delete "
            f"{clients / (name + '.auth')} to revoke the old key first."
        ) from exc
    return ClientCredentials(name, service.service_id, _b32(bytes(private)))


class ClientAuthUnusable(OnionStateError):
    """The client-authorization folder, or a key in it, exists but cannot be read or is
    not what it should be. Publishing anyway would publish the service with fewer
    clients than the operator authorised, or with no client authorization at all, so
    start-up stops; the message names the path and the operator's fix."""


def load_client_public_keys(state_dir: Path) -> list[str]:
    """The base32 x25519 public keys of every authorised client, sorted by client name.

    Fails closed: an empty list means only that no client-authorization folder exists.
    Every error reading the folder or a key in it raises ClientAuthUnusable, because
    a key left out means a service published to everyone (pathlib's ``glob`` would
    swallow a folder that cannot be listed and yield nothing).
    """
    clients = state_dir / CLIENTS_DIR
    try:
        clients.lstat()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise _unusable(clients, err) from None
    problem = folder_problem(clients, "client authorization folder")
    if problem is not None:
        raise ClientAuthUnusable(
            f"{problem.text}, so the service cannot be published with its client "
            f"authorization; {problem.fix}"
        )
    try:
        names = sorted(os.listdir(clients))
    except OSError as err:
        raise _unusable(clients, err) from None
    keys = [_read_client_key(clients / name) for name in names if name.endswith(".auth")]
    if not keys:
        raise ClientAuthUnusable(
            f"the client authorization folder {clients} holds no NAME.auth file, so the "
            "service would be published to everyone. Add a client (sealdrop onion "
            f"add-client NAME --state {state_dir}), or remove the empty folder to run a "
            "service anyone with the address can reach."
        )
    return keys


def _read_client_key(path: Path) -> str:
    try:
        data = read_private_file(path, "client authorization file", _MAX_CLIENT_FILE)
    except OSError as err:
        raise _unusable(path, err) from None
    except PrivateFileRefused as err:
        raise ClientAuthUnusable(f"{err}, then add the client again if it was one") from None
    text = data.decode("ascii", "replace").strip()
    auth_type, _, key = text.partition("descriptor:x25519:")
    if len(data) > _MAX_CLIENT_FILE or auth_type or not re.fullmatch(r"[A-Z2-7]{52}", key):
        raise ClientAuthUnusable(
            f"{path} is not a client authorization file "
            "('descriptor:x25519:<base32 key>'). Fix or delete it."
        )
    return key


def _unusable(path: Path, err: OSError) -> ClientAuthUnusable:
    runner = user_name(os.geteuid())
    return ClientAuthUnusable(
        f"cannot read the client authorization path {path} ({err.strerror}), so the "
        "service cannot be published with its client authorization. Give it to the user "
        f"sealdrop runs as: `chown -R {runner} {path}` (folders 700, files 600), or run "
        "sealdrop onion add-client as that user."
    )
