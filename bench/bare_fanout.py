"""The ceiling of the event-stream benchmark (``bench.streams``): the least a
server that writes every event to every stream can do.

One process, no Flask, no WSGI, no gevent: a ``selectors`` loop over
non-blocking sockets. It answers ``GET /health`` and, on any other path, opens a
stream the way flask-patterns does (a chunked ``text/event-stream`` response
whose first chunk is ``retry:`` and a comment). It subscribes to the Redis
channel flask-patterns' ``RedisBroker`` notifies (``--notify-key``) and writes
each event's frame, chunk-framed, to every open stream with one ``send`` each;
what a full socket buffer does not take waits until the socket is writable.

So its CPU per delivery is the cost of a bare ``send`` of the same bytes to the
same number of sockets, plus a loop: the bound that no server in the benchmark
can pass on this machine.

``python -m bench.bare_fanout --port P --redis-url URL --notify-key KEY``.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import typing as t

import redis

HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: private, no-store\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
HEALTH = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def frame(event_id: str, data: str, event: str | None) -> bytes:
    """The frame flask-patterns writes for a stored event."""
    lines = [f"event: {event}"] if event else []
    lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


OPEN = chunk(b"retry: 3000\n\n: open\n\n")


class Connection:
    __slots__ = ("request", "sock", "unsent")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.request = b""
        #: What the socket's buffer did not take yet, in order.
        self.unsent = bytearray()


class Server:
    def __init__(self, port: int, pubsub: t.Any) -> None:
        self.selector = selectors.DefaultSelector()
        self.listener = socket.create_server(("127.0.0.1", port), backlog=2048)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, self.accept)
        self.pubsub = pubsub
        self.selector.register(
            pubsub.connection._sock, selectors.EVENT_READ, self.read_redis
        )
        self.streams: dict[socket.socket, Connection] = {}

    def run(self) -> None:
        while True:
            for key, mask in self.selector.select():
                key.data(key.fileobj, mask)

    def accept(self, listener: t.Any, mask: int) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, self.read_client)

    def read_client(self, sock: t.Any, mask: int) -> None:
        connection = self.streams.get(sock)
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if connection is not None:  # an open stream reads only its end
            if not data:
                self.close(sock)
            return
        self.request_part(sock, data)

    def request_part(self, sock: socket.socket, data: bytes) -> None:
        # The request arrives in one segment from the load client; a request
        # split in two is read again as it comes.
        head, _, _ = data.partition(b"\r\n\r\n")
        if not data:
            self.selector.unregister(sock)
            sock.close()
            return
        if head.split(b" ", 2)[1:2] == [b"/health"]:
            self.selector.unregister(sock)
            sock.sendall(HEALTH)
            sock.close()
            return
        connection = Connection(sock)
        self.streams[sock] = connection
        self.write(connection, HEADERS + OPEN)

    def read_redis(self, sock: t.Any, mask: int) -> None:
        while True:
            message = self.pubsub.get_message(timeout=0)
            if message is None:
                return
            if message["type"] != "message":
                continue
            payload = json.loads(message["data"])
            if len(payload) != 4:
                continue  # the word that ends a channel's streams
            event_id, _channel, data, event = payload
            data_chunk = chunk(frame(event_id, data, event))
            for connection in list(self.streams.values()):
                self.write(connection, data_chunk)

    def write(self, connection: Connection, data: bytes) -> None:
        if connection.unsent:
            connection.unsent += data
            return
        try:
            sent = connection.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close(connection.sock)
            return
        if sent < len(data):
            connection.unsent += data[sent:]
            self.selector.modify(
                connection.sock,
                selectors.EVENT_READ | selectors.EVENT_WRITE,
                self.flush,
            )

    def flush(self, sock: t.Any, mask: int) -> None:
        connection = self.streams[sock]
        if mask & selectors.EVENT_READ:
            self.read_client(sock, mask)
            if sock not in self.streams:
                return
        if not mask & selectors.EVENT_WRITE:
            return
        try:
            sent = sock.send(connection.unsent)
        except BlockingIOError:
            return
        except OSError:
            self.close(sock)
            return
        del connection.unsent[:sent]
        if not connection.unsent:
            self.selector.modify(sock, selectors.EVENT_READ, self.read_client)

    def close(self, sock: socket.socket) -> None:
        self.streams.pop(sock, None)
        self.selector.unregister(sock)
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--notify-key", required=True)
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(args.notify_key)
    while pubsub.get_message(timeout=1.0) is None:
        pass  # the subscription's confirmation
    Server(args.port, pubsub).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
