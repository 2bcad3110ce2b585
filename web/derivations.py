"""Who gets an Argon2id slot, and in which order: the derivation queue of one worker.

A codename derivation costs memory and CPU on purpose, so only `slots` run at once.
Requests that find every slot taken wait in a queue instead of being refused:

- An *upload* (a first submission, then a follow-up) is never refused for lack of a
  slot: its body is already on its way (a browser sends it with the head), and a
  refusal would throw away what the source sent. Uploads go first, first submissions
  before follow-ups. An upload asks for its slot only once its body has brought
  DERIVE_AFTER_BYTES or ended (the bytes wait, in memory, for the source's keys: the
  SOURCE record is sealed before them), and among uploads of a kind the one whose
  body took the least time to do so goes first (its rank), then arrival order. A
  client holding an upload open while trickling its body so waits behind every
  source actually sending, and one only opening uploads never asks at all.
- A *visit* (the replies page, a deletion: a small form) waits at most `visit_wait`
  seconds, and at most `visit_queue` visits wait at once; beyond that it gets the calm
  429 page at once (`DerivationsBusy`). With two or more slots, visits run in all but
  one, so an upload arriving during a flood of codename entries finds a slot free.

A flood of codename entries (anyone can compute valid checksum words) is then a queue
a returning source waits in, rather than a lottery they lose, and it holds at most
`visit_queue` waiting requests and `slots - 1` derivations of a worker. It cannot tell a flood
from a returning source: both post a codename to /replies (docs/ONION.md, "One
circuit, one slot?", says why circuits are not told apart either).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum

# An upload's body must bring this much (or end) before it asks for a derivation: a
# source's form and the start of a file over Tor in a second or two, a client
# trickling 600 bytes a second in nearly two minutes.
DERIVE_AFTER_BYTES = 64 * 1024


class DerivationsBusy(Exception):
    """A visit (the replies page or a deletion) found the derivation queue full, or
    waited `codename_wait_seconds` without a slot. The visitor is shown the calm 429
    page ("try again"); an upload never raises it."""


class Kind(IntEnum):
    """What a derivation is for; a lower value is served first."""

    FIRST_SUBMISSION = 0
    FOLLOW_UP = 1
    VISIT = 2

    @property
    def is_upload(self) -> bool:
        return self is not Kind.VISIT


@dataclass(eq=False)
class Ticket:
    """One request's place: waiting, then holding a slot (`granted`), then gone."""

    kind: Kind
    order: int
    # Among uploads of a kind, a lower rank goes first (the seconds its body took to
    # show it is arriving: `DERIVE_AFTER_BYTES`); arrival order breaks ties.
    rank: float = 0.0
    granted: bool = False
    left: bool = field(default=False, repr=False)


class DerivationQueue:
    """The slots of one worker process and the requests waiting for them (thread-safe).

    `join` takes a place (granted at once when the policy allows), `wait` blocks until
    granted, `leave` gives the slot or the place back; `slot` does all three.
    """

    def __init__(
        self,
        slots: int,
        visit_queue: int,
        visit_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if slots < 1 or visit_queue < 1 or visit_wait <= 0:
            raise ValueError("slots, visit_queue and visit_wait must be positive")
        self.slots = slots
        self.visit_queue = visit_queue
        self.visit_wait = visit_wait
        # With one slot nothing can be kept for uploads; they still go first in the queue.
        self.visit_slots = max(1, slots - 1)
        self._clock = clock
        self._changed = threading.Condition()
        self._waiting: list[Ticket] = []
        self._running: list[Ticket] = []
        self._orders = itertools.count()

    @contextmanager
    def slot(self, kind: Kind, rank: float = 0.0) -> Iterator[None]:
        """Hold a derivation slot for the block; DerivationsBusy only for a visit."""
        ticket = self.join(kind, rank)
        try:
            self.wait(ticket)
            yield
        finally:
            self.leave(ticket)

    def join(self, kind: Kind, rank: float = 0.0) -> Ticket:
        """Take a place in the queue, or DerivationsBusy if it is a visit and
        `visit_queue` visits already wait. The ticket may be granted at once."""
        with self._changed:
            waiting_visits = sum(1 for t in self._waiting if t.kind is Kind.VISIT)
            if kind is Kind.VISIT and waiting_visits >= self.visit_queue:
                raise DerivationsBusy("the derivation queue is full")
            ticket = Ticket(kind, next(self._orders), rank if kind.is_upload else 0.0)
            self._waiting.append(ticket)
            self._waiting.sort(key=lambda t: (t.kind, t.rank, t.order))
            self._dispatch()
            return ticket

    def wait(self, ticket: Ticket) -> None:
        """Block until `ticket` holds a slot. A visit gives up after `visit_wait`
        seconds (DerivationsBusy, its place given back); an upload never does."""
        deadline = self._clock() + self.visit_wait if ticket.kind is Kind.VISIT else None
        with self._changed:
            while not ticket.granted:
                if deadline is None:
                    self._changed.wait()
                    continue
                remaining = deadline - self._clock()
                if remaining <= 0:
                    self._drop(ticket)
                    raise DerivationsBusy("no derivation slot came free in time")
                self._changed.wait(remaining)

    def leave(self, ticket: Ticket) -> None:
        """Give back the slot `ticket` holds, or its place in the queue (idempotent)."""
        with self._changed:
            self._drop(ticket)

    def counts(self) -> dict[str, int]:
        """Running and waiting derivations, by kind (what the tests look at)."""
        with self._changed:
            out = {f"running_{k.name.lower()}": 0 for k in Kind}
            out.update({f"waiting_{k.name.lower()}": 0 for k in Kind})
            for prefix, tickets in (("running", self._running), ("waiting", self._waiting)):
                for t in tickets:
                    out[f"{prefix}_{t.kind.name.lower()}"] += 1
            return out

    def _drop(self, ticket: Ticket) -> None:
        if ticket.left:
            return
        ticket.left = True
        if ticket.granted:
            self._running.remove(ticket)
        else:
            self._waiting.remove(ticket)
        self._dispatch()

    def _dispatch(self) -> None:
        """Grant free slots in queue order: uploads first; a visit only while fewer
        than `visit_slots` visits run (the last slot is kept for uploads)."""
        granted = False
        for ticket in list(self._waiting):
            if len(self._running) >= self.slots:
                break
            if ticket.kind is Kind.VISIT:
                visits = sum(1 for t in self._running if t.kind is Kind.VISIT)
                if visits >= self.visit_slots:
                    break  # every later ticket is a visit too (the queue is sorted)
            self._waiting.remove(ticket)
            self._running.append(ticket)
            ticket.granted = granted = True
        if granted:
            self._changed.notify_all()
