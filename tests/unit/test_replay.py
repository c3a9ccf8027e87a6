"""Tests for replay's batch path (agentfence.verify._replay).

Replay hands the recorded requests of one policy set to Cedar in one call and reads each
answer by the engine's rules; whatever that reading cannot confirm as recorded is decided by
the engine itself. These tests hold it to that: a flipped decision is found in a batch and in
any worker's range, the reading agrees with the engine on every kind of outcome, and a
request the batch call cannot take is decided one by one or reported, never skipped.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from agentfence import _cedar
from agentfence._cedar import stored_form
from agentfence._recording import decision_record
from agentfence._signing import Signer
from agentfence.demo import policy_dir
from agentfence.demo.tools import TOOLS
from agentfence.fence import Fence
from agentfence.log import SignedLog
from agentfence.records import Blob, DecisionRecord
from agentfence.verify import replay
from agentfence.verify._replay import _Recorded, _Replay, batch_request
from agentfence.verify._snapshot import Snapshot

# Amounts around the demo's thresholds: routine up to 100, held above, refused above 10,000
# and at zero or below.
AMOUNTS = [5.0, 40.0, 99.0, 100.0, 150.0, 2500.0, 20000.0, 0.0, -3.0, 60.0]


def record_refunds(
    path: Path, amounts: list[float], policies: Path | None = None
) -> tuple[Signer, list[DecisionRecord]]:
    """Decide one refund per amount through a real fence and record each decision."""
    signer = Signer.generate("replay")
    fence = Fence.from_directory(
        policies or policy_dir(), tools=TOOLS, log=f"sqlite:///{path}", signing_key=signer, seed=1
    )
    records = []
    for i, amount in enumerate(amounts):
        decision = fence.decide(
            "refund",
            {"customer_id": f"c-{i % 7}", "amount": amount, "reason": "test"},
            principal='User::"alice"',
            thread=f"t-{i % 3}",
            step=i,
            tool_call_id=f"call-{i}",
        )
        record, blobs = decision_record(decision, time_us=1_800_000_000_000_000 + i)
        fence.log.append(record, blobs)
        records.append(record)
    fence.close()
    return signer, records


def append(path: Path, signer: Signer, record: DecisionRecord, content: bytes) -> None:
    """Append a decision whose request blob holds ``content``, signed like the rest."""
    blob = Blob.of(content)
    with SignedLog.open(path, signer=signer, checkpoint_interval=math.inf) as signed:
        signed.append(record.model_copy(update={"request_blob": blob.ref}), [blob])


def candidate_with_routine_limit(tmp_path: Path, limit: str) -> Path:
    """The demo policies with the routine refund limit (100) and the approval line moved."""
    candidate = tmp_path / "candidate"
    shutil.copytree(policy_dir(), candidate)
    payments = candidate / "payments.cedar"
    payments.write_text(payments.read_text().replace('decimal("100.0")', f'decimal("{limit}")'))
    return candidate


def test_an_edited_policy_that_flips_one_request_of_a_batch_is_found(tmp_path: Path) -> None:
    # 60 decisions, one batch call: only the refund of 99 crosses a limit moved to 98.
    others = [a for a in AMOUNTS if not 98.0 < a <= 100.0]
    amounts = [others[i % len(others)] for i in range(60)]
    amounts[37] = 99.0
    _, records = record_refunds(tmp_path / "log.db", amounts)
    report = replay(tmp_path / "log.db", policies=candidate_with_routine_limit(tmp_path, "98.0"))
    assert report.replayed == report.decisions == 60
    (change,) = report.changes
    assert change.decision_id == records[37].decision_id and change.seq == 38
    assert (change.recorded_effect, change.replayed_effect) == ("ALLOW", "REQUIRE_APPROVAL")
    assert change.replayed_policies == ("refund-needs-finance",)
    assert change.replayed_reasons == ("refunds over EUR 100 need a finance approver",)
    assert report.unchanged == 59


def test_a_flipped_decision_is_found_in_every_workers_range(tmp_path: Path) -> None:
    # One 99.0 refund near the start and one near the end of the log: with 2 workers (8
    # ranges) they fall in different ranges, and both are found, as by one process.
    amounts = [5.0] * 80
    amounts[3] = amounts[76] = 99.0
    record_refunds(tmp_path / "log.db", amounts)
    candidate = candidate_with_routine_limit(tmp_path, "98.0")
    one = replay(tmp_path / "log.db", policies=candidate, workers=1)
    two = replay(tmp_path / "log.db", policies=candidate, workers=2)
    assert [c.seq for c in one.changes] == [c.seq for c in two.changes] == [4, 77]
    assert two.changes == one.changes and two.replayed == one.replayed == 80


def test_a_forged_decision_in_the_middle_of_a_batch_is_found(tmp_path: Path) -> None:
    """A writer that signs an allow for a refund the policies hold: the batch's answer does
    not confirm it, so the engine decides it again and the change is reported."""
    signer, records = record_refunds(tmp_path / "log.db", AMOUNTS * 3)
    held = next(r for r in records if r.effect == "REQUIRE_APPROVAL")
    forged = held.model_copy(
        update={
            "decision_id": "f" * 32,
            "effect": "ALLOW",
            "policy_ids": ["refund-small"],
            "reasons": ["refunds up to EUR 100 are routine for support staff"],
        }
    )
    request = next(r for r in records if r.decision_id == held.decision_id)
    with Snapshot(tmp_path / "log.db") as snap:
        content = snap.blobs_by_ref([request.request_blob or ""])[request.request_blob or ""]
    assert content is not None
    append(tmp_path / "log.db", signer, forged, content)
    record_more = replay(tmp_path / "log.db")
    (change,) = record_more.changes
    assert change.decision_id == "f" * 32
    assert (change.recorded_effect, change.replayed_effect) == ("ALLOW", "REQUIRE_APPROVAL")
    assert change.replayed_policies == ("refund-needs-finance",)
    assert record_more.unchanged == len(AMOUNTS) * 3


def test_the_batch_reading_agrees_with_the_engine_on_every_kind_of_outcome(
    tmp_path: Path,
) -> None:
    """Allowed, held, forbidden, default-denied and overridable-forbidden calls: wherever
    the batch's reading of Cedar's answer speaks, it says what the engine decides."""
    policies = tmp_path / "policies"
    shutil.copytree(policy_dir(), policies)
    (policies / "override.cedar").write_text(
        '@id("big-refunds-overridable")\n@overridable("finance")\n'
        '@reason("refunds from EUR 5,000 need a finance override")\n'
        'forbid (principal, action == Action::"refund", resource)\n'
        'when { context.args.amount.greaterThanOrEqual(decimal("5000.0")) };\n'
        # A plain permit beside the holding one: a held call shows the hold's reason only.
        '@id("support-large-refunds")\n'
        'permit (principal in Group::"support", action == Action::"refund", resource)\n'
        'when { context.args.amount.greaterThan(decimal("1000.0")) };\n'
    )
    fence = Fence.from_directory(
        policies,
        tools=TOOLS,
        log=f"sqlite:///{tmp_path / 'l.db'}",
        signing_key=Signer.generate("a"),
    )
    engine = fence.engine
    with Snapshot(tmp_path / "l.db") as snap:
        state = _Replay(snap, None, None)
        seen: dict[str, int] = {}
        compared: set[str] = set()
        for amount in [*AMOUNTS, 5000.0, 7000.0]:
            for principal, tool, args in [
                (
                    'User::"alice"',
                    "refund",
                    {"customer_id": "c-1", "amount": amount, "reason": "r"},
                ),
                (
                    'User::"mallory"',
                    "refund",
                    {"customer_id": "c-1", "amount": amount, "reason": "r"},
                ),
                ('User::"alice"', "delete_file", {"path": f"/srv/{amount}"}),
            ]:
                decision = fence.decide(principal=principal, tool=tool, args=args)
                request: dict[str, Any] = dict(decision.request or {})
                handles = engine.compiled
                (answer,) = _cedar.is_authorized_batch(
                    [batch_request(stored_form(request)) or {}],
                    handles.policy_set,
                    handles.entities,
                    handles.schema,
                )
                single = _cedar.is_authorized(
                    request, handles.policy_set, handles.entities, handles.schema
                )
                # Cedar reports determining policies as a set, in no fixed order.
                assert (answer.decision, sorted(answer.determining), answer.errors) == (
                    single.decision,
                    sorted(single.determining),
                    single.errors,
                )
                again = engine.decide_request(decision.facts, request)
                seen[again.effect.value] = seen.get(again.effect.value, 0) + 1
                reading = state.outcome(engine, answer.decision, answer.determining)
                if reading is None:  # left to the engine: default deny, overridable forbids
                    continue
                assert reading == (
                    again.effect.value,
                    tuple(sorted(again.policy_ids)),
                    tuple(sorted(again.reasons)),
                )
                compared.add(again.effect.value)
    fence.close()
    assert set(seen) == compared == {"ALLOW", "DENY", "REQUIRE_APPROVAL"}
    assert sum(seen.values()) == 3 * (len(AMOUNTS) + 2)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"not json at all", "request_unreadable"),
        (b'{"principal": 5, "action": 6, "resource": 7, "context": {}}', "request_unreadable"),
    ],
)
def test_a_request_the_batch_cannot_take_is_reported_not_skipped(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    signer, records = record_refunds(tmp_path / "log.db", AMOUNTS)
    append(
        tmp_path / "log.db",
        signer,
        records[0].model_copy(update={"decision_id": "e" * 32}),
        content,
    )
    report = replay(tmp_path / "log.db")
    assert report.decisions == len(AMOUNTS) + 1
    assert report.replayed == len(AMOUNTS) and report.changes == ()
    (bad,) = report.not_replayable
    assert (bad.decision_id, bad.reason) == ("e" * 32, reason)
    assert report.to_json()["not_replayable"] == {reason: 1}


def test_a_request_in_another_form_is_decided_by_the_engine(tmp_path: Path) -> None:
    """A request the batch does not take as it is (here: keys in another order and spaces,
    a forged allow) is still re-decided, by the engine, and its change found."""
    signer, records = record_refunds(tmp_path / "log.db", AMOUNTS)
    denied = next(r for r in records if r.effect == "DENY")
    with Snapshot(tmp_path / "log.db") as snap:
        content = snap.blobs_by_ref([denied.request_blob or ""])[denied.request_blob or ""]
    assert content is not None
    request = json.loads(content)
    request["correlation_id"] = "x"  # a key the batch does not take
    forged = denied.model_copy(
        update={"decision_id": "a" * 32, "effect": "ALLOW", "policy_ids": [], "reasons": []}
    )
    append(tmp_path / "log.db", signer, forged, json.dumps(request, indent=1).encode())
    assert batch_request(json.dumps(request).encode()) is None
    report = replay(tmp_path / "log.db")
    assert report.replayed == report.decisions == len(AMOUNTS) + 1
    (change,) = report.changes
    assert (change.decision_id, change.recorded_effect, change.replayed_effect) == (
        "a" * 32,
        "ALLOW",
        "DENY",
    )


def test_a_batch_cedar_refuses_is_decided_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the batch call refuses its requests, each is decided by the engine: the report is
    the one the batch would give, nothing is skipped."""
    candidate = candidate_with_routine_limit(tmp_path, "98.0")
    record_refunds(tmp_path / "log.db", AMOUNTS)
    expected = replay(tmp_path / "log.db", policies=candidate)

    def refuse(*args: object, **kwargs: object) -> list[_cedar.Evaluation]:
        raise TypeError("request[principal] must be a string or a dict")

    monkeypatch.setattr(_cedar, "is_authorized_batch", refuse)
    report = replay(tmp_path / "log.db", policies=candidate)
    assert (report.replayed, report.changes, report.not_replayable) == (
        expected.replayed,
        expected.changes,
        expected.not_replayable,
    )
    assert len(report.changes) == 2 and report.replayed == len(AMOUNTS)  # 99 and 100


def test_batch_request_hands_cedar_the_context_text_of_a_single_call() -> None:
    request = {
        "action": {"id": "refund", "type": "Action"},
        "context": {"args": {"amount": {"__extn": {"arg": "5.0", "fn": "decimal"}}}},
        "principal": {"id": "alice", "type": "User"},
        "resource": {"id": "c-1", "type": "Customer"},
    }
    taken = batch_request(stored_form(request))
    assert taken == {**request, "context": json.dumps(request["context"])}
    with_entities = {**request, "entities": [{"uid": {"type": "User", "id": "alice"}}]}
    assert batch_request(stored_form(with_entities)) is None
    assert batch_request(stored_form([request, request])) is None
    assert batch_request(b"\xff\xfe") is None


def test_the_fields_replay_reads_are_the_decision_records_own() -> None:
    """Replay reads decision entries through a narrower shape than the record's model; a
    field renamed or retyped in the record and not here would send every entry down the
    slow path, or fail it. Each field replay reads has the record's own type."""
    fields = DecisionRecord.model_fields
    for name, hint in get_type_hints(_Recorded).items():
        assert name in fields, name
        assert hint == fields[name].annotation, (name, hint, fields[name].annotation)
