"""The derivation queue's policy (web.derivations): who gets a slot, in which order,
who waits and who is refused. Deterministic: `join`/`leave` without threads, except
where the waiting itself is what is tested."""

from __future__ import annotations

import threading
import time

import pytest

from sealdrop.web.derivations import DerivationQueue, DerivationsBusy, Kind, Ticket

FIRST, FOLLOW, VISIT = Kind.FIRST_SUBMISSION, Kind.FOLLOW_UP, Kind.VISIT


def granted(tickets: list[Ticket]) -> list[bool]:
    return [t.granted for t in tickets]


def test_free_slots_are_granted_at_once_and_the_rest_wait() -> None:
    queue = DerivationQueue(slots=2, visit_queue=8, visit_wait=30)
    first = queue.join(FIRST)
    second = queue.join(FOLLOW)
    third = queue.join(FIRST)
    assert granted([first, second, third]) == [True, True, False]
    queue.leave(first)
    assert third.granted
    assert queue.counts()["running_first_submission"] == 1


def test_uploads_go_before_visits_and_first_submissions_before_follow_ups() -> None:
    queue = DerivationQueue(slots=1, visit_queue=8, visit_wait=30)
    holder = queue.join(VISIT)
    visit = queue.join(VISIT)
    follow = queue.join(FOLLOW)
    first = queue.join(FIRST)
    later_first = queue.join(FIRST)
    order = []
    for _ in range(4):
        queue.leave(holder)
        (holder,) = [t for t in (visit, follow, first, later_first) if t.granted and not t.left]
        order.append(holder)
    assert order == [first, later_first, follow, visit]


def test_among_uploads_of_a_kind_the_one_whose_body_came_fastest_goes_first() -> None:
    """An upload's rank is the seconds its body took to bring DERIVE_AFTER_BYTES: a
    client trickling its body waits behind sources sending theirs, whatever came
    first; equal ranks keep arrival order, and a follow-up stays behind every first
    submission however fast. A visit's rank is ignored."""
    queue = DerivationQueue(slots=1, visit_queue=8, visit_wait=30)
    holder = queue.join(FIRST)
    trickled = queue.join(FIRST, rank=110.0)
    quick_follow = queue.join(FOLLOW, rank=0.0)
    sent = queue.join(FIRST, rank=1.5)
    also_sent = queue.join(FIRST, rank=1.5)
    tiny = queue.join(FIRST, rank=0.01)
    visit = queue.join(VISIT, rank=-5.0)
    order = []
    for _ in range(6):
        queue.leave(holder)
        waiting = (trickled, quick_follow, sent, also_sent, tiny, visit)
        (holder,) = [t for t in waiting if t.granted and not t.left]
        order.append(holder)
    assert order == [tiny, sent, also_sent, trickled, quick_follow, visit]
    assert visit.rank == 0.0


def test_visits_run_in_all_slots_but_one_the_last_is_kept_for_uploads() -> None:
    queue = DerivationQueue(slots=3, visit_queue=8, visit_wait=30)
    visits = [queue.join(VISIT) for _ in range(4)]
    assert granted(visits) == [True, True, False, False]
    upload = queue.join(FIRST)
    assert upload.granted  # the kept slot: a source's upload never waits on a flood
    queue.leave(upload)
    assert granted(visits) == [True, True, False, False]
    queue.leave(visits[0])
    assert granted(visits) == [True, True, True, False]


def test_with_one_slot_a_visit_may_use_it() -> None:
    queue = DerivationQueue(slots=1, visit_queue=8, visit_wait=30)
    assert queue.join(VISIT).granted


def test_the_visit_queue_is_bounded_uploads_are_not() -> None:
    queue = DerivationQueue(slots=2, visit_queue=3, visit_wait=30)
    running = queue.join(VISIT)
    waiting = [queue.join(VISIT) for _ in range(3)]
    assert running.granted and not any(granted(waiting))
    with pytest.raises(DerivationsBusy):
        queue.join(VISIT)
    uploads = [queue.join(FOLLOW) for _ in range(50)]
    assert uploads[0].granted and not any(granted(uploads[1:]))
    # A place given back (the visitor left) can be taken again.
    queue.leave(waiting[0])
    queue.join(VISIT)
    assert queue.counts()["waiting_visit"] == 3
    assert queue.counts()["waiting_follow_up"] == 49


def test_leave_is_idempotent_and_frees_exactly_one_slot() -> None:
    queue = DerivationQueue(slots=1, visit_queue=8, visit_wait=30)
    a, b, c = queue.join(FIRST), queue.join(FIRST), queue.join(FIRST)
    queue.leave(a)
    queue.leave(a)
    assert granted([b, c]) == [True, False]


def test_a_visit_gives_up_after_its_wait_and_its_place_is_freed() -> None:
    queue = DerivationQueue(slots=2, visit_queue=1, visit_wait=0.2)
    holder = queue.join(VISIT)
    started = time.monotonic()
    with pytest.raises(DerivationsBusy), queue.slot(VISIT):
        pass
    assert 0.15 <= time.monotonic() - started < 5
    assert queue.counts()["waiting_visit"] == 0
    queue.leave(holder)
    with queue.slot(VISIT):
        assert queue.counts()["running_visit"] == 1


def test_an_upload_waits_as_long_as_it_takes_and_is_woken_when_a_slot_frees() -> None:
    queue = DerivationQueue(slots=1, visit_queue=1, visit_wait=0.05)
    holder = queue.join(VISIT)
    entered = threading.Event()

    def upload() -> None:
        with queue.slot(FOLLOW):
            entered.set()

    thread = threading.Thread(target=upload)
    thread.start()
    # Far longer than a visit may wait: the upload is still waiting, not refused.
    assert not entered.wait(0.5)
    queue.leave(holder)
    assert entered.wait(5)
    thread.join(5)
    assert queue.counts() == {k: 0 for k in queue.counts()}


def test_under_a_flood_of_visits_every_waiting_visit_is_served_in_arrival_order() -> None:
    """16 threads enter codenames in a loop; one more visitor, arriving late, is served
    after at most the 16 requests that were ahead of it, and never refused."""
    queue = DerivationQueue(slots=2, visit_queue=32, visit_wait=30)
    stop = threading.Event()
    served: list[str] = []
    lock = threading.Lock()

    def enter(name: str) -> None:
        with queue.slot(VISIT):
            time.sleep(0.005)  # the derivation
            with lock:
                served.append(name)

    def flood() -> None:
        while not stop.is_set():
            enter("flood")

    flooders = [threading.Thread(target=flood) for _ in range(16)]
    for thread in flooders:
        thread.start()
    time.sleep(0.1)
    ticket = queue.join(VISIT)
    with lock:
        before = len(served)
    try:
        queue.wait(ticket)
        with lock:
            served.append("source")
    finally:
        queue.leave(ticket)
        stop.set()
    for thread in flooders:
        thread.join(10)
    # Ahead of it: at most the 16 flooders' one request each, running or waiting.
    assert served.index("source") - before <= 16, (before, served.index("source"))


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        DerivationQueue(slots=0, visit_queue=1, visit_wait=1)
    with pytest.raises(ValueError):
        DerivationQueue(slots=1, visit_queue=0, visit_wait=1)
