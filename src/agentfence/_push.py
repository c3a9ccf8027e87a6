"""Pushing log entries to an HTTP collector in batches, with a durable cursor (``docs/siem.md``).

The cursor file is the pusher's only state: the last seq the collector acknowledged (with
its leaf hash, so a different log under the same name is noticed) and the batch in flight.
Each batch goes through three steps, each durable before the next:

1. write the cursor with the batch as ``pending`` (first and last seq);
2. POST the batch until the collector answers 2xx (retrying 408, 425, 429, 5xx and
   connection failures with exponential backoff);
3. write the cursor with the batch's last seq as ``acked`` and nothing pending.

A restart sends the pending batch first, exactly as before: the same entries, the same bytes
and the same ``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header), which names the
log's origin, the batch's first and last seq and its last entry's leaf hash. So nothing is
skipped (the cursor moves only after a 2xx) and the only entries a collector can receive
twice are those of the one batch that was in flight when the process died after the
collector's 2xx but before step 3; it comes again identical, under the same key.

Every write of the cursor is atomic: a temporary file in the same folder, written, fsynced,
renamed over the cursor, and the folder fsynced (POSIX rename(2) replaces atomically).
"""

from __future__ import annotations

import email.utils
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from agentfence._siem import Format, StopFlag, dumps, follow, render
from agentfence._storage.tables import EntryRow, LogBackend
from agentfence.errors import AgentfenceError, ConfigurationError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "BODIES",
    "CURSOR_FORMAT",
    "Body",
    "PushCursor",
    "PushError",
    "PushReport",
    "Pusher",
    "collector_id",
    "idempotency_key",
    "read_cursor",
    "write_cursor",
]

CURSOR_FORMAT: Final = "agentfence.push-cursor/v1"
Body = Literal["ndjson", "json"]
BODIES: Final[tuple[Body, ...]] = ("ndjson", "json")
"""How a batch is encoded: NDJSON (one entry per line) or one JSON array."""

_CONTENT_TYPES: Final = {"ndjson": "application/x-ndjson", "json": "application/json"}
_RETRIED: Final = frozenset({408, 425, 429})  # and every 5xx
_T = TypeVar("_T", bound=str)


class PushError(AgentfenceError):
    """The collector refused a batch, or could not be reached after every retry."""


@dataclass(frozen=True)
class PushCursor:
    """What a push has had acknowledged: the state kept in the cursor file."""

    origin: str
    collector: str
    form: Format
    body: Body
    acked_seq: int = -1
    acked_leaf_hash: str | None = None
    pending: tuple[int, int] | None = None

    @property
    def next_seq(self) -> int:
        """The first seq not yet acknowledged."""
        return self.acked_seq + 1

    def to_json(self) -> dict[str, Any]:
        """The cursor file's content."""
        return {
            "format": CURSOR_FORMAT,
            "origin": self.origin,
            "collector": self.collector,
            "entry_format": self.form,
            "body": self.body,
            "acked": None
            if self.acked_seq < 0
            else {"seq": self.acked_seq, "leaf_hash": self.acked_leaf_hash},
            "pending": None
            if self.pending is None
            else {"first": self.pending[0], "last": self.pending[1]},
        }


@dataclass(frozen=True)
class PushReport:
    """What one run of :meth:`Pusher.run` sent."""

    batches: int
    entries: int
    acked_seq: int
    stopped: bool


def collector_id(url: str) -> str:
    """How the cursor names the collector: the URL without user info, query or fragment
    (they may hold secrets; a token belongs in a header)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def idempotency_key(origin: str, first: int, last: int, last_leaf_hash: str) -> str:
    """The ``Idempotency-Key`` of a batch: a structured-field string (RFC 8941) naming the
    log, the seqs the batch holds and its last entry's leaf hash, the same every time that
    batch is sent. The leaf hash tells apart two logs that share an origin (every host's
    ``fence.db`` is ``agentfence/fence`` unless given one): their batches never share a key."""
    text = quote(f"{origin}:{first}-{last}:{last_leaf_hash}", safe="/:.-_~@+")
    return f'"{text}"'


def _corrupt(path: Path, detail: str) -> ConfigurationError:
    return ConfigurationError(
        f"the push cursor {str(path)!r} is corrupt ({detail}). It records what the collector "
        "acknowledged: restore it from a backup, or delete it to push the whole log again "
        "(the collector can drop entries it has by their leaf hash, ECS event.id)"
    )


def read_cursor(path: Path) -> PushCursor | None:
    """The cursor in ``path``; ``None`` when the file does not exist yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"cannot be read: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _corrupt(path, f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != CURSOR_FORMAT:
        raise _corrupt(path, f"not a {CURSOR_FORMAT} document")
    try:
        acked, pending = data["acked"], data["pending"]
        cursor = PushCursor(
            origin=_text(data["origin"]),
            collector=_text(data["collector"]),
            form=_choice(data["entry_format"], ("jsonl", "ecs")),
            body=_choice(data["body"], BODIES),
            acked_seq=-1 if acked is None else _seq(acked["seq"]),
            acked_leaf_hash=None if acked is None else _text(acked["leaf_hash"]),
            pending=None if pending is None else (_seq(pending["first"]), _seq(pending["last"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _corrupt(path, f"bad or missing field {exc}") from None
    if cursor.pending is not None and not (
        cursor.pending[0] == cursor.next_seq and cursor.pending[1] >= cursor.pending[0]
    ):
        raise _corrupt(
            path, f"pending batch {cursor.pending} does not follow acked seq {cursor.acked_seq}"
        )
    return cursor


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(repr(value))
    return value


def _seq(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(repr(value))
    return value


def _choice(value: object, choices: tuple[_T, ...]) -> _T:
    for choice in choices:
        if value == choice:
            return choice
    raise ValueError(repr(value))


def write_cursor(path: Path, cursor: PushCursor) -> None:
    """Replace the cursor file atomically and durably (temp file, fsync, rename, fsync the
    folder): after a crash the file holds the old cursor or the new one, never a mix."""
    folder = path.parent
    temp = folder / f".{path.name}.{os.getpid()}.tmp"
    with temp.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(cursor.to_json(), sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold ``PATH.lock`` exclusively: two pushes sharing a cursor would send batches twice."""
    lock: IO[str] = (path.parent / f"{path.name}.lock").open("a")
    try:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigurationError(
                f"another `agentfence log push` is using the cursor {str(path)!r}; stop it "
                "first, or give this push a cursor file of its own"
            ) from None
        yield
    finally:
        lock.close()


class Pusher:
    """Pushes a log's entries to one collector, batch by batch, keeping a cursor."""

    def __init__(
        self,
        backend: LogBackend,
        url: str,
        *,
        stop: StopFlag,
        cursor_file: Path | None = None,
        batch: int = 100,
        form: Format = "jsonl",
        body: Body = "ndjson",
        headers: Sequence[tuple[str, str]] = (),
        retries: int = 10,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 30.0,
        say: Callable[[str], None] = lambda text: None,
    ) -> None:
        if batch < 1:
            raise ConfigurationError(f"--batch {batch}: a batch holds at least one entry")
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ConfigurationError("--retries and --backoff cannot be negative, --timeout > 0")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"--to {url!r}: give the collector's http:// or https:// URL")
        self._backend = backend
        self._url = url
        self._stop = stop
        self._cursor_file = cursor_file
        self._batch = batch
        self._headers = list(headers)
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._say = say
        origin = backend.get_meta().get("origin") or backend.name
        self._cursor = PushCursor(origin, collector_id(url), form, body)

    @property
    def cursor(self) -> PushCursor:
        """The cursor as it stands (what the collector has acknowledged)."""
        return self._cursor

    def run(self, *, follow_log: bool = False, poll_interval: float = 1.0) -> PushReport:
        """Push every entry after the cursor; with ``follow_log``, keep pushing new entries
        until the stop event is set. Returns what was sent."""
        import httpx

        if self._cursor_file is None:
            return self._run(httpx, follow_log, poll_interval)
        with _locked(self._cursor_file):
            stored = read_cursor(self._cursor_file)
            if stored is not None:
                self._cursor = self._resume(stored)
            return self._run(httpx, follow_log, poll_interval)

    def _resume(self, stored: PushCursor) -> PushCursor:
        """The stored cursor, once checked to belong to this log, collector and form."""
        name = str(self._cursor_file)
        fresh = self._cursor
        if stored.origin != fresh.origin:
            raise ConfigurationError(
                f"the push cursor {name!r} is for the log {stored.origin!r}, not "
                f"{fresh.origin!r}: give each log a cursor file of its own"
            )
        if stored.collector != fresh.collector:
            raise ConfigurationError(
                f"the push cursor {name!r} records pushes to {stored.collector}, not "
                f"{fresh.collector}: give each collector a cursor file of its own"
            )
        if (stored.form, stored.body) != (fresh.form, fresh.body):
            raise ConfigurationError(
                f"the push cursor {name!r} was written pushing --format {stored.form} "
                f"--body {stored.body}: use those, or a new cursor file"
            )
        if stored.acked_seq >= 0:
            rows = list(self._backend.entries(stored.acked_seq, stored.acked_seq + 1))
            if not rows:
                raise ConfigurationError(
                    f"the push cursor {name!r} says the collector has entries up to seq "
                    f"{stored.acked_seq}, but the log has fewer: the log was truncated or "
                    "replaced; find out which before pushing again"
                )
            if rows[0].leaf_hash.hex() != stored.acked_leaf_hash:
                raise ConfigurationError(
                    f"entry {stored.acked_seq} of the log differs from the one the collector "
                    f"acknowledged (cursor {name!r}): the log was replaced or forked; verify it "
                    "with `agentfence log verify` before pushing again"
                )
        return stored

    def _run(self, httpx: Any, follow_log: bool, poll_interval: float) -> PushReport:
        batches = entries = 0
        with httpx.Client(timeout=self._timeout) as client:
            pending = self._cursor.pending
            if pending is not None:  # the batch in flight when the last run ended: resend
                rows = list(self._backend.entries(pending[0], pending[1] + 1))
                if len(rows) != pending[1] - pending[0] + 1:
                    raise ConfigurationError(
                        f"the push cursor {str(self._cursor_file)!r} has entries {pending[0]}.."
                        f"{pending[1]} in flight, but the log ends before: it was truncated"
                    )
                self._say(f"sending again the batch in flight: entries {pending[0]}..{pending[1]}")
                if not self._send(client, rows):
                    return PushReport(batches, entries, self._cursor.acked_seq, True)
                batches, entries = 1, len(rows)
            for rows in self._batches(follow_log, poll_interval):
                self._save(replace(self._cursor, pending=(rows[0].seq, rows[-1].seq)))
                if not self._send(client, rows):
                    return PushReport(batches, entries, self._cursor.acked_seq, True)
                batches += 1
                entries += len(rows)
        return PushReport(batches, entries, self._cursor.acked_seq, self._stop.is_set())

    def _batches(self, follow_log: bool, poll_interval: float) -> Iterator[list[EntryRow]]:
        start = self._cursor.next_seq
        if follow_log:
            yield from follow(
                self._backend,
                start,
                stop=self._stop,
                poll_interval=poll_interval,
                batch=self._batch,
            )
            return
        while not self._stop.is_set():
            rows = list(self._backend.entries(start, start + self._batch))
            if not rows:
                return
            yield rows
            start = rows[-1].seq + 1

    def _save(self, cursor: PushCursor) -> None:
        self._cursor = cursor
        if self._cursor_file is not None:
            write_cursor(self._cursor_file, cursor)

    def _encode(self, rows: Sequence[EntryRow]) -> bytes:
        events = [dumps(render(row, self._cursor.form, origin=self._cursor.origin)) for row in rows]
        if self._cursor.body == "json":
            return ("[" + ",".join(events) + "]").encode("utf-8")
        return "".join(f"{event}\n" for event in events).encode("utf-8")

    def _send(self, client: httpx.Client, rows: Sequence[EntryRow]) -> bool:
        """POST one batch until a 2xx, then move the cursor; ``False`` if stopped first."""
        import httpx

        first, last = rows[0].seq, rows[-1].seq
        key = idempotency_key(self._cursor.origin, first, last, rows[-1].leaf_hash.hex())
        headers = [
            *self._headers,
            ("Content-Type", _CONTENT_TYPES[self._cursor.body]),
            ("Idempotency-Key", key),
        ]
        content = self._encode(rows)
        delay = self._backoff
        for attempt in range(self._retries + 1):
            wait = delay
            try:
                response = client.post(self._url, content=content, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= response.status_code < 300:
                    self._save(
                        replace(
                            self._cursor,
                            acked_seq=last,
                            acked_leaf_hash=rows[-1].leaf_hash.hex(),
                            pending=None,
                        )
                    )
                    self._say(f"pushed entries {first}..{last} ({len(rows)})")
                    return True
                status = response.status_code
                problem = f"HTTP {status} {response.reason_phrase}".rstrip()
                if status not in _RETRIED and status < 500:
                    raise PushError(
                        f"the collector {collector_id(self._url)} refused entries {first}..{last} "
                        f"with {problem}: {response.text[:200]!r}. Fix the collector or the "
                        "request (URL, --header); the batch stays pending and is sent again, "
                        "under the same Idempotency-Key, on the next run"
                    )
                wait = max(delay, _retry_after(response.headers.get("Retry-After")))
            if attempt == self._retries:
                raise PushError(
                    f"gave up pushing entries {first}..{last} to {collector_id(self._url)} "
                    f"after {attempt + 1} attempts ({problem}); the batch stays pending and is "
                    "sent again, under the same Idempotency-Key, on the next run"
                )
            wait = min(wait, self._max_backoff)
            self._say(f"{problem}; retrying entries {first}..{last} in {wait:g}s")
            if self._stop.wait(wait):
                return False
            delay = min(delay * 2, self._max_backoff)
        return False  # not reached: the last attempt returns or raises


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (RFC 9110 section 10.2.3): delay-seconds or a date."""
    if not value:
        return 0.0
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, moment.timestamp() - time.time())
