"""Streaming a run to a web server without stalling the sampler: a worker thread, a preview throttle."""
from __future__ import annotations

import math
import queue
import threading
import time
from typing import Callable, Iterator


class Throttle:
    """Decides when a preview is worth sending: at most ``per_second`` a second, and no more often
    than keeps previews (drawing them plus what the consumer does with one: JPEG, file, network) to
    ``budget`` of the run's time. The cost is measured, so a slow or busy machine gets fewer previews
    instead of a slower run."""

    def __init__(self, per_second: float, clock=time.perf_counter, budget: float = 0.05):
        self.gap = 1.0 / per_second
        self.clock = clock
        self.budget = budget
        self.cost = 0.0
        self.last = -math.inf

    def ready(self, force: bool = False) -> bool:
        now = self.clock()
        if force or now - self.last >= max(self.gap, self.cost / self.budget):
            self.last = now
            return True
        return False

    def spent(self, seconds: float) -> None:
        """Report what the last preview cost (an average, so one slow frame does not stall previews)."""
        self.cost = seconds if self.cost == 0.0 else 0.5 * (self.cost + seconds)


def relay(source: Iterator, wrap: Callable) -> Iterator:
    """Yield ``wrap(item)`` for every item of the generator ``source``; return what ``source`` returns."""
    while True:
        try:
            item = next(source)
        except StopIteration as stop:
            return stop.value
        yield wrap(item)


_END = object()


def in_background(make_iterator: Callable[[], Iterator], lead: int = 4,
                  cancelled: Callable[[], bool] | None = None) -> Iterator:
    """Run ``make_iterator()`` in a worker thread and yield its items here, in order, every one.

    A web server spends milliseconds on each streamed update (encoding, diffing, sending); done
    inline that time would add to every step. Here the sampler keeps computing while the consumer
    sends, so the run takes about as long as the network alone. The worker may run at most
    ``lead`` items ahead: a server slowed by load must not fall so far behind that a Stop lands
    after the sampler already finished. Closing this generator (a Stop) stops the worker before its
    next model evaluation, and closes the wrapped iterator there. ``cancelled()`` is a second way
    to stop it, checked after every item: a web server may be unable to close a generator that is
    busy waiting for its next item (Gradio retries the close between two updates only).
    """
    cancelled = cancelled or (lambda: False)
    items: "queue.Queue" = queue.Queue(maxsize=max(1, lead))
    stop, finished = threading.Event(), threading.Event()

    def hand_over(entry) -> bool:
        """Queue ``entry`` for the consumer; False once the consumer has gone or the request was cancelled."""
        while not (stop.is_set() or cancelled()):
            try:
                items.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work():
        iterator = None
        try:
            iterator = make_iterator()
            for item in iterator:
                if not hand_over((True, item)) or stop.is_set() or cancelled():
                    iterator.close()   # GeneratorExit at the sampler's yield: the run is marked stopped
                    return
            hand_over((True, _END))
        except BaseException as exc:  # handed to the consumer, raised there
            hand_over((False, exc))
        finally:
            finished.set()

    worker = threading.Thread(target=work, name="sampler-run", daemon=True)
    worker.start()
    try:
        while True:
            try:
                ok, item = items.get(timeout=0.05)
            except queue.Empty:
                if finished.is_set() and items.empty():   # stopped by cancelled(): nothing more will come
                    return
                continue
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
