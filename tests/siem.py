"""What the SIEM tests share: an HTTP collector in a thread, and a writer appending entries.

Run as a module, it is the writer process of the follow tests:
``python -m tests.siem append LOG_URL KEY_FILE START COUNT``.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agentfence._signing import Signer, read_private_key, write_private_key
from agentfence.log import SignedLog
from agentfence.records import OutcomeRecord


@dataclass
class Request:
    """One POST the collector received, and the status it answered (None: no answer)."""

    key: str | None
    content_type: str | None
    headers: dict[str, str]
    body: bytes
    status: int | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        if self.content_type == "application/json":
            loaded: list[dict[str, Any]] = json.loads(self.body)
            return loaded
        return [json.loads(line) for line in self.body.decode().splitlines()]

    @property
    def seqs(self) -> list[int]:
        return [_seq(event) for event in self.events]


def _seq(event: dict[str, Any]) -> int:
    return int(event["seq"] if "seq" in event else event["event"]["sequence"])


@dataclass
class Collector:
    """An HTTP collector: answers ``statuses`` in turn (then 200), records every request,
    and can hold one request unanswered (``hold_at``, counted from 0) until released."""

    statuses: list[int] = field(default_factory=list)
    hold_at: int | None = None
    requests: list[Request] = field(default_factory=list)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self) -> list[int]:
        """The seqs a collector deduplicating by Idempotency-Key keeps, in arrival order."""
        seen: set[str | None] = set()
        seqs: list[int] = []
        for request in self.requests:
            if request.status is not None and 200 <= request.status < 300:
                if request.key in seen:
                    continue
                seen.add(request.key)
                seqs.extend(request.seqs)
        return seqs

    def answered(self) -> list[Request]:
        return [r for r in self.requests if r.status is not None and r.status < 300]


@contextmanager
def collector(**options: Any) -> Iterator[Collector]:
    """A :class:`Collector` listening on localhost for the block's duration."""
    state = Collector(**options)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the http.server method name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            request = Request(
                self.headers.get("Idempotency-Key"),
                self.headers.get("Content-Type"),
                dict(self.headers.items()),
                body,
            )
            with state.lock:
                index = len(state.requests)
                state.requests.append(request)
                status = state.statuses[index] if index < len(state.statuses) else 200
            if index == state.hold_at:
                state.held.set()
                state.release.wait(60)
                return  # never answered: the pusher was killed while waiting
            request.status = status
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/ingest"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def new_log(
    url: str | Path,
    count: int,
    *,
    key_dir: Path | None = None,
    name: str = "siem",
    status: str = "success",
) -> tuple[str, Path]:
    """A log at ``url`` (a SQLite file, or any log URL with ``key_dir``) with ``count``
    outcome entries, and its key file."""
    folder = key_dir if key_dir is not None else Path(url).parent
    key_file = folder / f"{name}.key"
    write_private_key(key_file, Signer.generate(name))
    append(str(url), key_file, 0, count, status=status)
    return str(url), key_file


def append(
    url: str, key_file: Path, start: int, count: int, *, pause: float = 0.0, status: str = "success"
) -> None:
    """Append ``count`` outcome entries, one commit each, named ``d{start}``…"""
    signer = read_private_key(key_file)
    with SignedLog.open(url, signer=signer, checkpoint_interval=math.inf) as log:
        for number in range(start, start + count):
            record = OutcomeRecord(
                decision_id=f"d{number}",
                status="success" if status == "success" else "error",
                result_digest="0" * 64,
                time_us=1_795_000_000_000_000 + number,
            )
            log.append(record)
            if pause:
                time.sleep(pause)


if __name__ == "__main__" and sys.argv[1:2] == ["append"]:
    append(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), pause=0.002)
