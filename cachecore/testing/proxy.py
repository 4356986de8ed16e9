"""A loopback TCP proxy that injects transport faults between a client and a real server.

:class:`FaultProxy` listens on a free loopback port and forwards every connection to the
server. It can be told to:

* :meth:`~FaultProxy.drop_next_reply`: close the connection when the server's next reply
  arrives, without forwarding it: the server executed the command, the client never
  learns the result (a "lost reply");
* :meth:`~FaultProxy.delay_replies`: hold every reply for some seconds before forwarding it.

Example::

    with FaultProxy(server.host, server.port) as proxy:
        cache = cachecore.from_url(f"valkey://127.0.0.1:{proxy.port}/0")
        cache.set("warm", 1)          # connect first: the handshake's replies pass
        proxy.drop_next_reply()
        assert cache.inc("n") in (None, 1)

The proxy runs on daemon threads, and stops by itself after ``lifetime`` seconds even if
it is never closed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from types import TracebackType
from typing import Self

_POLL = 0.05
"""Seconds each thread waits on a socket before checking whether the proxy stopped."""


class FaultProxy:
    """A fault-injecting TCP proxy in front of ``host:port``.

    :param host: the server's host.
    :param port: the server's port.
    :param lifetime: seconds after which the proxy stops by itself (closing every
        connection), so a forgotten proxy never outlives a test run for long.
    """

    def __init__(self, host: str, port: int, lifetime: float = 120.0) -> None:
        self.target = (host, port)
        self._deadline = time.monotonic() + lifetime
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._drop_armed = False
        self._delay = 0.0
        self._sockets: set[socket.socket] = set()
        self.dropped = 0
        """Replies dropped so far (each one closed its connection)."""
        self.connections = 0
        """Client connections accepted so far."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL)
        self.host = "127.0.0.1"
        self.port: int = self._listener.getsockname()[1]
        """The port clients connect to instead of the server's."""
        self._acceptor = threading.Thread(
            target=self._accept, name=f"fault-proxy-{self.port}", daemon=True
        )
        self._acceptor.start()

    # -- the faults ----------------------------------------------------------------------

    def drop_next_reply(self) -> None:
        """Close the connection that receives the next data from the server, instead of
        forwarding that data: the command was executed, its reply is lost."""
        with self._lock:
            self._drop_armed = True

    def delay_replies(self, seconds: float) -> None:
        """Hold every later chunk of server data ``seconds`` before forwarding it
        (0 = forward at once again)."""
        if seconds < 0:
            raise ValueError(f"delay must be >= 0, got {seconds}")
        with self._lock:
            self._delay = seconds

    def close(self) -> None:
        """Stop accepting and close every connection (idempotent)."""
        self._stop.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)
        if threading.current_thread() is not self._acceptor:
            self._acceptor.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FaultProxy 127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]}>"

    # -- forwarding ----------------------------------------------------------------------

    def _stopped(self) -> bool:
        return self._stop.is_set() or time.monotonic() > self._deadline

    def _accept(self) -> None:
        try:
            while not self._stopped():
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return  # closed
                try:
                    server = socket.create_connection(self.target, timeout=5)
                except OSError:
                    _close(client)  # the server is down: so is the proxied connection
                    continue
                for sock in (client, server):
                    sock.settimeout(10)  # bounds a sendall to a client that stopped reading
                with self._lock:
                    self._sockets |= {client, server}
                    self.connections += 1
                pair = (client, server)
                for source, sink, replies in ((client, server, False), (server, client, True)):
                    threading.Thread(
                        target=self._pump, args=(source, sink, replies, pair), daemon=True
                    ).start()
        finally:
            if not self._stop.is_set():  # lifetime over
                self.close()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        replies: bool,
        pair: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while not self._stopped():
                readable, _, _ = select.select([source], [], [], _POLL)
                if not readable:
                    continue
                data = source.recv(65536)
                if not data:
                    return
                if replies:
                    with self._lock:
                        drop, self._drop_armed = self._drop_armed, False
                        delay = self._delay
                        if drop:
                            self.dropped += 1
                    if drop:
                        return
                    if delay:
                        time.sleep(delay)
                sink.sendall(data)
        except (OSError, ValueError):  # ValueError: the other pump closed the socket
            return
        finally:
            with self._lock:
                self._sockets -= set(pair)
            for sock in pair:
                _close(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already shut down by the peer
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
