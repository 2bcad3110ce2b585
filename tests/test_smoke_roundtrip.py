from __future__ import annotations

import io

from nacl.public import PrivateKey

from sealdrop import crypto, records


def test_payload_round_trip_recovers_the_attachment() -> None:
    key = PrivateKey.generate()
    sealer = crypto.PayloadSealer(key.public_key)
    out = io.BytesIO()
    out.write(sealer.header)
    writer = records.PayloadWriter(
        lambda data: out.write(sealer.update(data)), "2026-11-29", "1234-5678-9012"
    )
    writer.message("hello")
    writer.begin_attachment("a.txt", "text/plain")
    writer.attachment_data(b"x" * 70_000)
    writer.end_attachment()
    writer.close()
    out.write(sealer.finalize())

    payload = crypto.open_payload(io.BytesIO(out.getvalue()), key)
    events = list(records.read_payload(payload, payload.version))

    body = b"".join(e.data for e in events if isinstance(e, records.AttachmentBytes))
    assert body == b"x" * 70_000
    assert isinstance(events[-1], records.PayloadEnd)
