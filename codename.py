"""Codenames: the words a source writes down to come back, and the keys they stand for.

A codename is `WORDS` words drawn uniformly from the EFF large word list (7776
words, 12.9 bits each: 7 words carry 90.5 bits) followed by one checksum word, so
that a mistyped codename is caught without the server storing anything. From a
codename and the installation's salt, Argon2id derives a master key, and from that
(by labelled BLAKE2b) the source's X25519 *reply key*; the *mailbox id* under which
replies are filed is a hash of the reply public key (records.mailbox_id_for).
docs/FORMAT.md ("Codenames and reply keys") is the normative description.

Pure apart from `load_installation_salt`, which owns the salt file's policy.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import nacl.exceptions
from nacl.public import PrivateKey, PublicKey
from nacl.pwhash import argon2id

from . import durable
from .keys import KdfCost
from .private_folder import PrivateFileRefused, folder_problem, read_private_file
from .records.source import mailbox_id_for

WORDS = 7
WORD_LIST_SIZE = 7776
# The list must never change: a codename written down today must derive the same keys
# after any upgrade. The package's file is checked against this digest when loaded.
WORD_LIST_PACKAGE = "diceware.wordlists"
WORD_LIST_FILE = "wordlist_en_eff.txt"
WORD_LIST_SHA256 = "addd35536511597a02fa0a9ff1e5284677b8883b83e986e43f15a3db996b903e"

SALT_FILE = "codename.salt"
SALT_BYTES = argon2id.SALTBYTES

# 64 MiB, 3 passes: about 0.25 s on one core of the 2-core development machine.
DEFAULT_COST = KdfCost(opslimit=3, memlimit=64 * 1024 * 1024)
# Only for tests: it makes a codename no harder to guess than a plain hash.
TEST_COST = KdfCost(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)

# Every derivation has its own label, so no two outputs can ever be equal by design.
_CHECKSUM_PERSON = b"sealdrop-cname1"
_REPLY_KEY_PERSON = b"sealdrop-reply1"
_MASTER_BYTES = 32


class CodenameError(Exception):
    """Root of the reasons a codename, or what derives keys from it, is refused."""


class BadCodename(CodenameError):
    """The text is not a codename: wrong number of words, a word not in the list, or a
    checksum word that does not match. The source is asked to check what they typed."""


class WordListChanged(CodenameError):
    """The installed word list is not the one codenames were made from (the diceware
    package changed it); every existing codename would stop working, so nothing starts."""


class SaltUnusable(CodenameError):
    """The state folder breaks the private-folder rule, or the installation salt file
    cannot be created or read, has the wrong size, or is open to other users. Without it
    no codename can be made or checked."""


class DerivationFailed(CodenameError):
    """libsodium could not run Argon2id at the configured cost (out of memory)."""


@dataclass(frozen=True)
class SourceKeys:
    """What a codename stands for. Held in memory only, for the length of one request."""

    reply_key: PrivateKey
    mailbox_id: bytes

    @property
    def reply_public_key(self) -> PublicKey:
        return self.reply_key.public_key

    @property
    def mailbox(self) -> str:
        """The mailbox id as reply file names carry it: 32 lowercase hex digits."""
        return self.mailbox_id.hex()


@cache
def word_list() -> tuple[str, ...]:
    """The EFF large word list, in its published order, checked against its digest."""
    raw = resources.files(WORD_LIST_PACKAGE).joinpath(WORD_LIST_FILE).read_bytes()
    if hashlib.sha256(raw).hexdigest() != WORD_LIST_SHA256:
        raise WordListChanged(
            f"the word list {WORD_LIST_PACKAGE}/{WORD_LIST_FILE} differs from the one "
            "codenames were made from; install the diceware version named in pyproject.toml"
        )
    words = tuple(line.split("\t")[1] for line in raw.decode("ascii").splitlines())
    if len(words) != WORD_LIST_SIZE or len(set(words)) != WORD_LIST_SIZE:
        raise WordListChanged("the word list does not hold 7776 distinct words")
    return words


@cache
def _word_index() -> dict[str, int]:
    return {word: index for index, word in enumerate(word_list())}


def checksum_word(words: list[str] | tuple[str, ...]) -> str:
    """The word that must follow `words`: BLAKE2b of the words, reduced to an index."""
    digest = hashlib.blake2b(
        " ".join(words).encode("ascii"), digest_size=8, person=_CHECKSUM_PERSON
    ).digest()
    # A 64-bit value mod 7776: the bias (under 2^-51) cannot matter for a typo check.
    return word_list()[int.from_bytes(digest, "big") % WORD_LIST_SIZE]


def new_codename() -> str:
    """A fresh codename: WORDS random words and the checksum word, separated by spaces."""
    words = [secrets.choice(word_list()) for _ in range(WORDS)]
    return " ".join([*words, checksum_word(words)])


def normalise(text: str) -> str:
    """The canonical form of a typed codename, or BadCodename.

    Compatibility forms (full-width letters), case and any run of white space are
    forgiven; every word must be in the list and the last must be the checksum.
    """
    words = unicodedata.normalize("NFKC", text).lower().split()
    index = _word_index()
    if len(words) != WORDS + 1 or any(word not in index for word in words):
        raise BadCodename("not a codename")
    if checksum_word(words[:WORDS]) != words[WORDS]:
        raise BadCodename("the checksum word does not match")
    return " ".join(words)


def ending(codename: str) -> str:
    """The last two words of a normalised codename (the last is the checksum word).

    The replies page shows them so that a source can see which codename it is using:
    a page swapped for someone else's codename (web.crosssite) then looks different.
    An onlooker who reads them still has six random words (77.5 bits) to guess; the
    checksum word lets a cheap hash discard all but one guess in 7776 before Argon2id.
    The server is sent the whole codename anyway.
    """
    return " ".join(codename.split()[-2:])


def derive(codename: str, salt: bytes, cost: KdfCost) -> SourceKeys:
    """The source's reply key and mailbox id: Argon2id, then labelled BLAKE2b.

    `codename` must already be normalised (and so checked); `salt` is the
    installation's. Costs a fraction of a second at the default cost, on purpose.
    """
    if len(salt) != SALT_BYTES:
        raise ValueError(f"the salt must be {SALT_BYTES} bytes")
    try:
        master = argon2id.kdf(
            _MASTER_BYTES,
            codename.encode("ascii"),
            salt,
            opslimit=cost.opslimit,
            memlimit=cost.memlimit,
        )
    except nacl.exceptions.RuntimeError:
        raise DerivationFailed(
            f"Argon2id could not run with {cost.memlimit // (1024 * 1024)} MiB; lower "
            "codename_kdf_memory or give the service more memory"
        ) from None
    secret = hashlib.blake2b(b"", digest_size=32, key=master, person=_REPLY_KEY_PERSON)
    reply_key = PrivateKey(secret.digest())
    # The mailbox id is a hash of the public key (records.mailbox_id_for says why).
    return SourceKeys(reply_key, mailbox_id_for(bytes(reply_key.public_key)))


def load_installation_salt(state_dir: Path) -> bytes:
    """Read the installation's salt from `state_dir`, creating it (0600) on first start."""
    folder = folder_problem(state_dir, "state folder")
    if folder is not None:
        raise SaltUnusable(f"{folder} (setting state_dir)")
    path = state_dir / SALT_FILE
    try:
        durable.create_new_file(path, secrets.token_bytes(SALT_BYTES), 0o600)
    except FileExistsError:
        pass
    except OSError as err:
        raise SaltUnusable(
            f"cannot create the codename salt {path} ({err.strerror}); give a state folder "
            "the service's user can write (setting state_dir)"
        ) from None
    return _read_salt(path)


def _read_salt(path: Path) -> bytes:
    try:
        data = read_private_file(path, "codename salt", SALT_BYTES)
    except OSError as err:
        raise SaltUnusable(
            f"cannot read the codename salt {path} ({err.strerror}); restore it from the "
            "server's backup: without it no codename given out so far works"
        ) from None
    except PrivateFileRefused as err:
        raise SaltUnusable(str(err)) from None
    if len(data) != SALT_BYTES:
        raise SaltUnusable(
            f"the codename salt {path} is not a {SALT_BYTES}-byte file; restore it from the "
            "server's backup (a new one would make every codename given out so far useless)"
        )
    return data
