"""A TCP proxy on loopback that a test can cut: the browser's connections to the server
break at a moment the test chooses, as they would when a network drops."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.e2e.server import HOST

CHUNK = 65536


class CuttableProxy:
    """Forwards connections on ``port`` to ``target_port``. ``cut()`` closes every open
    connection and refuses new ones until ``resume()``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        self.accepting = True
        self.closed = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed
            if not self.accepting:
                client.close()
                continue
            upstream = socket.create_connection((HOST, self.target_port))
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(CHUNK):
                sink.sendall(data)
        for sock in (source, sink):
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def cut(self) -> None:
        """Break every connection now and refuse new ones."""
        self.accepting = False
        with self._lock:
            open_now = list(self._open)
        for sock in open_now:
            self._close(sock)

    def resume(self) -> None:
        self.accepting = True

    def close(self) -> None:
        self.closed = True
        self.cut()
        self.listener.close()
