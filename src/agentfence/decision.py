"""What the fence knows about one tool call, and what it decided: the decision value types.

:class:`CallFacts` is the call described once (its bound arguments, principal, thread, step,
seed and history); :class:`Decision` is the policy engine's answer, with its :class:`Effect`,
the determining policies and the reasons. Both are frozen values; :mod:`agentfence.policy`
makes the decisions.
"""

from __future__ import annotations

import enum
import functools
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from agentfence._ids import call_digest, derive_id
from agentfence._provenance import History
from agentfence._usage import Usage
from agentfence.errors import EntityError
from agentfence.tools import BoundArgs

__all__ = ["CallFacts", "Decision", "Effect", "EntityRef", "ShadowDecision", "parents_of"]

_ENTITY = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)::"(.*)"\s*$', re.DOTALL
)


class Effect(enum.Enum):
    """What the fence does with a call."""

    ALLOW = "ALLOW"
    DENY = "DENY"
    REQUIRE_APPROVAL = "REQUIRE_APPROVAL"


_QUOTABLE = re.compile(r'[^"\\\x00-\x1f]*')


@dataclass(frozen=True)
class EntityRef:
    """A Cedar entity uid such as ``User::"alice"``."""

    type: str
    id: str

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | EntityRef, default_type: str) -> EntityRef:
        """Read ``User::"alice"``, ``{"type": "User", "id": "alice"}`` or a bare ``alice``."""
        if isinstance(value, EntityRef):
            return value
        if isinstance(value, Mapping):
            kind, ident = value.get("type"), value.get("id")
            if not isinstance(kind, str) or not isinstance(ident, str):
                raise EntityError(f"an entity must have string 'type' and 'id', got {value!r}")
            return cls(kind, ident)
        if not isinstance(value, str) or not value:
            raise EntityError(f"an entity must be a non-empty string, got {value!r}")
        if cls is EntityRef and type(value) is str and len(value) <= _PARSED_TEXT_LIMIT:
            return _parsed_text(value, default_type)  # the same principal, call after call
        return cls._from_text(value, default_type)

    @classmethod
    def _from_text(cls, value: str, default_type: str) -> EntityRef:
        match = _ENTITY.match(value)
        if match:
            ident = match.group(2)
            # Unescape only when there is something to unescape (the common case has not).
            return cls(match.group(1), json.loads(f'"{ident}"') if "\\" in ident else ident)
        return cls(default_type, value)

    def __str__(self) -> str:
        # Worked out once per value (a principal is shown in its decision id, its record and
        # its usage); kept beside the fields, which alone make its equality and hash.
        text: str | None = self.__dict__.get("_text")
        if text is None:
            if _QUOTABLE.fullmatch(self.id):  # nothing JSON would escape: quote it as it is
                text = f'{self.type}::"{self.id}"'
            else:
                text = f"{self.type}::{json.dumps(self.id, ensure_ascii=False)}"
            self.__dict__["_text"] = text
        return text

    def as_json(self) -> dict[str, str]:
        """The ``{"type": ..., "id": ...}`` form Cedar requests accept."""
        return {"type": self.type, "id": self.id}


_PARSED_TEXT_LIMIT = 256  # longer texts are parsed each time rather than kept


@functools.lru_cache(maxsize=1024)
def _parsed_text(value: str, default_type: str) -> EntityRef:
    """:meth:`EntityRef.parse` of a text, kept: the value is frozen, and the key holds
    everything the result depends on (a bare id takes ``default_type``)."""
    return EntityRef._from_text(value, default_type)


def parents_of(value: object, default_type: str = "Group") -> tuple[EntityRef, ...]:
    """The groups a principal given as ``{"type", "id", "parents": [...]}`` is in (sorted).

    Each parent is ``Group::"finance"``, ``{"type": ..., "id": ...}`` or a bare id of
    ``default_type``. Any other principal form has no parents here (``entities.json`` may
    still give it some). A malformed list raises :class:`EntityError`.
    """
    if not isinstance(value, Mapping) or value.get("parents") is None:
        return ()
    parents = value["parents"]
    if isinstance(parents, str | bytes | Mapping) or not isinstance(parents, list | tuple):
        raise EntityError(f"a principal's 'parents' must be a list of entities, got {parents!r}")
    return tuple(sorted({EntityRef.parse(p, default_type) for p in parents}, key=str))


@dataclass(frozen=True)
class CallFacts:
    """Everything the fence knows about one tool call before deciding it."""

    tool: str
    args: Mapping[str, Any]
    principal: EntityRef | None
    agent: str
    thread: str
    step: int
    tool_call_id: str
    seed: int
    nonce: str = ""
    """Distinguishes calls of runs that have no thread id (which cannot resume); else empty."""
    principal_parents: tuple[EntityRef, ...] = ()
    """The groups the principal is in for this run (a verified token's, :func:`parents_of`),
    added to the entities for this call's requests only."""
    history: History | None = None
    """The thread's messages as the call saw them (labels seen, where values appeared)."""
    usage: Usage | None = None
    """Session usage before this call (``context.usage``); zeros when not given."""
    bound: BoundArgs | None = None
    """The arguments validated with the tool's schema (:meth:`PolicyEngine.bind`); ``args``
    are then their values, the ones decided, recorded and approved."""
    problem: str | None = None
    """Why the arguments could not be bound (the call is denied with it)."""
    sent: Mapping[str, Any] | None = None
    """A private copy of the arguments as the call sent them, taken when they were bound:
    the tool receives a fresh copy of these, whose validation gives exactly ``args``."""

    @property
    def decision_id(self) -> str:
        """The deterministic id of this call's decision (computed once per facts value)."""
        # Kept in the instance's own __dict__ (functools.cached_property takes a lock on every
        # first read); :meth:`evolve` never carries it over to facts with other fields.
        cached: str | None = self.__dict__.get(_DECISION_ID)
        if cached is not None:
            return cached
        principal = str(self.principal) if self.principal else ""
        if self.principal_parents:  # the groups decided with are part of what is decided
            principal += " in [" + ", ".join(map(str, self.principal_parents)) + "]"
        digest = call_digest(self.tool, self.args, principal, self.nonce)
        value = derive_id("decision", self.seed, self.thread, self.step, self.tool_call_id, digest)
        self.__dict__[_DECISION_ID] = value
        return value

    def evolve(self, **changes: Any) -> CallFacts:
        """These facts with some fields changed (``dataclasses.replace``, without re-running
        the generated ``__init__``): the hot path makes three such copies per call.

        Only the fields are copied: the decision id depends on them, so it is worked out
        again for the new value, never carried over.
        """
        unknown = changes.keys() - _CALL_FACTS_FIELDS
        if unknown:
            raise TypeError(f"CallFacts has no field(s) {', '.join(sorted(unknown))}")
        new = object.__new__(CallFacts)
        state = new.__dict__
        state.update(self.__dict__)
        state.pop(_DECISION_ID, None)
        state.update(changes)
        return new


_DECISION_ID = "_decision_id"
_CALL_FACTS_FIELDS = frozenset(f.name for f in fields(CallFacts))


@dataclass(frozen=True)
class Decision:
    """The fence's answer for one call: an effect, the policies that determined it, and why."""

    effect: Effect
    decision_id: str
    policy_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    policy_hash: str
    facts: CallFacts
    errors: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    annotations: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    request: Mapping[str, Any] | None = None
    requests: tuple[Mapping[str, Any], ...] = ()
    """Every Cedar request of a call that touches several resources (``request`` is the one
    that determined the effect); empty for a call of one resource."""
    shadow: ShadowDecision | None = None
    """What the ``@shadow`` policies would have decided, when it differs or one matched."""
    stored_request: tuple[Mapping[str, Any], bytes] | None = field(
        default=None, repr=False, compare=False
    )
    """``request`` and its stored form (the log's request blob), made from the one encoding
    Cedar evaluated; the log uses it only while ``request`` is that same object."""

    @property
    def allowed(self) -> bool:
        """True only for ALLOW."""
        return self.effect is Effect.ALLOW

    def explain(self) -> str:
        """One line for a person or a model: the effect, the reasons and the policies."""
        verb = {
            Effect.ALLOW: "allowed",
            Effect.DENY: "denied",
            Effect.REQUIRE_APPROVAL: "requires approval for",
        }[self.effect]
        text = f"agentfence {verb} the call to {self.facts.tool!r}: " + "; ".join(self.reasons)
        if self.policy_ids:
            text += f" [policies: {', '.join(self.policy_ids)}]"
        return text + f" [decision {self.decision_id}]"


@dataclass(frozen=True)
class ShadowDecision:
    """The decision the policies would make with the ``@shadow`` policies enforced."""

    effect: Effect
    policy_ids: tuple[str, ...]
    """The shadow policies among the determining ones."""
    reasons: tuple[str, ...]


class PrincipalResolver(Protocol):
    """Says who a run acts for, from its ``RunnableConfig`` (``None``: nobody known)."""

    def __call__(self, config: Mapping[str, Any]) -> str | Mapping[str, Any] | EntityRef | None:
        """Return ``User::"alice"``, ``{"type": ..., "id": ...}``, an EntityRef or None."""
        ...


class Clock(Protocol):
    """The time source for record timestamps, in integer microseconds since the epoch."""

    def __call__(self) -> int:
        """Now, in microseconds."""
        ...


def system_clock() -> int:
    """Now, in microseconds since the epoch: the default :class:`Clock`."""
    return time.time_ns() // 1000
