"""Pushing entries to an HTTP collector (agentfence._push), against a real local server.

Every property of the cursor is named for what goes wrong without it: an entry skipped, an
entry sent twice, a cursor trusted for a log or a collector it was not written for.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from agentfence import _push
from agentfence._push import Pusher, PushError, idempotency_key, read_cursor, write_cursor
from agentfence._storage.tables import LogBackend
from agentfence.errors import ConfigurationError
from tests.siem import append, collector, new_log


def backend(url: str) -> LogBackend:
    return LogBackend(url, create=False, readonly=True)


def pusher(url: str, to: str, cursor: Path | None, **options: Any) -> Pusher:
    options.setdefault("backoff", 0.001)
    stop = options.pop("stop", threading.Event())
    return Pusher(backend(url), to, stop=stop, cursor_file=cursor, **options)


@pytest.fixture
def log(tmp_path: Path) -> tuple[str, Path]:
    return new_log(tmp_path / "fence.db", 23)


def test_every_entry_arrives_once_in_order(log: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = log
    cursor = tmp_path / "push.cursor"
    with collector() as server:
        report = pusher(
            url, server.url, cursor, batch=10, headers=[("Authorization", "Bearer t0k3n")]
        ).run()
    assert report.batches == 3 and report.entries == 23 and report.acked_seq == 22
    assert [r.seqs for r in server.requests] == [
        list(range(10)),
        list(range(10, 20)),
        [20, 21, 22],
    ]
    leaves = [row.leaf_hash.hex() for row in backend(url).entries()]
    assert [r.key for r in server.requests] == [
        f'"agentfence/fence:0-9:{leaves[9]}"',
        f'"agentfence/fence:10-19:{leaves[19]}"',
        f'"agentfence/fence:20-22:{leaves[22]}"',
    ]
    first = server.requests[0]
    assert first.content_type == "application/x-ndjson"
    assert first.headers["Authorization"] == "Bearer t0k3n"
    assert first.events[0]["record"]["decision_id"] == "d0"
    stored = read_cursor(cursor)
    assert stored is not None and stored.acked_seq == 22 and stored.pending is None
    assert stored.acked_leaf_hash == next(backend(url).entries(22, 23)).leaf_hash.hex()


def test_a_restart_sends_only_what_was_appended_since(
    log: tuple[str, Path], tmp_path: Path
) -> None:
    url, key_file = log
    cursor = tmp_path / "push.cursor"
    with collector() as server:
        pusher(url, server.url, cursor, batch=10).run()
        again = pusher(url, server.url, cursor, batch=10).run()
        assert again.batches == 0 and len(server.requests) == 3
        append(url, key_file, 23, 4)
        pusher(url, server.url, cursor, batch=10).run()
    assert server.requests[-1].seqs == [23, 24, 25, 26]
    assert server.accepted() == list(range(27))
    assert sum(len(r.seqs) for r in server.requests) == 27  # nothing sent twice


def test_json_array_body_and_ecs_form(log: tuple[str, Path]) -> None:
    url, _ = log
    with collector() as server:
        pusher(url, server.url, None, batch=50, body="json", form="ecs").run()
    (request,) = server.requests
    assert request.content_type == "application/json"
    assert isinstance(json.loads(request.body), list)
    leaves = [row.leaf_hash.hex() for row in backend(url).entries()]
    assert [e["event"]["id"] for e in request.events] == leaves
    assert [e["event"]["sequence"] for e in request.events] == list(range(23))


def test_a_collector_failing_the_first_requests_gets_every_entry_after_retries(
    log: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = log
    said: list[str] = []
    with collector(statuses=[503, 500, 429, 200, 502]) as server:
        report = pusher(url, server.url, tmp_path / "c", batch=10, say=said.append).run()
    assert report.entries == 23
    assert [r.status for r in server.requests] == [503, 500, 429, 200, 502, 200, 200]
    # Every retry is the same batch under the same key; the cursor moved only on a 2xx.
    assert len({r.key for r in server.requests[:4]}) == 1
    assert server.requests[0].key.startswith('"agentfence/fence:0-9:')
    assert server.requests[0].body == server.requests[3].body
    assert server.accepted() == list(range(23))
    assert "HTTP 503 Service Unavailable; retrying entries 0..9 in 0.001s" in said


def test_a_refused_batch_is_not_retried_and_stays_pending(
    log: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = log
    cursor = tmp_path / "push.cursor"
    with collector(statuses=[401]) as server, pytest.raises(PushError) as caught:
        pusher(url, server.url, cursor, batch=10).run()
    assert len(server.requests) == 1
    assert "refused entries 0..9 with HTTP 401 Unauthorized" in str(caught.value)
    assert "the batch stays pending" in str(caught.value)
    stored = read_cursor(cursor)
    assert stored is not None and stored.acked_seq == -1 and stored.pending == (0, 9)


def test_giving_up_keeps_the_batch_pending_and_the_next_run_sends_it_identical(
    log: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = log
    cursor = tmp_path / "push.cursor"
    with collector(statuses=[200, 503, 503, 503]) as server:
        with pytest.raises(
            PushError, match=r"gave up pushing entries 10\.\.19 .* after 3 attempts"
        ):
            pusher(url, server.url, cursor, batch=10, retries=2).run()
        pusher(url, server.url, cursor, batch=7).run()  # another --batch: the pending one first
    assert [r.seqs[0] for r in server.requests] == [0, 10, 10, 10, 10, 20]
    assert server.requests[4].key == server.requests[1].key
    assert server.requests[1].key.startswith('"agentfence/fence:10-19:')
    assert server.requests[4].body == server.requests[1].body
    assert server.accepted() == list(range(23))


def test_a_crash_between_the_2xx_and_the_cursor_write_resends_that_batch_under_the_same_key(
    log: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one case a collector sees entries twice, as docs/siem.md says: the batch in
    flight, again, byte for byte, under the same Idempotency-Key, so it can drop it."""
    url, _ = log
    cursor = tmp_path / "push.cursor"
    real_write = _push.write_cursor

    def dies_on_second_ack(path: Path, state: _push.PushCursor) -> None:
        if state.pending is None and state.acked_seq == 19:
            raise KeyboardInterrupt("the process died here")
        real_write(path, state)

    with collector() as server:
        monkeypatch.setattr(_push, "write_cursor", dies_on_second_ack)
        with pytest.raises(KeyboardInterrupt):
            pusher(url, server.url, cursor, batch=10).run()
        monkeypatch.setattr(_push, "write_cursor", real_write)
        pusher(url, server.url, cursor, batch=10).run()
    assert [r.seqs[0] for r in server.requests] == [0, 10, 10, 20]
    assert server.requests[1].status == server.requests[2].status == 200
    assert server.requests[2].key == server.requests[1].key
    assert server.requests[2].body == server.requests[1].body
    assert server.accepted() == list(range(23))  # deduplicated by key: each entry once


def test_stopping_during_backoff_keeps_the_batch_pending(
    log: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = log
    cursor = tmp_path / "push.cursor"
    stop = threading.Event()
    with collector(statuses=[503]) as server:
        report = pusher(
            url, server.url, cursor, batch=10, stop=stop, say=lambda _: stop.set()
        ).run()
    assert report.stopped and report.entries == 0 and len(server.requests) == 1
    stored = read_cursor(cursor)
    assert stored is not None and stored.pending == (0, 9)


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        ("{not json", "not JSON"),
        ('{"format": "something/v1"}', "not a agentfence.push-cursor/v1 document"),
        ("", "not JSON"),
        (
            '{"format": "agentfence.push-cursor/v1", "origin": "agentfence/fence", '
            '"collector": "x", "entry_format": "jsonl", "body": "ndjson", '
            '"acked": {"seq": -4, "leaf_hash": "00"}, "pending": null}',
            "bad or missing field -4",
        ),
        (
            '{"format": "agentfence.push-cursor/v1", "origin": "agentfence/fence", '
            '"collector": "x", "entry_format": "jsonl", "body": "ndjson", '
            '"acked": null, "pending": {"first": 5, "last": 9}}',
            "pending batch (5, 9) does not follow acked seq -1",
        ),
        ('{"format": "agentfence.push-cursor/v1", "origin": "o"}', "bad or missing field"),
    ],
)
def test_a_corrupt_cursor_is_an_error_naming_the_file_and_what_to_do(
    log: tuple[str, Path], tmp_path: Path, content: str, detail: str
) -> None:
    url, _ = log
    cursor = tmp_path / "push.cursor"
    cursor.write_text(content)
    with collector() as server:
        with pytest.raises(ConfigurationError) as caught:
            pusher(url, server.url, cursor).run()
        assert server.requests == []
    message = str(caught.value)
    assert f"the push cursor {str(cursor)!r} is corrupt" in message
    assert detail in message
    assert "restore it from a backup, or delete it to push the whole log again" in message


def remove(path: Path) -> None:
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        (path.parent / name).unlink(missing_ok=True)


def _pushed(url: str, to: str, cursor: Path) -> None:
    pusher(url, to, cursor, batch=10).run()


def test_a_cursor_written_for_another_log_is_refused(tmp_path: Path) -> None:
    """Entries of log B would be skipped up to where log A's push had got."""
    a, _ = new_log(tmp_path / "a.db", 5, name="a")
    b, _ = new_log(tmp_path / "b.db", 5, name="b")
    cursor = tmp_path / "push.cursor"
    with collector() as server:
        _pushed(a, server.url, cursor)
        with pytest.raises(ConfigurationError, match="is for the log 'agentfence/a', not"):
            _pushed(b, server.url, cursor)
        assert len(server.requests) == 1


def test_a_cursor_written_for_another_collector_is_refused(
    log: tuple[str, Path], tmp_path: Path
) -> None:
    """The second collector would never get what the first acknowledged."""
    url, _ = log
    cursor = tmp_path / "push.cursor"
    with collector() as first, collector() as second:
        _pushed(url, first.url, cursor)
        with pytest.raises(ConfigurationError, match="give each collector a cursor file"):
            _pushed(url, second.url, cursor)
        assert second.requests == []


def test_a_replaced_log_under_the_same_name_is_refused(tmp_path: Path) -> None:
    """A log rebuilt at the same path has the same origin but other entries: resuming at
    the cursor would skip its first entries."""
    path = tmp_path / "fence.db"
    url, _ = new_log(path, 12)
    cursor = tmp_path / "push.cursor"
    with collector() as server:
        _pushed(url, server.url, cursor)
        remove(path)
        new_log(path, 15, name="other", status="error")
        with pytest.raises(ConfigurationError, match="entry 11 of the log differs"):
            _pushed(url, server.url, cursor)
        assert len(server.requests) == 2


def test_a_cursor_ahead_of_a_truncated_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fence.db"
    url, _ = new_log(path, 12)
    cursor = tmp_path / "push.cursor"
    with collector() as server:
        _pushed(url, server.url, cursor)
        remove(path)
        new_log(path, 4, name="other")
        with pytest.raises(ConfigurationError, match="the log has fewer: the log was truncated"):
            _pushed(url, server.url, cursor)


def test_two_pushes_cannot_share_a_cursor(log: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = log
    cursor = tmp_path / "push.cursor"
    with collector(hold_at=0) as server:
        first = threading.Thread(target=_pushed, args=(url, server.url, cursor), daemon=True)
        first.start()
        assert server.held.wait(30)
        with pytest.raises(ConfigurationError, match="another `agentfence log push` is using"):
            _pushed(url, server.url, cursor)
        assert len(server.requests) == 1
        server.release.set()  # the first push gets no answer, retries, and finishes
        first.join(60)
    assert server.accepted() == list(range(23))


def test_a_failed_cursor_write_leaves_the_old_cursor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cursor = tmp_path / "push.cursor"
    old = _push.PushCursor("agentfence/fence", "http://h/i", "jsonl", "ndjson", 3, "ab")
    write_cursor(cursor, old)

    def no_rename(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_push.os, "replace", no_rename)
    with pytest.raises(OSError, match="disk full"):
        write_cursor(cursor, _push.PushCursor("agentfence/fence", "http://h/i", "jsonl", "ndjson"))
    assert read_cursor(cursor) == old


def test_bad_options_are_refused(log: tuple[str, Path]) -> None:
    url, _ = log
    with pytest.raises(ConfigurationError, match="give the collector's http:// or https:// URL"):
        pusher(url, "ftp://example.com/x", None)
    with pytest.raises(ConfigurationError, match="a batch holds at least one entry"):
        pusher(url, "http://127.0.0.1:9/x", None, batch=0)


def test_a_second_log_with_the_same_origin_is_not_dropped_as_a_duplicate(tmp_path: Path) -> None:
    """Every host's fence.db is agentfence/fence unless given an origin: a collector
    deduplicating by key or event id must still keep both logs' entries."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, _ = new_log(tmp_path / "a" / "fence.db", 3)
    b, _ = new_log(tmp_path / "b" / "fence.db", 3, status="error")
    with collector() as server:
        pusher(a, server.url, None, form="ecs").run()
        pusher(b, server.url, None, form="ecs").run()
    first, second = server.requests
    assert first.key != second.key
    assert first.key.startswith('"agentfence/fence:0-2:')
    assert second.key.startswith('"agentfence/fence:0-2:')
    ids = [e["event"]["id"] for r in server.requests for e in r.events]
    assert len(set(ids)) == 6
    assert server.accepted() == [0, 1, 2, 0, 1, 2]


def test_the_idempotency_key_is_a_structured_field_string() -> None:
    assert idempotency_key("example.com/log", 5, 9, "ab12") == '"example.com/log:5-9:ab12"'
    assert idempotency_key('a "quoted" log', 0, 0, "00") == '"a%20%22quoted%22%20log:0-0:00"'
    assert _push.collector_id("https://user:pw@siem.example:8443/in?token=x#f") == (
        "https://siem.example:8443/in"
    )
