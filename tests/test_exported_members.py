from __future__ import annotations

import importlib
import pkgutil

import pytest

import flask_patterns

MODULES = [
    "assets",
    "bodies",
    "context",
    "css",
    "db",
    "outbox",
    "redirects",
    "responses",
    "sse",
    "streams",
    "tokens",
]


def test_package_exports_exactly_the_public_names():
    # Submodules become attributes once anything imports them: leave them out.
    submodules = {m.name for m in pkgutil.iter_modules(flask_patterns.__path__)}
    exported = {name for name in dir(flask_patterns) if not name.startswith("_")}
    assert exported - {*submodules, "annotations"} == set(flask_patterns.__all__)
    assert set(MODULES) <= submodules
    assert flask_patterns.__all__ == [
        "Assets",
        "Bodies",
        "Database",
        "EventStreams",
        "JSONResponses",
        "MemoryBroker",
        "ObjectJSONProvider",
        "Outbox",
        "RedisBroker",
        "ServerSentEvent",
        "TokenError",
        "TokenExpired",
        "TokenInvalid",
        "Tokens",
        "after_commit",
        "capture_on_commit_callbacks",
        "is_safe_url",
        "redirect_back",
        "run_in_task",
        "save_body",
        "stream_body",
        "task_state",
    ]


EXPECTED = {
    "assets": {
        "Assets",
        "BuildReport",
        "assets_cli",
        "build_assets",
        "hashed_filename",
        "split_hashed_filename",
    },
    "bodies": {
        "CHUNK_SIZE",
        "Bodies",
        "BodyIncomplete",
        "BodyTooLarge",
        "SavedBody",
        "StreamingRequest",
        "iter_body",
        "save_body",
        "stream_body",
    },
    "css": {"find_urls", "rewrite_urls"},
    "db": {
        "Database",
        "TaskSession",
        "after_commit",
        "capture_on_commit_callbacks",
        "committed",
        "default_commit_veto",
        "is_transient_error",
        "rolled_back",
    },
    "outbox": {"Message", "Outbox", "metadata", "outbox_table"},
    "redirects": {"MAX_URL_LENGTH", "is_safe_url", "redirect_back", "resolve_safe_url"},
    "responses": {"JSONResponses", "ObjectJSONProvider", "is_json_object"},
    "sse": {"ServerSentEvent", "comment"},
    "streams": {
        "Broker",
        "BrokerUnavailable",
        "EventStreams",
        "Listener",
        "MAX_EVENT_ID",
        "MemoryBroker",
        "RedisBroker",
        "Replay",
        "StoredEvent",
        "parse_event_id",
        "remote_address",
    },
    "tokens": {
        "TokenError",
        "TokenExpired",
        "TokenInvalid",
        "Tokens",
        "dumps",
        "loads",
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_modules_declare_their_public_names(name):
    module = importlib.import_module(f"flask_patterns.{name}")
    assert set(module.__all__) == EXPECTED[name]
    for public in module.__all__:
        assert hasattr(module, public), public
