"""An upload leaves no reference cycle behind: what it held is freed when it ends.

Python frees an object when its last reference goes, except objects in a reference
cycle, which wait for the garbage collector's full pass: on a loaded worker that
came every few minutes, and every upload in between left its buffers (a megabyte
and more, plaintext among them until glibc overwrote them on free) allocated
(docs/PERFORMANCE.md, "Reference cycles"). Each test runs its step with the
collector off and then counts what only the collector could free.
"""

from __future__ import annotations

import collections
import gc
import os
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from nacl.public import PrivateKey

import sealdrop
from sealdrop.blocking import off_loop
from sealdrop.storage.spool import Spool
from sealdrop.web.body import BodyReader

from .conftest import Multipart, message_and_files


@pytest.fixture
def no_collector() -> Iterator[Callable[[], list[str]]]:
    """Turn the collector off; the returned call lists what only it would free."""
    gc.collect()
    gc.disable()

    def cyclic_garbage() -> list[str]:
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            found = collections.Counter(_ours(thing) for thing in gc.garbage)
            del found[""]
        finally:
            gc.garbage.clear()
            gc.set_debug(0)
        return [f"{count} {name}" for name, count in found.most_common()]

    try:
        yield cyclic_garbage
    finally:
        gc.enable()


PACKAGE = str(Path(sealdrop.__file__).parent)


def _ours(thing: object) -> str:
    """What `thing` is, if it is sealdrop's (an instance of one of its classes, a frame
    of its code); "" for what belongs to Python, Flask or pytest (their test helpers
    make cycles of their own, which a served request does not)."""
    if isinstance(thing, types.FrameType):
        code = thing.f_code
        return f"frame {code.co_name}" if code.co_filename.startswith(PACKAGE) else ""
    kind = type(thing)
    return kind.__qualname__ if kind.__module__.startswith("sealdrop.") else ""


def post(client: FlaskClient, body: Multipart) -> int:
    response = client.post("/submit", data=body.body, content_type=body.content_type)
    status = response.status_code
    response.close()
    return status


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (message_and_files("Snares at the fence.", ("a.bin", os.urandom(3 * 1024 * 1024))), 200),
        (message_and_files("x", *[(f"{n}.bin", b"data" * 1000) for n in range(5)]), 413),
    ],
    ids=["complete", "refused"],
)
def test_an_upload_complete_or_refused_leaves_no_cycle(
    client: FlaskClient, no_collector: Callable[[], list[str]], body: Multipart, status: int
) -> None:
    post(client, body)  # the first request builds what the app keeps for good
    no_collector()
    assert post(client, body) == status
    garbage = no_collector()
    assert not garbage, garbage


def test_a_submission_and_a_failed_step_leave_no_cycle(
    spool_dir: Path, no_collector: Callable[[], list[str]]
) -> None:
    spool = Spool(spool_dir, PrivateKey.generate().public_key)
    piece = bytearray(os.urandom(256 * 1024))
    with spool.begin() as submission:
        submission.add_message("Three trucks, no plates.")
        submission.begin_attachment("a.bin", "application/octet-stream")
        submission.write(piece)
        submission.end_attachment()
        submission.commit()
    with spool.begin() as submission:
        submission.begin_attachment("b.bin", "application/octet-stream")
        submission.write(piece)
    del submission

    def fails() -> None:
        raise OSError("the disk went away")

    try:
        off_loop(fails)
    except OSError:
        pass
    garbage = no_collector()
    assert not garbage, garbage


def test_a_body_whose_client_went_away_leaves_no_cycle(
    no_collector: Callable[[], list[str]],
) -> None:
    class Gone:
        def readinto(self, target: memoryview) -> int:
            raise ConnectionResetError

    reader = BodyReader(Gone(), 1000, 10_000, 100)  # type: ignore[arg-type]
    reader.read_ahead(500)
    assert reader.client_gone
    del reader
    garbage = no_collector()
    assert not garbage, garbage
