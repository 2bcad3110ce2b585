"""Coverage-guided fuzz target for the spool reader (crypto.open_payload + records.read_payload).

The reader runs on the reviewer's offline machine over files copied from a server that
may be compromised: any input must end in the payload's end or a `SpoolFileError`,
never another exception, a hang or unbounded memory.

Random bytes alone never get past the sealed file key, so the first input byte picks
what the rest is:

- ``0``: a whole spool file, opened as is (header, version, sealed key, chunk framing);
- ``1``: a payload's plaintext, sealed to the fixed test key and read back: the record
  parser sees fuzzed records inside an authentic stream;
- ``2``: a valid sealed submission, then damaged where the input says (bit flips,
  truncation, appended bytes): the authentication paths.

Run (libFuzzer options after the script)::

    .venv/bin/python fuzz/spool_reader.py -max_total_time=20 fuzz/corpus_tmp/

Crashes are written where ``-artifact_prefix=`` says; keep them in fuzz/crashes/,
where tests/test_fuzz_regressions.py replays every one.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator

from nacl.public import PrivateKey

# A fixed, public test key: fuzzing needs the same key in every run and every replay.
TEST_KEY = PrivateKey(bytes(range(1, 33)))
# Sealed as the server seals (format version 3): the test key's stanza between two
# others', so damage to the count, the stanzas and the header MAC is fuzzed too.
OTHER_KEYS = (PrivateKey(bytes(range(2, 34))), PrivateKey(bytes(range(3, 35))))
RAW, PAYLOAD, DAMAGED = 0, 1, 2
DAY = "2026-01-01"
RECEIPT = "1234-5678-9012-3456"


def read_spool(data: bytes, key: PrivateKey) -> int:
    """Read a whole spool file the way the reviewer does; return the number of events."""
    from sealdrop import crypto, records

    events = 0
    payload = crypto.open_payload(io.BytesIO(data), key)
    for _ in records.read_payload(payload, payload.version):
        events += 1
    return events


def sealed(payload: bytes) -> bytes:
    """`payload` sealed to the test key as one spool file (random file key each time)."""
    from sealdrop import crypto

    recipients = [OTHER_KEYS[0].public_key, TEST_KEY.public_key, OTHER_KEYS[1].public_key]
    sealer = crypto.PayloadSealer(recipients, version=crypto.RECIPIENTS_VERSION)
    return sealer.header + sealer.update(payload) + sealer.finalize()


def valid_payload(message: str, attachment: bytes) -> bytes:
    from sealdrop import records

    out = bytearray()
    writer = records.PayloadWriter(out.extend, DAY, RECEIPT)
    writer.message(message)
    writer.begin_attachment("evidence.jpg", "image/jpeg")
    writer.attachment_data(attachment)
    writer.end_attachment()
    writer.close()
    return bytes(out)


def damaged(data: bytes, plan: bytes) -> bytes:
    """A valid submission altered by `plan`: 3-byte steps of (action, position, value)."""
    spool = bytearray(sealed(valid_payload("fuzz", data[:2000])))
    for start in range(0, len(plan) - 2, 3):
        action, where, value = plan[start], plan[start + 1], plan[start + 2]
        at = where * len(spool) // 256
        if action % 3 == 0 and at < len(spool):
            spool[at] ^= value or 1
        elif action % 3 == 1:
            del spool[at:]
        else:
            spool += bytes([value]) * (1 + action % 17)
    return bytes(spool)


def spool_from(data: bytes) -> bytes:
    """The spool file an input stands for (see the module docstring)."""
    if not data:
        return b""
    mode, rest = data[0] % 3, data[1:]
    if mode == PAYLOAD:
        return sealed(rest)
    if mode == DAMAGED:
        half = len(rest) // 2
        return damaged(rest[:half], rest[half:])
    return rest


def one_input(data: bytes) -> None:
    """The fuzz target: a refusal is fine, anything else propagates (and is a crash)."""
    from sealdrop.crypto import SpoolFileError

    try:
        read_spool(spool_from(data), TEST_KEY)
    except SpoolFileError:
        pass


def seeds() -> Iterator[bytes]:
    """Starting inputs that reach deep: valid payloads in each mode."""
    payload = valid_payload("a message ✓", b"\xff\xd8 jpeg bytes" * 50)
    yield bytes([PAYLOAD]) + payload
    yield bytes([RAW]) + sealed(payload)
    yield bytes([DAMAGED]) + b"abc" * 10 + bytes([0, 128, 7])
    from sealdrop import records

    out = bytearray()
    writer = records.PayloadWriter(out.extend, DAY, RECEIPT)
    writer.message("only words")
    writer.close()
    yield bytes([PAYLOAD]) + bytes(out)


def main(argv: list[str]) -> None:
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

    with atheris.instrument_imports():
        import sealdrop.crypto  # noqa: F401
        import sealdrop.records  # noqa: F401
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
