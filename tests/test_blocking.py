"""blocking.off_loop and the pipelined write, on a real gevent event loop.

Each case runs in a child process that monkey-patches like a gunicorn worker
(server.worker) and registers the loop's thread pool, so that the test process
itself stays unpatched. What is checked is what the worker relies on: a step run
off the loop does not stall the other greenlets, it runs in another OS thread, its
error reaches the caller, an interrupted wait still lets the step finish before the
caller goes on, and a large upload piece sealed in the background raises its error at
the next step and leaves nothing in the spool.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SETUP = """
from gevent import monkey
monkey.patch_all()
import gevent, os, time
from gevent import get_hub
from sealdrop import blocking
native_ident = monkey.get_original("_thread", "get_ident")
native_sleep = monkey.get_original("time", "sleep")
blocking.run_off_loop_in(get_hub().threadpool, native_ident(), native_ident)
"""


def run_on_loop(code: str, tmp_path: Path) -> str:
    script = tmp_path / "case.py"
    script.write_text(SETUP + textwrap.dedent(code))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    # Nothing printed: gevent would print the traceback of an error escaping a pool
    # thread, and a traceback can quote what a source sent.
    assert done.stderr == ""
    return done.stdout


def test_work_off_the_loop_lets_the_others_run_in_another_thread(tmp_path: Path) -> None:
    out = run_on_loop(
        """
        ticks = []
        def ticker():
            for _ in range(50):
                ticks.append(time.monotonic())
                gevent.sleep(0.01)
        def blocking_work():
            native_sleep(0.3)  # holds its OS thread, like Argon2id or an fsync
            return native_ident()
        other = gevent.spawn(ticker)
        gevent.sleep(0)
        ran_in = blocking.off_loop(blocking_work)
        during = len(ticks)
        other.join()
        print(during >= 10, ran_in != native_ident())
        # The same work called directly stalls every greenlet.
        ticks.clear()
        other = gevent.spawn(ticker)
        gevent.sleep(0)
        blocking_work()
        print(len(ticks))
        other.join()
        """,
        tmp_path,
    )
    assert out.split() == ["True", "True", "1"]


def test_an_error_off_the_loop_reaches_the_caller(tmp_path: Path) -> None:
    out = run_on_loop(
        """
        def failing():
            raise OSError(28, "No space left on device")
        try:
            blocking.off_loop(failing)
        except OSError as err:
            print(err.errno)
        """,
        tmp_path,
    )
    assert out.split() == ["28"]


def test_an_interrupted_wait_lets_the_work_finish_first(tmp_path: Path) -> None:
    """A worker killing its connections at the end of a stop interrupts a greenlet
    waiting on the pool: the caller's cleanup must not run while the thread still
    uses what it cleans up (a file descriptor another file could get)."""
    out = run_on_loop(
        """
        finished = []
        def slow():
            native_sleep(0.3)
            finished.append(time.monotonic())
        def waiter():
            try:
                blocking.off_loop(slow)
            except gevent.GreenletExit:
                print("interrupted, work finished:", bool(finished))
                raise
        g = gevent.spawn(waiter)
        gevent.sleep(0.05)
        g.kill()
        """,
        tmp_path,
    )
    assert out.strip() == "interrupted, work finished: True"


def test_a_piece_sealed_in_the_background_fails_at_the_next_step(tmp_path: Path) -> None:
    """Submission.write seals a large piece while the next arrives; a full disk during
    it is raised by the next step (not lost), and the spool is left empty."""
    out = run_on_loop(
        """
        import errno
        from nacl.public import PrivateKey
        from sealdrop.storage import Spool, StorageFull
        os.mkdir("spool", 0o700)
        spool = Spool(__import__("pathlib").Path("spool"), [PrivateKey.generate().public_key])
        submission = spool.begin()
        submission.begin_attachment("video.mp4", "video/mp4")
        submission.write(bytes(1000))  # a small piece: sealed before write returns
        real_write = os.write
        def full(fd, data):
            raise OSError(errno.ENOSPC, "No space left on device")
        os.write = full
        submission.write(bytes(1024 * 1024))  # in the background: write cannot see it fail
        print("write returned")
        try:
            submission.end_attachment()
        except StorageFull:
            print("StorageFull")
        os.write = real_write
        submission.abort()
        print(sorted(os.listdir("spool")))
        """,
        tmp_path,
    )
    assert out.split("\n")[:3] == ["write returned", "StorageFull", "[]"]


def test_an_error_from_off_the_loop_leaves_no_reference_cycle(tmp_path: Path) -> None:
    # Raised from a local, the error and the waiting frame held each other: the failed
    # step's buffers stayed allocated until the collector's next full pass.
    out = run_on_loop(
        """
        import gc, weakref
        class Buffers:
            pass
        def fails(held):
            raise OSError("the disk went away")
        def step():
            held = Buffers()
            try:
                blocking.off_loop(fails, held)
            except OSError:
                pass
            return weakref.ref(held)
        gc.collect()
        gc.disable()
        print(step()() is None)
        """,
        tmp_path,
    )
    assert out.split() == ["True"]
