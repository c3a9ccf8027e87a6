"""Loading Cedar policies and deciding one tool call.

:class:`PolicyEngine` is built once per activation from a directory of ``*.cedar`` policies,
optional ``*.cedarschema`` files and an optional ``entities.json``, plus the governed tools.
It parses everything once into pre-parsed handles and validates every policy against the
schema; per call, :meth:`PolicyEngine.decide` builds one request and makes one evaluation.

The three outcomes come from Cedar's answer and the annotations on the determining
policies (see ``docs/policy-guide.md``):

- ``@require_approval("group")`` on a permit: the call needs a human approver.
- ``@overridable("group")`` on a forbid: an approver may override that forbid.
- ``@reason("...")``: the human-readable reason shown to the model, approver and auditor.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785

from agentfence import _cedar
from agentfence._ids import call_digest, derive_id
from agentfence.errors import AgentfenceWarning, PolicyLoadError
from agentfence.tools import ArgumentError, ToolCatalog, render_type

__all__ = [
    "CallFacts",
    "Decision",
    "Effect",
    "EntityRef",
    "PolicyEngine",
]

ENTITIES_FILE = "entities.json"
APPROVERS_FILE = "approvers.toml"
APPROVE_ACTION = "approve"
REQUIRE_APPROVAL = "require_approval"
OVERRIDABLE = "overridable"
REASON = "reason"
_ENTITY = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)::"(.*)"\s*$', re.DOTALL
)


class Effect(enum.Enum):
    """What the fence does with a call."""

    ALLOW = "ALLOW"
    DENY = "DENY"
    REQUIRE_APPROVAL = "REQUIRE_APPROVAL"


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
                raise ValueError(f"an entity must have string 'type' and 'id', got {value!r}")
            return cls(kind, ident)
        if not isinstance(value, str) or not value:
            raise ValueError(f"an entity must be a non-empty string, got {value!r}")
        match = _ENTITY.match(value)
        if match:
            return cls(match.group(1), json.loads(f'"{match.group(2)}"'))
        return cls(default_type, value)

    def __str__(self) -> str:
        return f"{self.type}::{json.dumps(self.id, ensure_ascii=False)}"

    def as_json(self) -> dict[str, str]:
        """The ``{"type": ..., "id": ...}`` form Cedar requests accept."""
        return {"type": self.type, "id": self.id}


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

    @property
    def decision_id(self) -> str:
        """The deterministic id of this call's decision."""
        principal = str(self.principal) if self.principal else ""
        digest = call_digest(self.tool, self.args, principal, self.nonce)
        return derive_id("decision", self.seed, self.thread, self.step, self.tool_call_id, digest)


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
class _Compiled:
    policy_set: Any
    without_overridable: Any
    schema: Any
    entities: Any


class PolicyEngine:
    """Pre-parsed policies, schema and entities for one activation; decides calls."""

    def __init__(
        self,
        *,
        policies: Sequence[_cedar.ParsedPolicy],
        schema_text: str,
        generated_schema: str,
        compiled: _Compiled,
        catalog: ToolCatalog,
        texts: Mapping[str, str],
        files: Mapping[str, str],
        principal_types: tuple[str, ...],
    ) -> None:
        self.policies = tuple(policies)
        self.schema_text = schema_text
        self.generated_schema = generated_schema
        self.texts = dict(texts)
        self.catalog = catalog
        self.files = dict(files)
        self.principal_types = principal_types
        self._compiled = compiled
        self._by_id = {p.policy_id: p for p in policies}
        self.policy_hash = _policy_hash(files, schema_text)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        catalog: ToolCatalog,
        *,
        principal_types: Sequence[str] = ("User",),
    ) -> PolicyEngine:
        """Load and validate a policy directory; raise :class:`PolicyLoadError` on any problem.

        Every problem found is reported (``PolicyLoadError.problems``), each naming its file
        and line, so one run of ``agentfence policy validate`` shows them all.
        """
        root = Path(directory)
        return cls.from_texts(
            read_directory(root), catalog, principal_types=principal_types, base=root
        )

    @classmethod
    def from_texts(
        cls,
        texts: Mapping[str, str],
        catalog: ToolCatalog,
        *,
        principal_types: Sequence[str] = ("User",),
        generated_schema: str | None = None,
        base: Path | None = None,
    ) -> PolicyEngine:
        """Build an engine from file texts keyed by name (``*.cedar``, ``*.cedarschema``,
        ``entities.json``), as :meth:`load` reads them from a directory.

        ``generated_schema`` replaces the schema generated from ``catalog``: replay uses the
        one recorded with the activation. ``base`` prefixes file names in messages.
        """

        def shown(name: str) -> str:
            return str(base / name) if base is not None else name

        files = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in texts.items()}
        problems: list[str] = []
        policies: list[_cedar.ParsedPolicy] = []
        schema_sources: list[_cedar.Statement] = []
        for name in sorted(texts):
            if name.endswith(".cedar"):
                parsed, bad = _cedar.parse_policy_file(texts[name], shown(name), name=name)
                policies.extend(parsed)
                problems.extend(bad)
            elif name.endswith(".cedarschema"):
                schema_sources.extend(_cedar.split_statements(texts[name], shown(name)))
        problems.extend(_duplicate_ids(policies))
        if problems:
            raise _load_error(problems)

        if generated_schema is None:
            generated_schema = generate_schema(catalog, schema_sources, principal_types)
        generated_source = _cedar.Statement("<schema generated from tools>", 1, 1, generated_schema)
        schema_text = "\n".join(s.text for s in schema_sources) + "\n" + generated_schema
        try:
            schema = _cedar.parse_schema(schema_text, [*schema_sources, generated_source])
        except ValueError as exc:
            raise _load_error([str(exc)]) from exc
        problems.extend(_cedar.validate_policies(policies, schema))
        try:
            entities = _cedar.parse_entities(
                texts.get(ENTITIES_FILE, "[]"), schema, shown(ENTITIES_FILE)
            )
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise _load_error(problems)
        if not policies:
            warnings.warn(
                f"policy directory {shown('') or '.'!r} has no *.cedar policies: every tool "
                "call will be denied. Add policies (see docs/policy-guide.md).",
                AgentfenceWarning,
                stacklevel=3,
            )
        overridable = [p for p in policies if p.effect == "forbid" and OVERRIDABLE in p.annotations]
        compiled = _Compiled(
            policy_set=_cedar.build_policy_set(policies),
            without_overridable=_cedar.build_policy_set(
                [p for p in policies if p not in overridable]
            ),
            schema=schema,
            entities=entities,
        )
        return cls(
            policies=policies,
            schema_text=schema_text,
            generated_schema=generated_schema,
            compiled=compiled,
            catalog=catalog,
            texts=texts,
            files=files,
            principal_types=tuple(principal_types),
        )

    def decide(self, facts: CallFacts) -> Decision:
        """Decide one call. Never raises for bad input: a call that cannot be decided is a DENY."""
        decision_id = facts.decision_id

        def deny(
            *reasons: str, errors: Sequence[str] = (), request: Mapping[str, Any] | None = None
        ) -> Decision:
            return Decision(
                effect=Effect.DENY,
                decision_id=decision_id,
                policy_ids=(),
                reasons=reasons,
                policy_hash=self.policy_hash,
                facts=facts,
                errors=tuple(errors),
                request=request,
            )

        entry = self.catalog.get(facts.tool)
        if entry is None:
            return deny(
                f"tool {facts.tool!r} is not governed by this fence (default deny); "
                "pass it in Fence.from_directory(..., tools=[...])"
            )
        if facts.principal is None:
            return deny(
                "no principal: the run did not say who the agent acts for; set "
                "configurable['agentfence_principal'] or pass a principal_resolver"
            )
        if facts.principal.type not in self.principal_types:
            return deny(
                f"principal {facts.principal} is not of a known principal type "
                f"({', '.join(self.principal_types)})"
            )
        try:
            args = entry.cedar_args(facts.args)
            resource = EntityRef(entry.resource_type, entry.resource_id(facts.args))
        except ArgumentError as exc:
            return deny(f"arguments do not fit the schema of {facts.tool!r}: {exc}")
        request = {
            "principal": facts.principal.as_json(),
            "action": {"type": "Action", "id": facts.tool},
            "resource": resource.as_json(),
            "context": {
                "agent": {"__entity": {"type": "Agent", "id": facts.agent}},
                "run": {
                    "thread": facts.thread,
                    "step": facts.step,
                    "tool_call_id": facts.tool_call_id,
                    "seed": facts.seed,
                },
                "args": args,
            },
        }
        return self.decide_request(facts, request, decision_id)

    def decide_request(
        self, facts: CallFacts, request: Mapping[str, Any], decision_id: str | None = None
    ) -> Decision:
        """Decide an already-built Cedar request (replay uses the recorded one).

        ``facts`` supply the names used in reasons; the request alone is evaluated.
        """
        if decision_id is None:
            decision_id = facts.decision_id

        def deny(*reasons: str, errors: Sequence[str] = ()) -> Decision:
            return Decision(
                effect=Effect.DENY,
                decision_id=decision_id,
                policy_ids=(),
                reasons=reasons,
                policy_hash=self.policy_hash,
                facts=facts,
                errors=tuple(errors),
                request=request,
            )

        compiled = self._compiled
        result = _cedar.is_authorized(
            request, compiled.policy_set, compiled.entities, compiled.schema
        )
        # Fail closed: any evaluation error or a request Cedar could not decide is a deny,
        # so a forbid policy that errors can never turn into an allow.
        if result.errors or (result.decision != "Allow" and result.decision != "Deny"):
            return deny(
                "the policies could not be evaluated for this call (fail closed): "
                + "; ".join(result.errors or ("no decision",)),
                errors=result.errors or ("NoDecision",),
            )
        # Cedar reports determining policies in no fixed order; sort them so that the same
        # call gives the same decision record in every process.
        determining = sorted(
            (self._by_id[pid] for pid in result.determining if pid in self._by_id),
            key=lambda p: p.policy_id,
        )
        if result.decision == "Allow":
            holds = [p for p in determining if REQUIRE_APPROVAL in p.annotations]
            effect = Effect.REQUIRE_APPROVAL if holds else Effect.ALLOW
            return self._decision(effect, decision_id, determining, holds, facts, request)
        if not determining:
            return Decision(
                effect=Effect.DENY,
                decision_id=decision_id,
                policy_ids=(),
                reasons=(
                    f"no policy permits {facts.principal} to call {facts.tool!r} on "
                    f"{EntityRef.parse(request['resource'], 'Tool')} (default deny)",
                ),
                policy_hash=self.policy_hash,
                facts=facts,
                request=request,
            )
        if all(OVERRIDABLE in p.annotations for p in determining):
            # An approver may override these forbids only if, without them, some permit
            # would allow the call: overriding a forbid never creates a missing permit.
            again = _cedar.is_authorized(
                request, compiled.without_overridable, compiled.entities, compiled.schema
            )
            if again.decision == "Allow" and not again.errors:
                # A permit that itself needs approval adds its approver group too.
                gated = [
                    self._by_id[pid]
                    for pid in sorted(again.determining)
                    if pid in self._by_id and REQUIRE_APPROVAL in self._by_id[pid].annotations
                ]
                return self._decision(
                    Effect.REQUIRE_APPROVAL,
                    decision_id,
                    determining,
                    [*determining, *gated],
                    facts,
                    request,
                )
        return self._decision(Effect.DENY, decision_id, determining, [], facts, request)

    def _decision(
        self,
        effect: Effect,
        decision_id: str,
        determining: Sequence[_cedar.ParsedPolicy],
        holds: Sequence[_cedar.ParsedPolicy],
        facts: CallFacts,
        request: Mapping[str, Any],
    ) -> Decision:
        shown = [p for p in holds if p in determining] or determining
        reasons = tuple(_reason_of(p) for p in shown)
        approvers = sorted(
            {
                p.annotations[key]
                for p in holds
                for key in (REQUIRE_APPROVAL, OVERRIDABLE)
                if p.annotations.get(key)
            }
        )
        return Decision(
            effect=effect,
            decision_id=decision_id,
            policy_ids=tuple(p.policy_id for p in determining),
            reasons=reasons,
            policy_hash=self.policy_hash,
            facts=facts,
            approvers=tuple(approvers),
            annotations={p.policy_id: dict(p.annotations) for p in determining},
            request=request,
        )

    def source_of(self, policy_id: str) -> str | None:
        """``file:line`` where a policy is written, or ``None`` for an unknown id."""
        policy = self._by_id.get(policy_id)
        return f"{policy.path}:{policy.line}" if policy else None


def check_syntax(directory: str | Path) -> int:
    """Parse every policy in a directory without tools; return the number of policies.

    This is ``agentfence policy validate`` without ``--tools``: it finds syntax errors and
    duplicate ids, but cannot check attributes against the schema the tools generate.
    """
    root = Path(directory)
    texts = read_directory(root)
    problems: list[str] = []
    policies: list[_cedar.ParsedPolicy] = []
    for name in sorted(texts):
        if name.endswith(".cedar"):
            parsed, bad = _cedar.parse_policy_file(texts[name], str(root / name), name=name)
            policies.extend(parsed)
            problems.extend(bad)
    problems.extend(_duplicate_ids(policies))
    if problems:
        raise _load_error(problems)
    return len(policies)


def read_directory(root: Path) -> dict[str, str]:
    """The texts of a policy directory: ``*.cedar``, ``*.cedarschema``, ``entities.json`` and
    ``approvers.toml``."""
    if not root.is_dir():
        raise PolicyLoadError(
            f"policy directory {str(root)!r} does not exist or is not a directory; "
            "create it with your *.cedar files or pass the right path"
        )
    paths = [*_cedar.iter_files(root, ".cedar"), *_cedar.iter_files(root, ".cedarschema")]
    paths += [root / name for name in (ENTITIES_FILE, APPROVERS_FILE) if (root / name).is_file()]
    texts: dict[str, str] = {}
    for path in paths:
        try:
            texts[path.name] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyLoadError(
                f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
            ) from exc
    return texts


def _duplicate_ids(policies: Sequence[_cedar.ParsedPolicy]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, _cedar.ParsedPolicy] = {}
    for policy in policies:
        if policy.policy_id in seen:
            first = seen[policy.policy_id]
            problems.append(
                f"{policy.path}:{policy.line}: policy id {policy.policy_id!r} is already "
                f"used at {first.path}:{first.line}; give each @id a unique value"
            )
        seen[policy.policy_id] = policy
    return problems


def _reason_of(policy: _cedar.ParsedPolicy) -> str:
    reason = policy.annotations.get(REASON)
    if reason:
        return reason
    verb = "forbids" if policy.effect == "forbid" else "permits"
    if policy.policy_id.endswith(f":{policy.line}"):
        return f"policy {policy.policy_id} {verb} this call"
    return f"policy {policy.policy_id} ({policy.path}:{policy.line}) {verb} this call"


def _load_error(problems: Sequence[str]) -> PolicyLoadError:
    listing = "\n".join(f"  {p}" for p in problems)
    return PolicyLoadError(
        f"the policies could not be loaded ({len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''}):\n{listing}\n"
        "Fix them and run `agentfence policy validate` again; the active policies are unchanged.",
        tuple(problems),
    )


def _policy_hash(files: Mapping[str, str], schema_text: str) -> str:
    material: dict[str, Any] = {
        "format": "agentfence.policyset/v1",
        "files": dict(sorted(files.items())),
        "schema": hashlib.sha256(schema_text.encode()).hexdigest(),
    }
    return hashlib.sha256(rfc8785.dumps(material)).hexdigest()


_DECLARED = re.compile(r"^\s*entity\s+(.+?)(?:\s+in\s|\s*[={;]|$)", re.DOTALL)


def _declared_entity_types(sources: Sequence[_cedar.Statement]) -> set[str]:
    names: set[str] = set()
    for stmt in sources:
        code = _cedar.strip_comments(stmt.text)
        match = _DECLARED.match(code)
        if match:
            names.update(n.strip().strip('"') for n in match.group(1).split(","))
    return names


def generate_schema(
    catalog: ToolCatalog,
    sources: Sequence[_cedar.Statement] = (),
    principal_types: Sequence[str] = ("User",),
) -> str:
    """The Cedar schema text for the governed tools (declarations the schema files lack).

    Each tool is an action; its ``context`` is ``{agent, run, args}`` where ``args`` is the
    type derived from the tool's argument schema. Entity types used by principals, agents
    and resources are declared here unless a schema file declares them.
    """
    if catalog.get(APPROVE_ACTION) is not None:
        raise PolicyLoadError(
            f"a tool is named {APPROVE_ACTION!r}, which is the action agentfence reserves for "
            "approvers' answers; rename the tool"
        )
    declared = _declared_entity_types(sources)
    needed = sorted(
        ({"Agent", "Approval", "Group", *principal_types} | catalog.entity_types()) - declared
    )
    lines = ["// Generated by agentfence from the governed tools."]
    lines += [f"entity {name};" for name in needed]
    lines += [f'action "{group}";' for group in sorted(catalog.groups())]
    principals = ", ".join(principal_types)
    for entry in sorted(catalog, key=lambda e: e.name):
        member = ""
        if entry.spec.groups:
            member = " in [" + ", ".join(f'"{g}"' for g in entry.spec.groups) + "]"
        lines.append(
            f'action "{entry.name}"{member} appliesTo {{\n'
            f"  principal: [{principals}],\n"
            f"  resource: [{entry.resource_type}],\n"
            "  context: {\n"
            '    "agent": Agent,\n'
            '    "run": { "thread": String, "step": Long, "tool_call_id": String, '
            '"seed": Long },\n'
            f'    "args": {render_type(entry.args_type, "    ")}\n'
            "  }\n"
            "};"
        )
    # Answering an approval request is itself an action that policy decides
    # (docs/approver-guide.md): the approver is the principal, the request the resource.
    lines.append(
        f'action "{APPROVE_ACTION}" appliesTo {{\n'
        f"  principal: [{principals}],\n"
        "  resource: [Approval],\n"
        "  context: {\n"
        '    "tool": String,\n'
        f'    "requester": {principal_types[0]},\n'
        '    "approver_groups": Set<Group>,\n'
        '    "risk": String\n'
        "  }\n"
        "};"
    )
    return "\n".join(lines) + "\n"
