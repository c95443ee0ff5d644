"""Fair queueing: one visitor holds at most ``VISITOR_SLOTS`` places in the model queue.

Gradio's queue is first-in first-out, so one client submitting many heavy requests would fill it
for everyone. Each model event is admitted (or refused) before it is queued: a visitor is its
session and, where a trusted proxy forwards the client's address (Hugging Face Spaces), that
address too, since session hashes are chosen by the client.

The count is this visitor's model events that the queue holds (waiting or running, still alive)
plus admissions not yet visible there: validators of simultaneous submissions run side by side,
and an admitted event is registered only after its validator returns.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

PENDING_SECONDS = 5.0     # an admission not seen in the queue after this long was refused there (queue full)
_lock = threading.Lock()
_admitted: list[tuple[float, str, str | None]] = []   # (monotonic time, session, address)


@dataclass(frozen=True)
class Visitor:
    session: str
    address: str | None    # the forwarded client address, where a trusted proxy sets it

    def owns(self, session: str | None, address: str | None) -> bool:
        return session == self.session or (self.address is not None and address == self.address)


def trusted_proxy(environ=None) -> bool:
    """On Spaces (SPACE_ID) the proxy's X-Forwarded-For names the client; elsewhere anyone can write it."""
    env = os.environ if environ is None else environ
    return bool(env.get("SPACE_ID")) or env.get("TRUST_FORWARDED_FOR", "") == "1"


def address_of(headers, environ=None) -> str | None:
    if headers is None or not trusted_proxy(environ):
        return None
    forwarded = headers.get("x-forwarded-for") or ""
    first = forwarded.split(",")[0].strip()
    return first or None


def visitor_of(session: str | None, headers, environ=None) -> Visitor:
    return Visitor(session or "", address_of(headers, environ))


def held(queue, visitor: Visitor, concurrency_id: str, environ=None) -> list[float]:
    """Enqueue times of this visitor's live events in the ``concurrency_id`` group (waiting or running)."""
    events = getattr(queue, "event_ids_to_events", None) or {}
    times = []
    for event in list(events.values()):
        if getattr(event, "concurrency_id", None) != concurrency_id or not getattr(event, "alive", True):
            continue
        headers = getattr(getattr(event, "request", None), "headers", None)
        if visitor.owns(getattr(event, "session_hash", None), address_of(headers, environ)):
            times.append(float(getattr(event, "enqueue_time", 0.0)))
    return times


def admit(queue, visitor: Visitor, slots: int, concurrency_id: str = "model", environ=None,
          clock=time.monotonic) -> str | None:
    """None (admitted, and counted until its event shows in the queue) or the refusal's text."""
    with _lock:
        now = clock()
        _admitted[:] = [a for a in _admitted if now - a[0] < PENDING_SECONDS]
        times = held(queue, visitor, concurrency_id, environ)
        mine = sorted(t for t, session, address in _admitted if visitor.owns(session, address))
        # an admission is visible once an event of this visitor was enqueued after it
        unseen = max(0, len(mine) - sum(1 for t in times if mine and t >= mine[0]))
        count = len(times) + unseen
        if count >= slots:
            return (f"you already have {count} run(s) queued or running; allowed: {slots} per visitor at a time "
                    f"(VISITOR_SLOTS) so that everyone gets a turn: wait for one to finish, or stop one")
        _admitted.append((now, visitor.session, visitor.address))
        return None


def forget() -> None:
    with _lock:
        _admitted.clear()
