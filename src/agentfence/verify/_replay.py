"""Replay: re-decide every recorded decision with the recorded (or candidate) policies.

:func:`replay` can share a large log among spawned worker processes. Each worker imports
this module afresh and runs :func:`_replay_range`, whose result it pickles back as a
:class:`_ReplayPart`; both must stay at the top level of this module.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError
from typing_extensions import TypedDict

from agentfence import _cedar
from agentfence._policy_files import read_directory
from agentfence.errors import PolicyLoadError, VerificationError
from agentfence.policy import CallFacts, EntityRef, PolicyEngine
from agentfence.records import (
    ACTIVATION_KIND,
    DECISION_KIND,
    ENTRY_FORMAT,
    ActivationRecord,
    DecisionRecord,
)
from agentfence.tools import ToolCatalog
from agentfence.verify._common import Progress
from agentfence.verify._snapshot import Snapshot, parse_body

__all__ = [
    "PARALLEL_REPLAY_FROM",
    "NotReplayable",
    "ReplayChange",
    "ReplayReport",
    "replay",
]


@dataclass(frozen=True)
class ReplayChange:
    """A decision that replays differently from how it was recorded."""

    seq: int
    decision_id: str
    thread: str
    tool: str
    principal: str | None
    recorded_effect: str
    replayed_effect: str
    recorded_policies: tuple[str, ...]
    replayed_policies: tuple[str, ...]
    recorded_reasons: tuple[str, ...]
    replayed_reasons: tuple[str, ...]


@dataclass(frozen=True)
class NotReplayable:
    """A decision that cannot be re-decided, and why (``refused_before_cedar``, ...)."""

    seq: int
    decision_id: str
    tool: str
    reason: str


@dataclass(frozen=True)
class ReplayReport:
    """What :func:`replay` found: every decision re-decided, and those that came out different.

    ``mode`` is ``"recorded"`` (the policies each decision was made with: every decision
    must come out the same) or ``"what-if"`` (the candidate ``policies`` directory).
    """

    mode: Literal["recorded", "what-if"]
    policies: str | None
    decisions: int
    replayed: int
    unchanged: int
    changes: tuple[ReplayChange, ...]
    not_replayable: tuple[NotReplayable, ...]
    recorded_engines: tuple[str, ...]
    engine: str
    seconds: float
    reworded: tuple[ReplayChange, ...] = ()
    """Decisions whose effect and determining policies replay the same and only the reasons
    differ (a reworded @reason): listed apart, never counted as changes."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able report (what ``agentfence replay --json`` prints)."""
        reasons: dict[str, int] = {}
        for item in self.not_replayable:
            reasons[item.reason] = reasons.get(item.reason, 0) + 1
        return {
            "mode": self.mode,
            "policies": self.policies,
            "decisions": self.decisions,
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "changed": len(self.changes),
            "changes": [
                {k: list(v) if isinstance(v, tuple) else v for k, v in vars(change).items()}
                for change in self.changes
            ],
            "reworded": [
                {k: list(v) if isinstance(v, tuple) else v for k, v in vars(change).items()}
                for change in self.reworded
            ],
            "not_replayable": reasons,
            "recorded_engines": list(self.recorded_engines),
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
        }


_REPLAY_BATCH = 512


def replay(
    source: str | Path,
    *,
    policies: Path | None = None,
    progress: Progress | None = None,
    workers: int | None = 1,
) -> ReplayReport:
    """Re-decide every recorded decision that reached Cedar, and report what differs.

    Without ``policies`` each decision is re-decided by the engine rebuilt from the
    activation entry of its policy set (its recorded texts and generated schema): every
    decision must come out the same. With ``policies=DIR`` ("what if") they are re-decided
    by the policies in ``DIR`` with each activation's recorded generated schema, and the
    report lists what would change. Decisions refused before Cedar (no request recorded)
    and those whose request was erased are listed as not replayable.

    Cedar evaluation holds the GIL, so ``workers`` processes can share a large log, each
    over a range of entries; ``workers=None`` means one per CPU from
    ``PARALLEL_REPLAY_FROM`` decisions on. Worker processes are spawned, so a script that
    asks for them must call :func:`replay` under ``if __name__ == "__main__":``. Replay reads
    the index columns and does not check signatures or hashes: run :func:`verify_log` first.
    """
    started = time.perf_counter()
    candidate = read_directory(policies) if policies is not None else None
    with Snapshot(source) as snap:
        end = snap.count()
        decisions = snap.count_kind(DECISION_KIND)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if decisions >= PARALLEL_REPLAY_FROM else 1
    workers = max(1, workers)
    parts: list[_ReplayPart] = []
    if workers == 1:
        parts.append(_replay_range(source, candidate, policies, 0, end, progress))
    else:
        # Ranges of entries, a few per worker so that progress moves and the load evens out;
        # each range sees every activation before its end, as a sequential replay would.
        chunks = workers * 4
        bounds = [(end * i // chunks, end * (i + 1) // chunks) for i in range(chunks)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [
                pool.submit(_replay_range, str(source), candidate, policies, a, b, None)
                for a, b in bounds
            ]
            for (_, b), future in zip(bounds, futures, strict=True):
                parts.append(future.result())
                if progress is not None:
                    progress("replay", b, end)
    changes = tuple(c for part in parts for c in part.changes)
    reworded = tuple(c for part in parts for c in part.reworded)
    replayed = sum(part.replayed for part in parts)
    return ReplayReport(
        mode="what-if" if policies is not None else "recorded",
        policies=str(policies) if policies is not None else None,
        decisions=sum(part.decisions for part in parts),
        replayed=replayed,
        unchanged=replayed - len(changes) - len(reworded),
        changes=changes,
        reworded=reworded,
        not_replayable=tuple(n for part in parts for n in part.skipped),
        recorded_engines=tuple(sorted({e for part in parts for e in part.engines})),
        engine=_cedar.ENGINE_VERSION,
        seconds=time.perf_counter() - started,
    )


PARALLEL_REPLAY_FROM = 50_000
"""From this many decisions on, :func:`replay` with ``workers=None`` uses one process per CPU."""


@dataclass(frozen=True)
class _ReplayPart:
    decisions: int
    replayed: int
    changes: tuple[ReplayChange, ...]
    reworded: tuple[ReplayChange, ...]
    skipped: tuple[NotReplayable, ...]
    engines: frozenset[str]


def _replay_range(
    source: str | Path,
    candidate: Mapping[str, str] | None,
    directory: Path | None,
    start: int,
    end: int,
    progress: Progress | None,
) -> _ReplayPart:
    """Replay the decisions with ``start <= seq < end`` (run in a worker process, or here)."""
    with Snapshot(source) as snap:
        state = _Replay(snap, candidate, directory)
        for seq, body in snap.kind_rows(ACTIVATION_KIND, 0, end):
            record = parse_body(body, seq, step=3)
            if isinstance(record, ActivationRecord):
                state.activations.setdefault(record.policy_hash, (seq, record))
        pending: list[tuple[int, _Recorded]] = []
        for seq, body in snap.kind_rows(DECISION_KIND, start, end):
            recorded = _read_decision(body, seq)
            if recorded is not None:
                pending.append((seq, recorded))
            if len(pending) >= _REPLAY_BATCH:
                state.decide(pending)
                pending = []
                if progress is not None:
                    progress("replay", seq, end)
        state.decide(pending)
        if progress is not None:
            progress("replay", end, end)
    # The fast path decides a batch out of order; the report lists by position in the log.
    return _ReplayPart(
        decisions=state.decisions,
        replayed=state.replayed,
        changes=tuple(sorted(state.changes, key=lambda c: c.seq)),
        reworded=tuple(sorted(state.reworded, key=lambda c: c.seq)),
        skipped=tuple(sorted(state.skipped, key=lambda n: n.seq)),
        engines=frozenset(state.engines),
    )


class _Replay:
    def __init__(
        self, snap: Snapshot, candidate: Mapping[str, str] | None, directory: Path | None
    ) -> None:
        self.snap = snap
        self.candidate = candidate
        self.directory = directory
        self.activations: dict[str, tuple[int, ActivationRecord]] = {}
        self.cache: dict[str, PolicyEngine | str] = {}
        self.changes: list[ReplayChange] = []
        self.reworded: list[ReplayChange] = []
        self.skipped: list[NotReplayable] = []
        self.engines: set[str] = set()
        self.decisions = 0
        self.replayed = 0
        self.catalog = ToolCatalog([])
        self.principals: dict[str, EntityRef] = {}
        self.outcomes: dict[
            tuple[str, str, frozenset[str]], tuple[str, tuple[str, ...], tuple[str, ...]] | None
        ] = {}

    def principal(self, text: str | None) -> EntityRef | None:
        """The recorded principal as an EntityRef (``str()`` of it gives ``text`` back)."""
        if text is None:
            return None
        found = self.principals.get(text)
        if found is None:
            found = self.principals[text] = EntityRef.parse(text, "User")
        return found

    def engine(self, policy_hash: str) -> PolicyEngine | str:
        """The engine for a recorded policy set, or why there is none."""
        activation = self.activations.get(policy_hash)
        if activation is None:
            return "policy_set_not_activated"
        seq, record = activation
        key = policy_hash if self.candidate is None else record.generated_schema_blob
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        refs = [*record.file_blobs.values(), record.generated_schema_blob]
        stored = self.snap.blobs_by_ref(refs)
        if any(stored.get(ref) is None for ref in refs):
            self.cache[key] = "policies_erased_or_missing"
            return self.cache[key]
        generated = _text(stored[record.generated_schema_blob])
        if self.candidate is None:
            texts = {name: _text(stored[ref]) for name, ref in record.file_blobs.items()}
            base = None
        else:
            texts, base = dict(self.candidate), self.directory
        try:
            engine = PolicyEngine.from_texts(
                texts, self.catalog, generated_schema=generated, base=base
            )
        except PolicyLoadError as exc:
            if self.candidate is not None:
                raise
            raise VerificationError(
                f"the policy set activated at entry {seq} cannot be rebuilt from its recorded "
                f"texts: {exc}"
            ) from exc
        if self.candidate is None and engine.policy_hash != policy_hash:
            raise VerificationError(
                f"the policy texts recorded at entry {seq} rebuild policy set "
                f"{engine.policy_hash[:16]}…, not the recorded {policy_hash[:16]}…: the "
                "activation's blobs do not match it; run `agentfence log verify`"
            )
        self.cache[key] = engine
        return engine

    def decide(self, batch: Sequence[tuple[int, _Recorded]]) -> None:
        """Re-decide a batch of decisions: each one ends up replayed or not replayable.

        Requests of one policy set go to Cedar in one call (the fast path). A decision whose
        Cedar answer gives, by the rules of :meth:`confirms`, exactly the recorded effect,
        policies and reasons is unchanged; every other one, and every request the batch
        call cannot take, is decided again by the engine itself and compared as before.
        """
        refs = [r["request_blob"] for _, r in batch if r["request_blob"] is not None]
        requests = self.snap.blobs_by_ref(refs) if refs else {}
        fast: dict[str, tuple[PolicyEngine, list[_Pending]]] = {}
        for seq, record in batch:
            self.decisions += 1
            self.engines.add(record["engine"])
            ref = record["request_blob"]
            if ref is None:
                self.skip(seq, record, "refused_before_cedar")
                continue
            content = requests.get(ref)
            if content is None:
                self.skip(seq, record, "request_erased" if ref in requests else "request_missing")
                continue
            policy_hash = record["policy_hash"]
            activation = self.activations.get(policy_hash)
            engine = (
                self.engine(policy_hash)
                if activation is not None and activation[0] < seq
                else "policy_set_not_activated"
            )
            if isinstance(engine, str):
                self.skip(seq, record, engine)
                continue
            request = batch_request(content)
            if request is None:  # not one plain request: the engine decides it
                self.decide_one(seq, record, engine, content)
                continue
            fast.setdefault(policy_hash, (engine, []))[1].append(
                _Pending(seq, record, content, request)
            )
        for engine, pending in fast.values():
            handles = engine.compiled
            evaluations: Sequence[_cedar.Evaluation | None]
            try:
                evaluations = _cedar.is_authorized_batch(
                    [p.request for p in pending],
                    handles.policy_set,
                    handles.entities,
                    handles.schema,
                )
            except (TypeError, KeyError, ValueError):
                # A request the batch call cannot take: each is decided on its own, so the
                # one at fault is reported (request_unreadable), never skipped.
                evaluations = [None] * len(pending)
            for item, evaluation in zip(pending, evaluations, strict=True):
                if evaluation is not None and self.confirms(engine, item.record, evaluation):
                    self.replayed += 1
                else:
                    self.decide_one(item.seq, item.record, engine, item.content)

    def confirms(
        self, engine: PolicyEngine, record: _Recorded, evaluation: _cedar.Evaluation
    ) -> bool:
        """Whether Cedar's answer makes the engine decide exactly as recorded.

        Only the plain outcomes are read here, by the engine's own reading of them
        (:meth:`PolicyEngine.plain_outcome`): an Allow (held when a determining permit has
        @require_approval) and a Deny by forbids not all @overridable, each with no error.
        Anything else (an error, no decision, a default deny, an overridable forbid) is
        left to the engine: this check can say "the same", never "changed".
        """
        if evaluation.errors or evaluation.decision not in ("Allow", "Deny"):
            return False
        predicted = self.outcome(engine, evaluation.decision, evaluation.determining)
        return predicted is not None and predicted == (
            record["effect"],
            tuple(sorted(record["policy_ids"])),
            tuple(sorted(record["reasons"])),
        )

    def outcome(
        self, engine: PolicyEngine, answer: str, determining: tuple[str, ...]
    ) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
        """(effect, sorted policy ids, sorted reasons) the engine makes of a plain Cedar
        answer (:meth:`PolicyEngine.plain_outcome`), or None. A function of the policy set
        and the answer alone, so it is kept per engine."""
        key = (engine.policy_hash, answer, frozenset(determining))
        if key not in self.outcomes:
            plain = engine.plain_outcome(answer, determining)
            self.outcomes[key] = (
                None
                if plain is None
                else (plain[0].value, tuple(sorted(plain[1])), tuple(sorted(plain[2])))
            )
        return self.outcomes[key]

    def decide_one(self, seq: int, record: _Recorded, engine: PolicyEngine, content: bytes) -> None:
        """Decide one recorded request with the engine itself and compare it."""
        facts = CallFacts(
            tool=record["tool"],
            args={},
            principal=self.principal(record["principal"]),
            agent=record["agent"],
            thread=record["thread"],
            step=record["step"],
            tool_call_id=record["tool_call_id"],
            seed=record["seed"],
        )
        try:
            decision = engine.decide_recorded(facts, json.loads(content), record["decision_id"])
        except (TypeError, KeyError, ValueError, AttributeError):
            # Not JSON, or not a request Cedar can read (a principal that is neither text nor
            # a type and id): reported as not replayable, never skipped and never a crash.
            self.skip(seq, record, "request_unreadable")
            return
        self.replayed += 1
        # What decides is compared: the effect and the determining policies (a set, as
        # Cedar reports them). Reasons are words about it: a difference in them alone is
        # listed apart (a reworded @reason), never as a change.
        decides_alike = decision.effect.value == record["effect"] and sorted(
            decision.policy_ids
        ) == sorted(record["policy_ids"])
        if not decides_alike or sorted(decision.reasons) != sorted(record["reasons"]):
            (self.changes if not decides_alike else self.reworded).append(
                ReplayChange(
                    seq=seq,
                    decision_id=record["decision_id"],
                    thread=record["thread"],
                    tool=record["tool"],
                    principal=record["principal"],
                    recorded_effect=record["effect"],
                    replayed_effect=decision.effect.value,
                    recorded_policies=tuple(record["policy_ids"]),
                    replayed_policies=tuple(decision.policy_ids),
                    recorded_reasons=tuple(record["reasons"]),
                    replayed_reasons=tuple(decision.reasons),
                )
            )

    def skip(self, seq: int, record: _Recorded, reason: str) -> None:
        self.skipped.append(NotReplayable(seq, record["decision_id"], record["tool"], reason))


def _text(content: bytes | None) -> str:
    return (content or b"").decode("utf-8")


class _Recorded(TypedDict):
    """What replay reads of a decision entry: what it re-decides with and compares."""

    format: Literal["agentfence.decision/v1"]
    decision_id: str
    seed: int
    thread: str
    step: int
    tool_call_id: str
    tool: str
    principal: str | None
    agent: str
    request_blob: str | None
    effect: Literal["ALLOW", "DENY", "REQUIRE_APPROVAL"]
    policy_ids: list[str]
    reasons: list[str]
    policy_hash: str
    engine: str


class _RecordedEntry(TypedDict):
    format: Literal["agentfence.entry/v1"]
    record: _Recorded
    seq: int


# One strict pass of pydantic-core over the entry reads just these fields (a TypedDict
# ignores the others), which is a third of the work of building the whole DecisionRecord.
# Replay trusts what it reads no further than that: `verify_log` checks entries in full.
_READ_DECISION: TypeAdapter[_RecordedEntry] = TypeAdapter(_RecordedEntry)


def _read_decision(body: bytes, seq: int) -> _Recorded | None:
    """The fields of a decision entry, or None for an entry of another kind."""
    try:
        return _READ_DECISION.validate_json(body, strict=True)["record"]
    except ValidationError:
        # Not the expected shape: the full parse says what is wrong (EntryError), or finds
        # another kind of record in a decision row, which replay skips as before.
        record = parse_body(body, seq, step=3)
        if isinstance(record, DecisionRecord):
            return _READ_DECISION.validate_python(
                {"format": ENTRY_FORMAT, "record": record.model_dump(), "seq": seq}
            )["record"]
        return None


@dataclass(frozen=True)
class _Pending:
    """A decision whose request waits for the batch call of its policy set."""

    seq: int
    record: _Recorded
    content: bytes
    request: dict[str, Any]


_REQUEST_KEYS = frozenset({"principal", "action", "resource", "context"})


def batch_request(content: bytes) -> dict[str, Any] | None:
    """The recorded request as the batch call takes it, or None when it cannot.

    Only one plain request goes in a batch: exactly a principal, action and resource (each
    a type and an id) and a context. Its context is handed over as the JSON text that
    cedarpy makes of it for a single call, so Cedar reads the same request on either path.
    A list (a call of several resources), a request with entities of its own (a verified
    principal's groups), anything else or anything unreadable is left to the engine.
    """
    try:
        # The same parser as the engine's path, on text: json.loads of bytes first guesses
        # their encoding, and anything that is not plain UTF-8 JSON goes to that path.
        request = json.loads(content.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(request, dict) or request.keys() != _REQUEST_KEYS:
        return None
    context = request["context"]
    if not isinstance(context, dict):
        return None
    for key in ("principal", "action", "resource"):
        ref = request[key]
        if not (
            isinstance(ref, dict)
            and isinstance(ref.get("type"), str)
            and isinstance(ref.get("id"), str)
        ):
            return None
    request["context"] = json.dumps(context)
    return request
