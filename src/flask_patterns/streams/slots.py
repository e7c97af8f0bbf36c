"""The cap on the open streams of one client in a process."""

from __future__ import annotations

import threading
import typing as t

from flask import request

__all__ = [
    "DEFAULT_MAX_PER_CLIENT",
    "ClientKey",
    "ClientSlots",
    "remote_address",
]

#: Open streams per client and process, by default.
DEFAULT_MAX_PER_CLIENT = 10

#: Names the client of the current request, for the cap.
ClientKey = t.Callable[[], str]


def remote_address() -> str:
    """The default client of a stream: the request's remote address."""
    return request.remote_addr or ""


class ClientSlots:
    """How many streams each client holds open in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def take(self, client: str, limit: int) -> t.Callable[[], None] | None:
        """A slot for ``client``, or ``None`` when it holds ``limit`` already.
        The function returned gives the slot back; calling it again does
        nothing."""
        with self._lock:
            held = self._open.get(client, 0)
            if held >= limit:
                return None
            self._open[client] = held + 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            with self._lock:
                if given_back:
                    return
                given_back = True
                left = self._open[client] - 1
                if left:
                    self._open[client] = left
                else:
                    del self._open[client]

        return give_back

    def held(self, client: str) -> int:
        """How many streams ``client`` holds open now."""
        with self._lock:
            return self._open.get(client, 0)
