"""A local HTTP endpoint for notification tests: http.server in a thread, started by the test."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass(frozen=True)
class Delivery:
    """One POST the endpoint received: its path, headers and exact body bytes."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every POST; answers 500 to the first ``fail_first``, and with ``hold`` set
    keeps each request open until ``release`` is set (``timed_out`` if it never is)."""

    fail_first: int = 0
    hold: bool = False
    deliveries: queue.Queue[Delivery] = field(default_factory=queue.Queue)
    attempts: list[int] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    timed_out: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.attempts.append(len(receiver.attempts) + 1)
                receiver.arrived.set()
                if receiver.hold and not receiver.release.wait(60):
                    receiver.timed_out.set()
                if len(receiver.attempts) <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.deliveries.put(Delivery(self.path, dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def next(self) -> Delivery:
        """The next delivery received (waits up to 30 s, so a lost one fails, not hangs)."""
        return self.deliveries.get(timeout=30)

    def close(self) -> None:
        """Release held requests and stop the server."""
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
