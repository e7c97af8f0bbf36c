"""Server-sent event streams fanned out through a broker.

Every event is appended to a bounded per-channel history and gets a short id from
it, so a client that reconnects can say which event it saw last. Brokers work
without a Flask app, so a worker process can publish too. See
``docs/event-streams.md``; ``docs/architecture.md`` shows how the modules of
this package fit together.
"""

from __future__ import annotations

from .broker import Broker
from .broker import BrokerUnavailable
from .broker import DEFAULT_HISTORY
from .events import History
from .events import MAX_EVENT_ID
from .events import parse_event_id
from .events import Replay
from .events import StoredEvent
from .extension import close_streams
from .extension import EventStreams
from .listener import DEFAULT_QUEUE_LIMIT
from .listener import Listener
from .memory import MemoryBroker
from .redis import RedisBroker
from .slots import DEFAULT_MAX_PER_CLIENT
from .slots import remote_address

__all__ = [
    "DEFAULT_HISTORY",
    "DEFAULT_MAX_PER_CLIENT",
    "DEFAULT_QUEUE_LIMIT",
    "MAX_EVENT_ID",
    "Broker",
    "BrokerUnavailable",
    "EventStreams",
    "History",
    "Listener",
    "MemoryBroker",
    "RedisBroker",
    "Replay",
    "StoredEvent",
    "close_streams",
    "parse_event_id",
    "remote_address",
]
