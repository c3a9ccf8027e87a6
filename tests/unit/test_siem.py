"""Entries as a SIEM receives them (agentfence._siem): the ECS mapping of docs/siem.md, the
JSON Lines form, and following a log as it grows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agentfence._siem import (
    ECS_VERSION,
    SignalStop,
    ecs_event,
    entry_json,
    follow,
    iso_time,
    render,
)
from agentfence._storage.tables import EntryRow, LogBackend
from tests.siem import append, new_log
from tests.unit.test_verify import BuiltLog, build_log


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("siem"))


@pytest.fixture(scope="module")
def rows(base: BuiltLog) -> list[EntryRow]:
    return list(LogBackend(base.path, create=False, readonly=True).entries())


def by_effect(rows: list[EntryRow], effect: str) -> EntryRow:
    """A decision of ``effect``; a held one is an allowed one with its effect changed (the
    base log holds no call, and the mapping reads only the entry)."""
    found = next((row for row in rows if row.effect == effect), None)
    if found is not None:
        return found
    allowed = by_effect(rows, "ALLOW")
    body = json.loads(allowed.body)
    body["record"]["effect"] = effect
    return replace(allowed, body=json.dumps(body).encode(), effect=effect)


ORIGIN = "agentfence/fence"


@pytest.mark.parametrize(
    ("effect", "ecs_type", "outcome"),
    [
        ("ALLOW", "allowed", "success"),
        ("DENY", "denied", "failure"),
        ("REQUIRE_APPROVAL", "info", "unknown"),
    ],
)
def test_a_decision_maps_to_the_ecs_fields_the_siem_doc_lists(
    rows: list[EntryRow], effect: str, ecs_type: str, outcome: str
) -> None:
    row = by_effect(rows, effect)
    doc = ecs_event(row, ORIGIN)
    record: dict[str, Any] = entry_json(row)["record"]
    assert doc["@timestamp"] == iso_time(row.time_us)
    assert doc["ecs"] == {"version": ECS_VERSION}
    assert doc["event"] == {
        "kind": "event",
        "category": ["api"],
        "type": [ecs_type],
        "outcome": outcome,
        "action": "decision",
        "module": "agentfence",
        "dataset": "agentfence.decision",
        "provider": ORIGIN,
        "id": row.leaf_hash.hex(),
        "sequence": row.seq,
        "hash": row.leaf_hash.hex(),
        **({"reason": "; ".join(record["reasons"])} if record["reasons"] else {}),
    }
    assert doc["rule"] == {"id": record["policy_ids"], "ruleset": record["policy_hash"]}
    assert doc["user"] == {"id": record["principal"]}
    assert doc["agentfence"] == {
        "log": {"origin": ORIGIN, "seq": row.seq, "leaf_hash": row.leaf_hash.hex()},
        "kind": "agentfence.decision/v1",
        "record": record,
    }
    assert "agent" not in doc  # ECS agent.* is the shipper, never the AI agent


def test_a_decision_refused_before_cedar_has_no_user_and_says_why(rows: list[EntryRow]) -> None:
    row = next(r for r in rows if r.thread == "anonymous" and r.effect == "DENY")
    doc = ecs_event(row, ORIGIN)
    assert "user" not in doc and "error" not in doc and "rule" not in doc
    assert doc["event"]["type"] == ["denied"]
    assert doc["event"]["reason"].startswith("no principal: the run did not say who")


def test_evaluation_errors_map_to_error_message(rows: list[EntryRow]) -> None:
    denied = by_effect(rows, "DENY")
    body = json.loads(denied.body)
    body["record"]["errors"] = ["policy p1: attribute missing", "policy p2: overflow"]
    doc = ecs_event(replace(denied, body=json.dumps(body).encode()), ORIGIN)
    assert doc["error"] == {"message": "policy p1: attribute missing; policy p2: overflow"}


def test_an_outcome_maps_to_an_api_end_event(rows: list[EntryRow]) -> None:
    row = next(r for r in rows if r.kind == "agentfence.outcome/v1")
    doc = ecs_event(row, ORIGIN)
    assert doc["event"]["category"] == ["api"] and doc["event"]["type"] == ["end"]
    assert doc["event"]["outcome"] == "success"
    assert doc["event"]["action"] == "outcome"


def test_every_entry_has_the_core_fields_and_keeps_its_record_whole(
    rows: list[EntryRow],
) -> None:
    kinds = set()
    for row in rows:
        doc = render(row, "ecs", origin=ORIGIN)
        kinds.add(doc["event"]["dataset"])
        assert doc["event"]["sequence"] == row.seq and doc["event"]["kind"] == "event"
        assert doc["agentfence"]["record"] == entry_json(row)["record"]
        assert render(row, "jsonl", origin=ORIGIN) == entry_json(row)
    assert {"agentfence.activation", "agentfence.decision", "agentfence.outcome"} <= kinds


def test_follow_yields_every_appended_entry_once_in_order(tmp_path: Path) -> None:
    url, key_file = new_log(tmp_path / "fence.db", 3)
    backend = LogBackend(url, create=False, readonly=True)
    stop = threading.Event()
    seen: list[int] = []
    batches = follow(backend, 1, stop=stop, poll_interval=0.01, batch=2)
    for batch in batches:
        seen.extend(row.seq for row in batch)
        if seen[-1] == 2:
            append(url, key_file, 3, 3)
        if seen[-1] == 5:
            stop.set()
    assert seen == [1, 2, 3, 4, 5]


def test_a_ctrl_c_landing_while_the_stop_flag_is_busy_stops_instead_of_hanging() -> None:
    """A signal handler runs in the main thread between two bytecodes, also in the middle of
    the stop flag's own wait. A flag whose ``set`` takes a lock that ``wait`` holds there (a
    ``threading.Event``'s condition) makes Ctrl-C wait for its own thread: ``log export
    --follow`` then never ends. Here the handler runs with whatever lock the flag has held."""
    script = textwrap.dedent(
        """
        import contextlib, signal
        from agentfence._siem import stop_on_signals

        with stop_on_signals() as stop:
            busy = getattr(stop, "_cond", None) or contextlib.nullcontext()
            with busy:  # the flag's wait is under way
                signal.raise_signal(signal.SIGINT)  # the handler runs here
            assert stop.is_set() and stop.wait(0)
        print("stopped")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"


def test_the_stop_flag_wakes_a_wait_at_once_and_stays_set() -> None:
    stop = SignalStop()
    try:
        assert not stop.is_set()
        assert stop.wait(0) is False
        stop.set()
        stop.set()  # twice is fine
        assert stop.wait(None) is True  # no timeout: returns because it is set
        assert stop.is_set()
    finally:
        stop.close()
