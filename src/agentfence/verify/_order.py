"""The order rules between entries, and the blob refs each record holds.

Step 7 of :func:`~agentfence.verify.verify_log` and step 5 of
:func:`~agentfence.verify.verify_evidence` feed :class:`OrderCheck` the entries one at a time.
"""

from __future__ import annotations

from agentfence.records import (
    ActivationRecord,
    ApprovalAnswerRecord,
    ApprovalRequestRecord,
    DecisionRecord,
    LogRecord,
    OutcomeRecord,
    blob_refs,
)

_RAN = "RAN"  # the state of a decision once its outcome is on record
_APPROVED = "APPROVED"  # the state of a held decision once an approver's answer is accepted


class OrderCheck:
    """The order rules of step 7, fed the entries one at a time; keeps the first problem.

    A decision's policy set was activated by an earlier entry; a decision is recorded
    once; an approval request follows a decision held for approval and an answer follows
    its request; an outcome follows a decision that was allowed, or held and then approved
    by an accepted answer, and there is one outcome per decision. It also collects the
    blob refs of every entry (ref -> the first entry that references it) for step 6.
    """

    def __init__(self) -> None:
        self.refs: dict[str, int] = {}
        self.activated: dict[str, int] = {}
        self.states: dict[str, str] = {}  # decision id -> its effect, then _APPROVED, _RAN
        self.held: set[str] = set()
        self.requests: dict[str, str] = {}  # approval request id -> decision id
        self.decisions = 0
        self.outcomes = 0
        self.problem: str | None = None

    def decision(self, seq: int, record: DecisionRecord) -> None:
        self.decided(
            seq, record.decision_id, record.effect, record.policy_hash, record.request_blob
        )

    def decided(
        self,
        seq: int,
        decision_id: str,
        effect: str,
        policy_hash: str,
        request_blob: str | None,
    ) -> None:
        """:meth:`decision` from the fields it reads (what a worker process hands back)."""
        self.decisions += 1
        if request_blob is not None:
            self.refs.setdefault(request_blob, seq)
        if self.problem is None:
            if policy_hash not in self.activated:
                self.problem = (
                    f"decision entry {seq} was made with policy set {policy_hash[:16]}…, "
                    "which no earlier activation entry activated"
                )
            elif decision_id in self.states:
                self.problem = (
                    f"decision {decision_id} is recorded twice (again at entry {seq}); "
                    "a call is decided and recorded once"
                )
        self.states[decision_id] = effect
        if effect == "REQUIRE_APPROVAL":
            self.held.add(decision_id)

    def outcome(self, seq: int, record: OutcomeRecord) -> None:
        self.ran(seq, record.decision_id, record.result_blob)

    def ran(self, seq: int, decision_id: str, result_blob: str | None) -> None:
        """:meth:`outcome` from the fields it reads (what a worker process hands back)."""
        self.outcomes += 1
        if result_blob is not None:
            self.refs.setdefault(result_blob, seq)
        state = self.states.get(decision_id)
        if state == "ALLOW" or state == _APPROVED:
            self.states[decision_id] = _RAN
        elif self.problem is None:
            self.problem = _outcome_problem(seq, decision_id, state)

    def without_outcome(self) -> int:
        """Decisions that let a tool run (allowed, or approved) with no outcome after them:
        the tool was let run and its result is not on record (it crashed, was cut off, or
        its outcome was lost in the last flush window before a crash)."""
        return sum(1 for state in self.states.values() if state in ("ALLOW", _APPROVED))

    def see(self, seq: int, record: LogRecord) -> None:
        if isinstance(record, DecisionRecord):
            self.decision(seq, record)
            return
        if isinstance(record, OutcomeRecord):
            self.outcome(seq, record)
            return
        for ref in blob_refs(record):
            self.refs.setdefault(ref, seq)
        problem: str | None = None
        if isinstance(record, ApprovalRequestRecord):
            if record.decision_id not in self.held:
                problem = (
                    f"the approval request at entry {seq} is for decision {record.decision_id}, "
                    "which no earlier entry holds for approval"
                )
            self.requests[record.request_id] = record.decision_id
        elif isinstance(record, ApprovalAnswerRecord):
            if self.requests.get(record.request_id) != record.decision_id:
                problem = (
                    f"the approval answer at entry {seq} answers request {record.request_id}, "
                    f"which no earlier entry makes for decision {record.decision_id}"
                )
            elif (
                record.verdict == "accepted"
                and record.answer in ("approve", "edit")
                and self.states.get(record.decision_id) == "REQUIRE_APPROVAL"
            ):
                self.states[record.decision_id] = _APPROVED
        elif isinstance(record, ActivationRecord):
            self.activated.setdefault(record.policy_hash, seq)
        if problem is not None and self.problem is None:
            self.problem = problem


def _outcome_problem(seq: int, decision_id: str, state: str | None) -> str:
    if state is None:
        return (
            f"the outcome at entry {seq} belongs to decision {decision_id}, which no earlier "
            "entry records: a tool ran before (or without) its decision being on record"
        )
    if state == _RAN:
        return f"decision {decision_id} has a second outcome at entry {seq}"
    return (
        f"the outcome at entry {seq} belongs to decision {decision_id}, which was {state} and "
        "not approved by an accepted answer: a tool ran although it was not allowed"
    )
