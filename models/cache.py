"""An LRU cache of loaded models so the app does not reload a checkpoint per request."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict

DEFAULT_CACHE_SIZE = 2
_cache: OrderedDict = OrderedDict()
_lock = threading.Lock()


def cache_size() -> int:
    raw = os.environ.get("MODEL_CACHE_SIZE", str(DEFAULT_CACHE_SIZE))
    try:
        size = int(raw)
    except ValueError:
        raise ValueError(f"environment MODEL_CACHE_SIZE={raw!r} must be a non-negative integer") from None
    if size < 0:
        raise ValueError(f"environment MODEL_CACHE_SIZE={raw!r} must be a non-negative integer")
    return size


def get(source, revision=None, subfolder=None, device=None, dtype=None, channels_last=False, **kwargs):
    """``models.load`` with the last MODEL_CACHE_SIZE (default 2) models kept in memory."""
    from .sources import load

    key = (str(source), revision, subfolder, None if device is None else str(device), str(dtype),
           bool(channels_last), tuple(sorted(kwargs.items())))
    size = cache_size()
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        # Loading under the lock keeps two requests from loading the same checkpoint twice.
        model = load(source, revision=revision, subfolder=subfolder, device=device, dtype=dtype,
                     channels_last=channels_last, **kwargs)
        if size > 0:
            _cache[key] = model
            while len(_cache) > size:
                _cache.popitem(last=False)
        return model


def cache_info() -> list:
    with _lock:
        return [key[0] for key in _cache]


def cache_clear() -> None:
    with _lock:
        _cache.clear()
