"""`agentfence log export --follow` and `agentfence log push`, run as an operator runs them:
subprocesses on real logs, a writer appending while they run, kills and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentfence._push import read_cursor
from tests.siem import collector, new_log

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 120.0  # only ever reached when a test fails: nothing here waits for a time


def agentfence(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentfence.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    process = agentfence(*args)
    stdout, stderr = process.communicate(timeout=DEADLINE)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def writer(url: str, key_file: Path, start: int, count: int) -> subprocess.Popen[bytes]:
    """A second process appending ``count`` entries, one commit each."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.siem", "append", url, str(key_file), str(start), str(count)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def test_log_export_follow_writes_every_entry_a_writer_appends_exactly_once(
    store_url: str, tmp_path: Path
) -> None:
    url, key_file = new_log(store_url, 5, key_dir=tmp_path)
    follower = agentfence("log", "export", url, "--follow", "--poll-interval", "0.02")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout or ()), daemon=True)
    reader.start()
    until(lambda: len(lines) >= 5, "the entries already in the log")
    appending = writer(url, key_file, 5, 150)
    assert appending.wait(DEADLINE) == 0
    until(lambda: len(lines) >= 155, "the appended entries")
    follower.send_signal(signal.SIGTERM)
    assert follower.wait(DEADLINE) == 0, follower.stderr.read() if follower.stderr else ""
    reader.join(DEADLINE)
    entries = [json.loads(line) for line in lines]
    assert [entry["seq"] for entry in entries] == list(range(155))
    assert [entry["record"]["decision_id"] for entry in entries] == [f"d{n}" for n in range(155)]


def test_log_export_follow_applies_filters_and_the_ecs_form(tmp_path: Path) -> None:
    url, key_file = new_log(tmp_path / "fence.db", 4)
    out = tmp_path / "siem.jsonl"
    follower = agentfence(
        "log", "export", url, "--follow", "--poll-interval", "0.02", "--format", "ecs",
        "--kind", "outcome", "--since", "2026-11-18T11:06:40.000002Z", "--out", out,
    )  # fmt: skip
    assert writer(url, key_file, 4, 3).wait(DEADLINE) == 0
    until(lambda: out.exists() and len(out.read_text().splitlines()) >= 5, "the followed file")
    follower.send_signal(signal.SIGINT)
    assert follower.wait(DEADLINE) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["event"]["sequence"] for e in events] == [2, 3, 4, 5, 6]
    assert {e["event"]["dataset"] for e in events} == {"agentfence.outcome"}
    assert "exported 5 entries to" in (follower.stderr.read() if follower.stderr else "")


def test_log_push_killed_mid_way_and_restarted_neither_skips_nor_repeats(tmp_path: Path) -> None:
    url, _ = new_log(tmp_path / "fence.db", 23)
    cursor = tmp_path / "push.cursor"
    command = ("log", "push", url, "--batch", "5", "--cursor", cursor, "--backoff", "0.01")
    with collector(hold_at=2) as server:
        first = agentfence(*command, "--to", server.url)
        assert server.held.wait(DEADLINE), "the third batch never arrived"
        first.kill()  # SIGKILL while the collector has not answered entries 10..14
        first.wait(DEADLINE)
        stored = read_cursor(cursor)
        assert stored is not None and stored.acked_seq == 9 and stored.pending == (10, 14)
        second = run(*command, "--to", server.url, "--json")
        assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == {
        "batches": 3,
        "entries": 13,
        "acked_seq": 22,
        "stopped": False,
    }
    held, resent = server.requests[2], server.requests[3]
    assert held.status is None and resent.key == held.key
    assert held.key is not None and held.key.startswith('"agentfence/fence:10-14:')
    assert resent.body == held.body
    assert "sending again the batch in flight: entries 10..14" in second.stderr
    # What the collector acknowledged: every entry once, in order, with no deduplication.
    assert [seq for r in server.answered() for seq in r.seqs] == list(range(23))


def test_log_push_follow_pushes_what_a_writer_appends_and_stops_cleanly_on_sigterm(
    store_url: str, tmp_path: Path
) -> None:
    url, key_file = new_log(store_url, 3, key_dir=tmp_path)
    cursor = tmp_path / "push.cursor"
    with collector() as server:
        pushing = agentfence(
            "log", "push", url, "--to", server.url, "--cursor", cursor, "--follow",
            "--poll-interval", "0.02", "--batch", "20",
        )  # fmt: skip
        assert writer(url, key_file, 3, 60).wait(DEADLINE) == 0
        until(lambda: _acked(cursor) == 62, "the last entry's acknowledgement")
        pushing.send_signal(signal.SIGTERM)
        assert pushing.wait(DEADLINE) == 0
        stderr = pushing.stderr.read() if pushing.stderr else ""
    assert "stopped: pushed 63 entries" in stderr
    assert "the collector has every entry up to seq 62" in stderr
    assert [seq for r in server.answered() for seq in r.seqs] == list(range(63))


def _acked(cursor: Path) -> int:
    stored = read_cursor(cursor)
    return -1 if stored is None else stored.acked_seq


def test_log_push_with_a_corrupt_cursor_exits_2_naming_the_file(tmp_path: Path) -> None:
    url, _ = new_log(tmp_path / "fence.db", 2)
    cursor = tmp_path / "push.cursor"
    cursor.write_text('{"format": "agentfence.push-cursor/v1", "acked": 7')
    with collector() as server:
        result = run("log", "push", url, "--to", server.url, "--cursor", cursor)
        assert server.requests == []
    assert result.returncode == 2
    assert f"the push cursor '{cursor}' is corrupt (not JSON" in result.stderr
    assert "delete it to push the whole log again" in result.stderr


def test_log_push_without_a_cursor_says_a_restart_sends_everything(tmp_path: Path) -> None:
    url, _ = new_log(tmp_path / "fence.db", 2)
    with collector() as server:
        result = run("log", "push", url, "--to", server.url, "--header", "X-Token: abc")
    assert result.returncode == 0, result.stderr
    assert "no --cursor: nothing records what the collector acknowledged" in result.stderr
    assert server.requests[0].headers["X-Token"] == "abc"
    bad = run("log", "push", url, "--to", server.url, "--header", "no colon here")
    assert bad.returncode == 2 and "write it as 'Name: value'" in bad.stderr
