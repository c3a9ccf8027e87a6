"""The browsable copy of a log and its views (``_storage/views.py``).

The views read the signed bodies only; they live in a copy, never in the log; the copy
verifies as the log does; and neither an unsigned index column nor a view stored in the
log's file changes what an auditor reads.
"""

from __future__ import annotations

import datetime
import json
import math
import sqlite3
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from agentfence._policy_files import policy_hash
from agentfence._signing import Signer
from agentfence._storage.views import VIEWS, browsable_copy, create_views
from agentfence.errors import LogError
from agentfence.log import SignedLog
from agentfence.records import (
    ActivationRecord,
    ApprovalAnswerRecord,
    ApprovalRequestRecord,
    Blob,
    DecisionRecord,
    OutcomeRecord,
)
from agentfence.verify import LogVerificationError, verify_log

T0 = 1_796_504_095_716_828  # 2026-12-05T20:54:55.716828Z
SCHEMA = "entity User;"
POLICY_HASH = policy_hash({}, SCHEMA)


def decision(n: int, tool: str, effect: str, request: Blob | None = None) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"d{n}",
        seed=7,
        thread="ticket-1",
        step=n,
        tool_call_id=f"call-{n}",
        tool=tool,
        principal='User::"alice"',
        agent="support-bot",
        action=f'Action::"{tool}"',
        resource='Customer::"c-1"',
        request_blob=request.ref if request else None,
        effect=effect,  # type: ignore[arg-type]
        policy_ids=[f"{tool}-policy"],
        reasons=[f"{tool} is {effect.lower()}"],
        errors=[],
        approvers=["finance"] if effect == "REQUIRE_APPROVAL" else [],
        policy_hash=POLICY_HASH,
        engine="cedarpy/4.12.2",
        time_us=T0 + n,
    )


class Built:
    def __init__(self, path: Path, signer: Signer, blobs: dict[str, Blob]) -> None:
        self.path, self.signer, self.blobs = path, signer, blobs


def write_log(where: str | Path, signer: Signer) -> dict[str, Blob]:
    """A signed log: a policy activation, an allowed lookup and its outcome, a denied wipe,
    a held refund with its request and an approver's rejection."""
    request = Blob.of(b'{"action":{"id":"lookup","type":"Action"}}')
    result = Blob.of(b'"Dana, gold tier"')
    args = Blob.of(b'{"amount":2500}')
    schema = Blob.of(SCHEMA.encode())
    with SignedLog.open(where, signer=signer, checkpoint_interval=math.inf) as log:
        log.append(
            ActivationRecord(
                policy_hash=POLICY_HASH,
                files={},
                file_blobs={},
                schema_blob=schema.ref,
                generated_schema_blob=schema.ref,
                engine="cedarpy/4.12.2",
                time_us=T0,
            ),
            [schema],
        )
        log.append(decision(1, "lookup", "ALLOW", request), [request])
        log.append(
            OutcomeRecord(
                decision_id="d1",
                status="success",
                result_digest="0" * 64,
                result_blob=result.ref,
                time_us=T0 + 10,
            ),
            [result],
        )
        log.append(decision(2, "wipe", "DENY"))
        log.append(decision(3, "refund", "REQUIRE_APPROVAL"))
        log.append(
            ApprovalRequestRecord(
                request_id="r3",
                decision_id="d3",
                action_digest="1" * 64,
                tool="refund",
                tool_call_id="call-3",
                args_blob=args.ref,
                principal='User::"alice"',
                agent="support-bot",
                thread="ticket-1",
                policy_hash=POLICY_HASH,
                policy_ids=["refund-policy"],
                reasons=["refunds over EUR 100 need finance"],
                risk="high",
                approvers=["finance"],
                created_us=T0 + 20,
                expires_us=T0 + 20 + 900_000_000,
                time_us=T0 + 20,
            ),
            [args],
        )
        log.append(
            ApprovalAnswerRecord(
                request_id="r3",
                decision_id="d3",
                approver='User::"fran"',
                answer="reject",
                verdict="accepted",
                reason='rejected by User::"fran"',
                answer_blob=None,
                args_diff_blob=None,
                time_us=T0 + 30,
            )
        )
    return {"request": request, "result": result, "args": args}


@pytest.fixture
def built(tmp_path: Path) -> Built:
    signer = Signer.generate("test-log")
    path = tmp_path / "fence.db"
    return Built(path, signer, write_log(path, signer))


def rows(db: Path, view: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {view} ORDER BY seq")]
    finally:
        conn.close()


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Path:
    target = tmp_path / "browse" / "log.db"
    target.parent.mkdir()
    browsable_copy(built.path, target)
    return target


def test_decisions_show_the_body_as_columns_json_text_and_iso_times(copy: Path) -> None:
    decisions = rows(copy, "decisions")
    assert [(d["tool"], d["effect"]) for d in decisions] == [
        ("lookup", "ALLOW"),
        ("wipe", "DENY"),
        ("refund", "REQUIRE_APPROVAL"),
    ]
    first = decisions[0]
    assert first["time"] == "2026-12-05T20:54:55.716829Z"
    expected = datetime.datetime.fromtimestamp((T0 + 1) / 1e6, datetime.UTC)
    assert datetime.datetime.fromisoformat(first["time"]) == expected
    assert first["principal"] == 'User::"alice"' and first["thread"] == "ticket-1"
    assert json.loads(first["policies"]) == ["lookup-policy"]
    assert json.loads(first["reasons"]) == ["lookup is allow"]
    assert first["request"] == '{"action":{"id":"lookup","type":"Action"}}'
    assert isinstance(first["json"], str)
    assert json.loads(first["json"])["decision_id"] == "d1"


def test_outcomes_name_the_tool_and_thread_of_their_decision(copy: Path) -> None:
    [outcome] = rows(copy, "outcomes")
    assert outcome["tool"] == "lookup" and outcome["thread"] == "ticket-1"
    assert outcome["status"] == "success" and outcome["decision_id"] == "d1"
    assert outcome["result"] == '"Dana, gold tier"'
    assert outcome["time"] == "2026-12-05T20:54:55.716838Z"
    decision_seq = rows(copy, "decisions")[0]["seq"]
    assert outcome["decision_seq"] == decision_seq


def test_approvals_show_the_request_with_the_approvers_answer_and_the_verdict(copy: Path) -> None:
    [approval] = rows(copy, "approvals")
    assert approval["tool"] == "refund" and approval["principal"] == 'User::"alice"'
    assert approval["answer"] == "reject" and approval["verdict"] == "accepted"
    assert approval["approver"] == 'User::"fran"'
    assert approval["args"] == '{"amount":2500}'
    assert approval["expires"] == "2026-12-05T21:09:55.716848Z"
    assert approval["answered"] == "2026-12-05T20:54:55.716858Z"


def test_entries_json_and_blob_texts_cover_every_entry_and_blob(copy: Path) -> None:
    formats = [e["format"] for e in rows(copy, "entries_json")]
    assert formats == [
        "agentfence.activation/v1",
        "agentfence.decision/v1",
        "agentfence.outcome/v1",
        "agentfence.decision/v1",
        "agentfence.decision/v1",
        "agentfence.approval_request/v1",
        "agentfence.approval_answer/v1",
    ]
    conn = sqlite3.connect(f"file:{copy}?immutable=1", uri=True)
    texts = dict(conn.execute("SELECT ref, text FROM blob_texts").fetchall())
    conn.close()
    assert sorted(texts.values()) == [
        '"Dana, gold tier"',
        "entity User;",
        '{"action":{"id":"lookup","type":"Action"}}',
        '{"amount":2500}',
    ]


def test_an_erased_blob_shows_no_content(built: Built, tmp_path: Path) -> None:
    with SignedLog.open(built.path, signer=built.signer, checkpoint_interval=math.inf) as log:
        log.erase_blob(built.blobs["result"].ref, reason="retention")
    target = tmp_path / "log.db"
    browsable_copy(built.path, target)
    [outcome] = rows(target, "outcomes")
    assert outcome["result"] is None and outcome["tool"] == "lookup"
    erased = [r for r in rows_of(target, "blob_texts") if r["ref"] == built.blobs["result"].ref]
    assert erased == [{"ref": built.blobs["result"].ref, "text": None, "erased": 1}]


def rows_of(db: Path, view: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {view}")]
    finally:
        conn.close()


def test_the_copy_with_views_verifies_as_the_log_does(built: Built, copy: Path) -> None:
    original = verify_log(built.path, [built.signer.verifier_key])
    browsed = verify_log(copy, [built.signer.verifier_key])
    assert (browsed.entries, browsed.size, browsed.root) == (
        original.entries,
        original.size,
        original.root,
    )
    conn = sqlite3.connect(f"file:{copy}?immutable=1", uri=True)
    views = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")}
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert views == set(VIEWS)
    assert journal == "delete"  # one self-contained file: an immutable reader sees it whole


def test_a_log_still_verifies_with_the_views_created_in_it(built: Built) -> None:
    """Views are not entries: the verifier reads the tables only, so views in the log's own
    file (someone ran create_views on it) neither break nor satisfy verification."""
    before = verify_log(built.path, [built.signer.verifier_key])
    conn = sqlite3.connect(built.path, isolation_level=None)
    create_views(conn)
    conn.close()
    after = verify_log(built.path, [built.signer.verifier_key])
    assert (after.entries, after.root) == (before.entries, before.root)


def test_browsing_never_writes_the_log_and_works_on_a_read_only_file(
    built: Built, tmp_path: Path
) -> None:
    before = built.path.read_bytes()
    built.path.chmod(0o444)
    try:
        target = tmp_path / "log.db"
        browsable_copy(built.path, target)
    finally:
        built.path.chmod(0o644)
    assert built.path.read_bytes() == before
    conn = sqlite3.connect(built.path)
    views = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'view'").fetchone()
    conn.close()
    assert views == (0,)
    assert [d["tool"] for d in rows(target, "decisions")] == ["lookup", "wipe", "refund"]


def test_view_planted_in_the_log_file_hiding_denials_is_not_what_is_browsed(
    built: Built, tmp_path: Path
) -> None:
    """Someone with write access to the log's file stores a `decisions` view that hides the
    denials; the log still verifies (views are not signed). The copy holds this package's
    views, so the denial is shown."""
    conn = sqlite3.connect(built.path, isolation_level=None)
    conn.execute(
        "CREATE VIEW decisions AS SELECT seq, tool, effect FROM entries "
        "WHERE effect IS NOT NULL AND effect != 'DENY'"
    )
    conn.close()
    verify_log(built.path, [built.signer.verifier_key])  # still verifies: views are not entries
    target = tmp_path / "log.db"
    browsable_copy(built.path, target)
    assert [(d["tool"], d["effect"]) for d in rows(target, "decisions")] == [
        ("lookup", "ALLOW"),
        ("wipe", "DENY"),
        ("refund", "REQUIRE_APPROVAL"),
    ]


def test_tampered_index_columns_do_not_change_what_the_views_show(
    built: Built, tmp_path: Path
) -> None:
    """The thread/tool/effect/kind columns beside an entry are not signed: an attacker
    rewrites them to pass a denied wipe off as an allowed lookup. The views read the signed
    body, so the copy still shows the denied wipe (and verification names the tampering)."""
    conn = sqlite3.connect(built.path, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute(
        "UPDATE entries SET tool = 'lookup', effect = 'ALLOW', kind = 'agentfence.outcome/v1' "
        "WHERE effect = 'DENY'"
    )
    conn.close()
    with pytest.raises(LogVerificationError):
        verify_log(built.path, [built.signer.verifier_key])
    target = tmp_path / "log.db"
    browsable_copy(built.path, target)
    assert ("wipe", "DENY") in [(d["tool"], d["effect"]) for d in rows(target, "decisions")]


def test_browsable_copy_refuses_an_existing_target(built: Built, tmp_path: Path) -> None:
    target = tmp_path / "log.db"
    target.write_bytes(b"")
    with pytest.raises(LogError, match="already exists; name a new file for the browsable copy"):
        browsable_copy(built.path, target)
    assert target.read_bytes() == b""


def test_browsable_copy_of_a_missing_log_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no decision log at"):
        browsable_copy(tmp_path / "nope.db", tmp_path / "log.db")
    assert not (tmp_path / "log.db").exists()


def test_the_shipped_datasette_metadata_describes_every_view_and_column(copy: Path) -> None:
    text = resources.files("agentfence").joinpath("datasette-metadata.json").read_text("utf-8")
    tables = json.loads(text)["databases"]["log"]["tables"]
    conn = sqlite3.connect(f"file:{copy}?immutable=1", uri=True)
    try:
        for view in VIEWS:
            columns = [d[0] for d in conn.execute(f"SELECT * FROM {view}").description]
            assert sorted(tables[view]["columns"]) == sorted(columns), view
            assert tables[view]["description"]
        stored = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert stored <= set(tables)  # every table of the copy is described too


def test_a_log_in_either_store_is_browsed_from_a_sqlite_copy(
    store_url: str, tmp_path: Path
) -> None:
    """A PostgreSQL log is copied into SQLite (one snapshot) like a SQLite one."""
    signer = Signer.generate("test-log")
    write_log(store_url, signer)
    target = tmp_path / "browse.db"
    assert browsable_copy(store_url, target) == 7
    verify_log(target, [signer.verifier_key])
    assert [(d["tool"], d["effect"]) for d in rows(target, "decisions")] == [
        ("lookup", "ALLOW"),
        ("wipe", "DENY"),
        ("refund", "REQUIRE_APPROVAL"),
    ]
    assert [o["tool"] for o in rows(target, "outcomes")] == ["lookup"]
    assert [a["verdict"] for a in rows(target, "approvals")] == ["accepted"]


def test_an_entry_body_that_is_not_json_is_named_and_nothing_is_browsed(
    built: Built, tmp_path: Path
) -> None:
    """One damaged body would make every view fail to read: the copy is refused, naming the
    entry, and the verifier is the next step."""
    conn = sqlite3.connect(built.path, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("UPDATE entries SET body = X'00ff' WHERE seq = 2")
    conn.close()
    target = tmp_path / "log.db"
    with pytest.raises(LogError, match=r"entry 2 of .* is not JSON.*agentfence log verify"):
        browsable_copy(built.path, target)
    assert not target.exists()
