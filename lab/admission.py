"""Fair queueing: one visitor holds at most ``VISITOR_SLOTS`` places in the model queue.

Gradio's queue is first-in first-out, so one client submitting many heavy requests would fill it
for everyone. Each model event is admitted (or refused) before it is queued: a visitor is its
session and, where a trusted proxy forwards the client's address (Hugging Face Spaces), that
address too, since session hashes are chosen by the client.

The count is this visitor's model events that the queue holds (waiting or running, still alive)
plus admissions not yet registered there: validators of simultaneous submissions run side by side,
and an admitted event is registered only after its validator returns. An admission is registered
once the queue has recorded an event of its session at or after the admission's time (the queue's
record of events, ``event_analytics``, also keeps events that have already finished).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

PENDING_SECONDS = 30.0    # an admission never registered after this long was refused there (queue full)
_lock = threading.Lock()
_admitted: list[tuple[float, str, str | None]] = []   # (time.time(), session, address), not yet registered
_registered: set = set()                               # event ids that resolved an admission


@dataclass(frozen=True)
class Visitor:
    session: str | None    # None: a call without a session (the HTTP /call route): its own event only
    address: str | None    # the forwarded client address, where a trusted proxy sets it

    def owns(self, session: str | None, address: str | None) -> bool:
        return (self.session is not None and session == self.session) or (
            self.address is not None and address == self.address)


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
    return Visitor(session or None, address_of(headers, environ))


def held(queue, visitor: Visitor, concurrency_id: str, environ=None) -> list[float]:
    """Enqueue times of this visitor's live events in the ``concurrency_id`` group (waiting or running)."""
    events = getattr(queue, "event_ids_to_events", None) or {}
    pending = getattr(queue, "pending_event_ids_session", None)
    times = []
    for event in list(events.values()):
        if getattr(event, "concurrency_id", None) != concurrency_id or not getattr(event, "alive", True):
            continue
        # its result already sent (the client may ask again before the queue forgets the event)
        if isinstance(pending, dict) and event._id not in dict.get(pending, event.session_hash, ()):
            continue
        headers = getattr(getattr(event, "request", None), "headers", None)
        if visitor.owns(getattr(event, "session_hash", None), address_of(headers, environ)):
            times.append(float(getattr(event, "enqueue_time", 0.0)))
    return times


def _resolve(queue, now: float) -> None:
    """Drop the admissions whose events the queue has registered (each event resolves one)."""
    records = getattr(queue, "event_analytics", None) or {}
    recorded = sorted((r.get("time", 0.0), event_id, r.get("session_hash")) for event_id, r in list(records.items())
                      if event_id not in _registered)
    still = []
    for when, session, address in sorted(_admitted):
        # a call without a session gets its event id as its session
        match = next((e for e in recorded if e[0] >= when and (e[2] == session if session else e[2] == e[1])), None)
        if match is not None:
            recorded.remove(match)
            _registered.add(match[1])
        elif now - when < PENDING_SECONDS:
            still.append((when, session, address))
    _admitted[:] = still
    _registered.intersection_update(records)   # bounded by the queue's own record


def admit(queue, visitor: Visitor, slots: int, concurrency_id: str = "model", environ=None,
          clock=time.time) -> str | None:
    """None (admitted, and counted until its event is registered in the queue) or the refusal's text."""
    with _lock:
        now = clock()
        _resolve(queue, now)
        unregistered = sum(1 for _, session, address in _admitted if visitor.owns(session, address))
        count = len(held(queue, visitor, concurrency_id, environ)) + unregistered
        if count >= slots:
            return (f"you already have {count} run(s) queued or running; allowed: {slots} per visitor at a time "
                    f"(VISITOR_SLOTS) so that everyone gets a turn: wait for one to finish, or stop one")
        _admitted.append((now, visitor.session, visitor.address))
        return None


def forget() -> None:
    with _lock:
        _admitted.clear()
        _registered.clear()
