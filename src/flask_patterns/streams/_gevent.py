"""What the fan-out needs to know of gevent, when gevent patched threads."""

from __future__ import annotations

import sys
import threading
import typing as t


def original_get_ident() -> int:
    """The OS thread's id, which gevent's patch turns into a greenlet's."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return threading.get_ident()
    return t.cast(int, monkey.get_original("_thread", "get_ident")())


def patched_hub() -> tuple[t.Any, t.Callable[[], t.Any]] | None:
    """gevent's hub and ``getcurrent`` if gevent patched ``threading``, so that
    waits can park greenlets on the hub; ``None`` otherwise."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return None
    import gevent

    return gevent.get_hub(), gevent.getcurrent


def run_on_hub(
    hub: t.Any, hub_thread: int, callback: t.Callable[..., None], *args: t.Any
) -> None:
    """Have ``hub`` run ``callback(*args)`` soon, from whichever OS thread."""
    if original_get_ident() == hub_thread:
        hub.loop.run_callback(callback, *args)
    else:
        hub.loop.run_callback_threadsafe(callback, *args)
