"""A TCP proxy on 127.0.0.1 that a test can cut and restore: a network partition between one
process and the PostgreSQL server, made without privileges.

While it is cut, nothing crosses: bytes sent either way are held back unanswered (as on a
network that drops every packet), and a new connection is accepted but never reaches the
server. `restore()` ends every connection made before it (both sides: after a real partition
the client has given up on them) and relays new ones again.
"""

from __future__ import annotations

import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)
        self._thread.start()

    # -- what a test does ------------------------------------------------------------------------

    def cut(self) -> None:
        self._open.clear()

    def restore(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, server in pairs:
            for sock in (client, server):
                if sock is not None:
                    _close(sock)
        self._open.set()

    def close(self) -> None:
        self._closed = True
        self.restore()
        _close(self.listener)

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- relaying --------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                with self._lock:
                    self._pairs.append((client, None))  # accepted, never connected: the server is out of reach
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._relay, args=(client, server), name="tcp-proxy-relay", daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        peers = {client: server, server: client}
        try:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while True:
                if not self._open.is_set():  # hold everything back: read nothing, so nothing is answered
                    self._open.wait(0.1)
                    if not self._alive(client):
                        return
                    continue
                for key, _ in selector.select(timeout=0.05):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    peers[key.fileobj].sendall(data)  # type: ignore[index]
        except OSError:
            return
        finally:
            selector.close()
            for sock in peers:
                _close(sock)

    def _alive(self, client: socket.socket) -> bool:
        with self._lock:
            return any(pair[0] is client for pair in self._pairs)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
