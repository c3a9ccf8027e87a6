"""The order rules between entries, and the blob refs each record holds.

Step 7 of :func:`~agentfence.verify.verify_log` and step 5 of
:func:`~agentfence.verify.verify_evidence` feed :class:`OrderCheck` the entries one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
_HELD = "REQUIRE_APPROVAL"


@dataclass(slots=True)
class Block:
    """The order facts of a run of decision and outcome entries, folded where they were read.

    A worker process folds each run of decisions and outcomes between entries of the other
    kinds into one block, so the parent merges dictionaries instead of replaying every entry:
    ``decided`` maps each decision id to its state at the end of the run (its effect, or
    ``RAN`` once an outcome in the run followed it); ``open`` lists, in order, the outcomes
    whose decision is not in the run; ``refs`` and ``hashes`` map each blob ref and policy set
    hash to the first entry in the run naming it. ``clash`` says the run itself breaks a rule
    (a decision recorded twice in it, an outcome after a decision it does not let run).
    """

    start: int
    end: int = 0
    decisions: int = 0
    outcomes: int = 0
    decided: dict[str, str] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    open: list[tuple[int, str]] = field(default_factory=list)
    refs: dict[str, int] = field(default_factory=dict)
    hashes: dict[str, int] = field(default_factory=dict)
    clash: bool = False

    def decision(
        self, seq: int, decision_id: str, effect: str, policy_hash: str, request_blob: str | None
    ) -> None:
        """Fold in a decision entry (the fields :meth:`OrderCheck.decided` reads)."""
        self.decisions += 1
        if request_blob is not None and request_blob not in self.refs:
            self.refs[request_blob] = seq
        if policy_hash not in self.hashes:
            self.hashes[policy_hash] = seq
        if decision_id in self.decided:
            self.clash = True
        self.decided[decision_id] = effect
        if effect == _HELD:
            self.held.append(decision_id)

    def outcome(self, seq: int, decision_id: str, result_blob: str | None) -> None:
        """Fold in an outcome entry (the fields :meth:`OrderCheck.ran` reads)."""
        self.outcomes += 1
        if result_blob is not None and result_blob not in self.refs:
            self.refs[result_blob] = seq
        state = self.decided.get(decision_id)
        if state is None:
            self.open.append((seq, decision_id))
        elif state == "ALLOW":
            self.decided[decision_id] = _RAN
        else:
            self.clash = True


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
        self.recheck = False  # a folded block may break a rule: check again one by one

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

    def fold(self, block: Block) -> None:
        """Take in a :class:`Block` as :meth:`decided` and :meth:`ran` would take in its
        entries one at a time.

        The counts and the blob refs are always exact. So are the states while no entry
        breaks a rule; when one may, :attr:`recheck` is set: the order is then checked again
        one entry at a time (``verify_log`` does so in step 7), so that the first problem is
        named exactly as the sequential check names it.
        """
        self.decisions += block.decisions
        self.outcomes += block.outcomes
        refs = self.refs
        if refs.keys().isdisjoint(block.refs):
            refs.update(block.refs)
        else:
            for ref, seq in block.refs.items():
                refs.setdefault(ref, seq)
        self.held.update(block.held)
        if self.recheck or self.problem is not None:
            return  # the first problem is named by then: the states no longer matter
        # A run that breaks no rule changes the states as its entries would one by one: its
        # decisions are all new (not decided before, none twice), their policy sets were
        # activated before the run (a run holds no activation), and each outcome follows a
        # decision that lets it run, once.
        states = self.states
        pending: dict[str, str] = {}
        activated = self.activated
        for _, decision_id in block.open:
            state = pending[decision_id] if decision_id in pending else states.get(decision_id)
            if state != "ALLOW" and state != _APPROVED:
                self.recheck = True
                return
            pending[decision_id] = _RAN
        size = len(states)
        states.update(block.decided)
        states.update(pending)
        self.recheck = (
            block.clash
            or len(states) != size + len(block.decided)  # a decision recorded again
            or not activated.keys() >= block.hashes.keys()
        )

    def without_outcome(self) -> int:
        """Decisions that let a tool run (allowed, or approved) with no outcome after them:
        the tool was let run and its result is not on record (it crashed, was cut off, or
        its outcome was lost in the last flush window before a crash)."""
        states = list(self.states.values())
        return states.count("ALLOW") + states.count(_APPROVED)

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
