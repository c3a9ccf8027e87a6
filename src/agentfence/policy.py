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
- ``@shadow``: the policy is evaluated and its verdict recorded, but not enforced.
- ``@redact("iban, card")`` on a permit: results of the calls it allows are redacted.

Besides the arguments, the context holds the data-flow facts of ``agentfence.labels``: the
labels the run has seen (``context.data``), where each argument value came from
(``context.provenance``, ``context.resource_provenance``) and session usage
(``context.usage``); and typed views of the string arguments (``context.values``:
an address's domain, a URL's host, text folded for keyword checks; ``agentfence._values``).

The values it takes and returns (:class:`CallFacts`, :class:`Decision`) are in
:mod:`agentfence.decision`, re-exported here; the schema it generates is :mod:`agentfence._schema`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agentfence import _cedar, _values
from agentfence._approvers import APPROVERS_FILE, ApproverRegistry
from agentfence._ids import private_copy
from agentfence._policy_files import (
    DIRECTORY_FILE,
    ENTITIES_FILE,
    OVERRIDABLE,
    REQUIRE_APPROVAL,
    SHADOW,
    Compiled,
    annotation_problems,
    approver_group_notes,
    approver_group_type,
    compile,
    duplicate_ids,
    entity_labels,
    load_error,
    policy_hash,
    read_directory,
    reason_of,
    strings_in,
)
from agentfence._provenance import History, carried, links_carried, provenance, role_words
from agentfence._schema import (
    ALL_FLOW,
    FlowParts,
    generate_schema,
    value_fields,
)
from agentfence._usage import Usage
from agentfence.decision import CallFacts, Decision, Effect, EntityRef, ShadowDecision
from agentfence.errors import AgentfenceWarning, PolicyLoadError
from agentfence.labels import SOURCE_DEFAULT, Directory, Provenance
from agentfence.tools import ArgumentError, ToolCatalog, ToolEntry

__all__ = [
    "CallFacts",
    "Decision",
    "Effect",
    "EntityRef",
    "PolicyEngine",
]

_VOUCHING = frozenset({"user", "system", "directory"})
_ERRORED_POLICY = re.compile(r"policy `([^`]+)`")


def principal_entities(principal: EntityRef, parents: Sequence[EntityRef]) -> dict[str, Any]:
    """The principal with the groups it came with, as the request's own Cedar entities.

    Recorded with the request, so a replay decides with the same groups. Empty when the
    principal came with none (its groups, if any, are then in ``entities.json``).
    """
    if not parents:
        return {}
    uid = principal.as_json()
    return {"entities": [{"uid": uid, "attrs": {}, "parents": [p.as_json() for p in parents]}]}


class PolicyEngine:
    """Pre-parsed policies, schema and entities for one activation; decides calls."""

    def __init__(
        self,
        *,
        policies: Sequence[_cedar.ParsedPolicy],
        schema_text: str,
        generated_schema: str,
        compiled: Compiled,
        catalog: ToolCatalog,
        texts: Mapping[str, str],
        files: Mapping[str, str],
        principal_types: tuple[str, ...],
        shadow: Compiled | None = None,
        directory: Directory | None = None,
        entity_labels: Mapping[tuple[str, str], frozenset[str]] | None = None,
        extra_directory: Directory | None = None,
        flow: FlowParts = ALL_FLOW,
        approver_group_type: str = "Group",
    ) -> None:
        self.policies = tuple(policies)
        self.approver_group_type = approver_group_type
        """The entity type of approver groups: ``Group``, or the one ``entities.json`` has
        the named groups under."""
        self.flow = flow
        """The data-flow attributes the policies use (declared, and computed per call)."""
        self.schema_text = schema_text
        self.generated_schema = generated_schema
        self.texts = dict(texts)
        self.catalog = catalog
        self.files = dict(files)
        self.principal_types = principal_types
        self._compiled = compiled
        self._shadow = shadow
        self._by_id = {p.policy_id: p for p in policies}
        self.policy_hash = policy_hash(files, schema_text)
        self.directory = directory if directory is not None else Directory()
        """The trusted directory: ``directory.json`` plus the one given in code."""
        self.extra_directory = extra_directory
        self._entity_labels = dict(entity_labels or {})
        # Which arguments ``context.values`` describes, per tool: fixed by the tools and the
        # policies, so worked out once for this engine (a reload builds another engine).
        self._value_fields = (
            {entry.name: value_fields(entry, flow.values) for entry in catalog}
            if flow.values is not None
            else {}
        )
        self.can_hold = any(
            REQUIRE_APPROVAL in p.annotations or OVERRIDABLE in p.annotations for p in policies
        )
        """Whether any decision can hold a call for approval (a ``@require_approval`` permit
        or an ``@overridable`` forbid); known at load, so a turn's review can be skipped."""

    @classmethod
    def load(
        cls,
        directory: str | Path,
        catalog: ToolCatalog,
        *,
        principal_types: Sequence[str] = ("User",),
        trusted: Directory | None = None,
        redaction_kinds: frozenset[str] | None = None,
    ) -> PolicyEngine:
        """Load and validate a policy directory; raise :class:`PolicyLoadError` on any problem.

        Every problem found is reported (``PolicyLoadError.problems``), each naming its file
        and line, so one run of ``agentfence policy validate`` shows them all. ``trusted``
        adds to the directory's ``directory.json``; ``redaction_kinds``, when given, are the
        kinds ``@redact`` may name.
        """
        root = Path(directory)
        return cls.from_texts(
            read_directory(root),
            catalog,
            principal_types=principal_types,
            base=root,
            trusted=trusted,
            redaction_kinds=redaction_kinds,
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
        trusted: Directory | None = None,
        redaction_kinds: frozenset[str] | None = None,
    ) -> PolicyEngine:
        """Build an engine from file texts keyed by name (``*.cedar``, ``*.cedarschema``,
        ``entities.json``, ``directory.json``), as :meth:`load` reads them from a directory.

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
        problems.extend(duplicate_ids(policies))
        problems.extend(annotation_problems(policies, redaction_kinds))
        directory = Directory()
        if DIRECTORY_FILE in texts:
            try:
                directory = Directory.from_json(texts[DIRECTORY_FILE], shown(DIRECTORY_FILE))
            except PolicyLoadError as exc:
                problems.extend(exc.problems or (str(exc),))
        if problems:
            raise load_error(problems)

        flow = FlowParts.of(text for name, text in texts.items() if name.endswith(".cedar"))
        group_type, group_problems = approver_group_type(
            policies, texts.get(ENTITIES_FILE), principal_types
        )
        problems.extend(group_problems)
        if generated_schema is None:
            generated_schema = generate_schema(
                catalog, schema_sources, principal_types, flow, group_type
            )
        generated_source = _cedar.Statement("<schema generated from tools>", 1, 1, generated_schema)
        schema_text = "\n".join(s.text for s in schema_sources) + "\n" + generated_schema
        try:
            schema = _cedar.parse_schema(schema_text, [*schema_sources, generated_source])
        except ValueError as exc:
            raise load_error([str(exc)]) from exc
        problems.extend(_cedar.validate_policies(policies, schema))
        try:
            entities = _cedar.parse_entities(
                texts.get(ENTITIES_FILE, "[]"), schema, shown(ENTITIES_FILE)
            )
        except ValueError as exc:
            problems.append(str(exc))
        if APPROVERS_FILE in texts:
            # Approvers are part of the policy set: a bad file fails loading (and validation)
            # here, not later when the fence first needs it.
            try:
                ApproverRegistry.from_text(
                    texts[APPROVERS_FILE],
                    source=shown(APPROVERS_FILE),
                    default_type=principal_types[0],
                )
            except PolicyLoadError as exc:
                problems.append(str(exc))
        if problems:
            raise load_error(problems)
        if not policies:
            warnings.warn(
                f"policy directory {shown('') or '.'!r} has no *.cedar policies: every tool "
                "call will be denied. Add policies (see docs/policy-guide.md).",
                AgentfenceWarning,
                stacklevel=3,
            )
        for note in approver_group_notes(policies, texts.get(ENTITIES_FILE), group_type):
            warnings.warn(note, AgentfenceWarning, stacklevel=3)
        enforced = [p for p in policies if SHADOW not in p.annotations]
        compiled = compile(enforced, schema, entities)
        shadow = compile(policies, schema, entities) if len(enforced) != len(policies) else None
        return cls(
            policies=policies,
            schema_text=schema_text,
            generated_schema=generated_schema,
            compiled=compiled,
            catalog=catalog,
            texts=texts,
            files=files,
            principal_types=tuple(principal_types),
            shadow=shadow,
            directory=directory.merged(trusted),
            entity_labels=entity_labels(texts.get(ENTITIES_FILE, "[]")),
            extra_directory=trusted,
            flow=flow,
            approver_group_type=group_type,
        )

    def decide(self, facts: CallFacts) -> Decision:
        """Decide one call. Never raises for bad input: a call that cannot be decided is a DENY."""
        decision_id = facts.decision_id

        def deny(*reasons: str) -> Decision:
            return self._deny(facts, decision_id, reasons)

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
        principal = facts.principal
        if facts.bound is None and facts.problem is None:
            facts = self.bind(facts)
        if facts.bound is None:
            return deny(f"arguments do not fit the schema of {facts.tool!r}: {facts.problem}")
        args = facts.bound.cedar
        try:
            targets = entry.resource_targets(facts.args)
        except ArgumentError as exc:
            return deny(f"arguments do not fit the schema of {facts.tool!r}: {exc}")
        requests = []
        values = self._values_context(entry, args)
        # One request per resource the call touches: a send to three recipients is three
        # sends as far as policy goes, each with its own resource and its provenance.
        for resource_id, target in targets:
            resource = EntityRef(entry.resource_type, resource_id)
            flow = self._flow_context(entry, facts, resource, target)
            requests.append(
                {
                    "principal": principal.as_json(),
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
                        **({"input": args} if self.flow.input else {}),
                        **flow,
                        **values,
                    },
                    **principal_entities(principal, facts.principal_parents),
                }
            )
        return self.decide_requests(facts, requests, decision_id)

    def decide_recorded(
        self, facts: CallFacts, recorded: Any, decision_id: str | None = None
    ) -> Decision:
        """Decide a request as the decision log stores it: one request, or a list of them
        for a call that touched several resources."""
        if isinstance(recorded, list):
            return self.decide_requests(facts, recorded, decision_id)
        return self.decide_request(facts, recorded, decision_id)

    def decide_requests(
        self,
        facts: CallFacts,
        requests: Sequence[Mapping[str, Any]],
        decision_id: str | None = None,
    ) -> Decision:
        """Decide a call that touches several resources: one Cedar request each.

        The call is denied if any request is denied, held if any is held (by approvers every
        held request accepts; none in common is a deny), and allowed only if all are allowed.
        Reasons name the resource they are about. One request is :meth:`decide_request`.
        """
        if len(requests) == 1:
            return self.decide_request(facts, requests[0], decision_id)
        if decision_id is None:
            decision_id = facts.decision_id
        if not requests:
            return self._deny(facts, decision_id, ("the call names no resource",))
        each = [self.decide_request(facts, r, decision_id) for r in requests]
        denied = [d for d in each if d.effect is Effect.DENY]
        held = [d for d in each if d.effect is Effect.REQUIRE_APPROVAL]
        picked = denied or held or each
        approvers: tuple[str, ...] = ()
        if not denied and held:
            common = set(held[0].approvers).intersection(*(d.approvers for d in held[1:]))
            if not common:
                groups = sorted({g for d in held for g in d.approvers})
                reason = (
                    "the resources of this call need approvers of different groups ("
                    + ", ".join(groups)
                    + ") and one answer cannot stand for all: split the call"
                )
                return dataclasses.replace(
                    self._combined(facts, decision_id, held, each),
                    effect=Effect.DENY,
                    reasons=(reason,),
                    approvers=(),
                )
            approvers = tuple(sorted(common))
        combined = self._combined(facts, decision_id, picked, each)
        return dataclasses.replace(combined, approvers=approvers)

    def _combined(
        self,
        facts: CallFacts,
        decision_id: str,
        picked: Sequence[Decision],
        each: Sequence[Decision],
    ) -> Decision:
        reasons: dict[str, None] = {}
        for d in picked:
            where = EntityRef.parse(d.request["resource"], "Tool") if d.request else None
            for reason in d.reasons:
                reasons[f"{where}: {reason}" if where else reason] = None
        annotations: dict[str, Mapping[str, str]] = {}
        for d in picked:
            annotations.update(d.annotations)
        shadows = [d.shadow for d in each if d.shadow is not None]
        return Decision(
            effect=picked[0].effect,
            decision_id=decision_id,
            policy_ids=tuple(sorted({p for d in picked for p in d.policy_ids})),
            reasons=tuple(reasons),
            policy_hash=self.policy_hash,
            facts=facts,
            errors=tuple(dict.fromkeys(e for d in each for e in d.errors)),
            approvers=picked[0].approvers,
            annotations=annotations,
            request=picked[0].request,
            requests=tuple(d.request for d in each if d.request is not None),
            shadow=shadows[0] if shadows else None,
        )

    def bind(self, facts: CallFacts) -> CallFacts:
        """The facts with their arguments validated once by the tool's own schema.

        On success ``args`` become the validated values (aliases resolved, defaults filled,
        values coerced as the tool will coerce them) and ``bound`` holds them with their Cedar
        form; ``sent`` keeps a private copy of the arguments as sent, for the tool. When the
        arguments do not fit, or are ambiguous, ``problem`` says why and :meth:`decide`
        denies the call. An unknown tool is left as it is (:meth:`decide` denies it).
        """
        entry = self.catalog.get(facts.tool)
        if entry is None:
            return facts
        try:
            # Copied first: the copy is validated and run, so no one holding the original
            # (a callback, a parallel branch) can change it between the check and the run.
            sent = private_copy(facts.args)
        except Exception as exc:  # arguments that cannot be copied are refused
            try:
                entry.bind(facts.args)  # names the argument when the schema can (nesting)
            except ArgumentError as named:
                return facts.evolve(problem=str(named))
            return facts.evolve(problem=f"arguments cannot be copied: {exc}")
        try:
            bound = entry.bind(sent)
        except ArgumentError as exc:
            return facts.evolve(problem=str(exc), sent=sent)
        return facts.evolve(args=bound.values, bound=bound, sent=sent)

    def result_labels(self, tool: str, resource: EntityRef | None) -> frozenset[str]:
        """The labels of what a call returns: the tool's, and its resource's (``entities.json``)."""
        entry = self.catalog.get(tool)
        labels = set(entry.spec.labels) if entry is not None else set()
        if resource is not None:
            labels |= self._entity_labels.get((resource.type, resource.id), frozenset())
        return frozenset(labels)

    def input_labels(self, facts: CallFacts) -> frozenset[str]:
        """Labels a call's result inherits from its arguments: those of the tool results its
        argument values were copied from, for values no trusted place (the user, the system
        prompt, the directory) also gave. So a tool that echoes an untrusted value back does
        not launder it into an unlabelled result. Empty when no policy names data flow."""
        entry = self.catalog.get(facts.tool)
        if entry is None or not self.flow.roots - {"usage"} or facts.history is None:
            return frozenset()
        raw = facts.args if isinstance(facts.args, Mapping) else {}
        given = facts.bound.given if facts.bound is not None else frozenset(raw)
        labels: set[str] = set()
        for fld in entry.provenance_fields():
            if fld.name not in given or raw.get(fld.name) is None:
                continue
            found = provenance(
                raw[fld.name],
                facts.history,
                self.directory,
                numeric=fld.numeric,
                role=role_words(fld.name),
            )
            if not found.any_sources & _VOUCHING:
                labels |= found.labels
            labels |= found.carries | found.link_carries
        return frozenset(labels)

    def _flow_context(
        self, entry: ToolEntry, facts: CallFacts, resource: EntityRef, target: Any
    ) -> dict[str, Any]:
        """The data-flow attributes of a call's context that the policies use."""
        flow = self.flow
        if not flow.roots:
            return {}
        history = facts.history or History.empty()
        raw = facts.args if isinstance(facts.args, Mapping) else {}
        directory = self.directory
        out: dict[str, Any] = {}
        if "data" in flow:
            carried_labels: set[str] = set()
            link_labels: set[str] = set()
            for text in strings_in(raw):
                carried_labels |= carried(text, history, directory)
                if "/" in text:
                    link_labels |= links_carried(text, history, directory)
            out["data"] = {
                "labels": sorted(history.labels),
                "tools": sorted(history.tools),
                "returns": sorted(self.result_labels(entry.name, resource)),
                "carried": sorted(carried_labels),
                "link_carried": sorted(link_labels),
            }
        if "provenance" in flow:
            seen: dict[str, Any] = {}
            given = facts.bound.given if facts.bound is not None else frozenset(raw)
            for fld in entry.provenance_fields():
                if fld.name in given and raw.get(fld.name) is not None:
                    of_arg = provenance(
                        raw[fld.name],
                        history,
                        directory,
                        numeric=fld.numeric,
                        role=role_words(fld.name),
                    )
                    seen[fld.name] = of_arg.as_cedar()
                elif fld.required:
                    # Filled in from the tool's own default: the model did not choose it.
                    seen[fld.name] = Provenance(sources=frozenset({SOURCE_DEFAULT})).as_cedar()
            out["provenance"] = seen
        if "resource_provenance" in flow:
            # The provenance of the one resource this request is about (a list's item).
            role = role_words(
                entry.spec.resource.arg.rsplit(".", 1)[-1] if entry.spec.resource else "",
                entry.spec.resource.type if entry.spec.resource else "",
            )
            found = (
                provenance(target, history, directory, role=role)
                if target is not None
                else Provenance()
            )
            out["resource_provenance"] = found.as_cedar()
        if "usage" in flow:
            usage = facts.usage
            if usage is None:
                meter = entry.spec.meter
                usage = Usage().with_amount(meter.amount(raw)) if meter is not None else Usage()
            out["usage"] = usage.as_cedar(flow.windows)
        return out

    def _values_context(self, entry: ToolEntry, args: Mapping[str, Any]) -> dict[str, Any]:
        """``context.values`` when the policies name it: computed from the converted
        arguments (``context.args``), so it describes exactly the values that are decided."""
        selection = self.flow.values
        if selection is None:
            return {}
        fields = self._value_fields.get(entry.name)
        if fields is None:  # a tool the catalog did not have when the engine was built
            fields = value_fields(entry, selection)
        if not fields:
            return {}  # declared only for the tools whose arguments the policies name
        return {"values": _values.context_of(fields, args, selection)}

    def decide_request(
        self, facts: CallFacts, request: Mapping[str, Any], decision_id: str | None = None
    ) -> Decision:
        """Decide an already-built Cedar request (replay uses the recorded one).

        ``facts`` supply the names used in reasons; the request alone is evaluated.
        """
        if decision_id is None:
            decision_id = facts.decision_id
        # The context is encoded once: Cedar evaluates that text, and the log stores it.
        given, stored = _cedar.prepare(request)
        made = (request, stored) if stored is not None else None
        decision = self._evaluate(self._compiled, facts, request, decision_id, given, made)
        if self._shadow is not None:
            would = self._evaluate(self._shadow, facts, request, decision_id, given, None)
            shadows = tuple(
                pid for pid in would.policy_ids if SHADOW in self._by_id[pid].annotations
            )
            if shadows or would.effect is not decision.effect:
                decision = dataclasses.replace(
                    decision,
                    shadow=ShadowDecision(would.effect, shadows, would.reasons),
                )
        return decision

    def _evaluate(
        self,
        compiled: Compiled,
        facts: CallFacts,
        request: Mapping[str, Any],
        decision_id: str,
        given: Mapping[str, Any],
        made: tuple[Mapping[str, Any], bytes] | None,
    ) -> Decision:
        """Decide ``request`` as Cedar is ``given`` it (:func:`_cedar.prepare`); ``made`` is
        the request with its stored form, kept with the decision for the log."""
        result = _cedar.is_authorized(
            given, compiled.policy_set, compiled.entities, compiled.schema
        )
        # Fail closed: any evaluation error or a request Cedar could not decide is a deny,
        # so a forbid policy that errors can never turn into an allow.
        if result.errors or (result.decision != "Allow" and result.decision != "Deny"):
            # The reason names the policies that failed, never Cedar's message: it can quote
            # argument values, and reasons reach the model. The message is in ``errors``.
            failed = sorted({m for e in result.errors for m in _ERRORED_POLICY.findall(e)})
            return self._deny(
                facts,
                decision_id,
                (
                    "the policies could not be evaluated for this call (fail closed): "
                    + (
                        f"evaluating {', '.join(failed)} failed"
                        if failed
                        else "Cedar gave no decision"
                    )
                    + "; the error is in the decision log",
                ),
                errors=result.errors or ("NoDecision",),
                request=request,
                made=made,
            )
        determining = self._determining(result.determining)
        plain = self._plain(result.decision, determining)
        if plain is not None:
            effect, holds = plain
            return self._decision(effect, decision_id, determining, holds, facts, request, made)
        if not determining:
            reason = (
                f"no policy permits {facts.principal} to call {facts.tool!r} on "
                f"{EntityRef.parse(request['resource'], 'Tool')} (default deny)"
            )
            return self._deny(facts, decision_id, (reason,), request=request, made=made)
        if all(OVERRIDABLE in p.annotations for p in determining):
            # An approver may override these forbids only if, without them, some permit
            # would allow the call: overriding a forbid never creates a missing permit.
            again = _cedar.is_authorized(
                given, compiled.without_overridable, compiled.entities, compiled.schema
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
                    made,
                )
        return self._decision(Effect.DENY, decision_id, determining, [], facts, request, made)

    def _determining(self, ids: Iterable[str]) -> list[_cedar.ParsedPolicy]:
        # Cedar reports determining policies in no fixed order; sort them so that the same
        # call gives the same decision record in every process.
        return sorted(
            (self._by_id[pid] for pid in ids if pid in self._by_id), key=lambda p: p.policy_id
        )

    @staticmethod
    def _plain(
        answer: str, determining: Sequence[_cedar.ParsedPolicy]
    ) -> tuple[Effect, list[_cedar.ParsedPolicy]] | None:
        """The effect of an error-free Cedar answer that needs nothing more, and the policies
        that hold the call: an Allow (held when a determining permit has @require_approval)
        or a Deny by forbids not all @overridable. ``None`` for a default deny or
        overridable forbids, which :meth:`_evaluate` works out further."""
        if answer == "Allow":
            holds = [p for p in determining if REQUIRE_APPROVAL in p.annotations]
            return (Effect.REQUIRE_APPROVAL if holds else Effect.ALLOW), holds
        if determining and not all(OVERRIDABLE in p.annotations for p in determining):
            return Effect.DENY, []
        return None

    def plain_outcome(
        self, answer: str, determining: Iterable[str]
    ) -> tuple[Effect, tuple[str, ...], tuple[str, ...]] | None:
        """What :meth:`decide_request` makes of an error-free Cedar answer (``"Allow"`` or
        ``"Deny"`` and its determining policy ids) when it needs no further evaluation: the
        effect, the determining policy ids and the reasons, as a decision records them.
        ``None`` for a default deny or forbids that are all @overridable (replay decides
        those with :meth:`decide_recorded`)."""
        policies = self._determining(determining)
        plain = self._plain(answer, policies)
        if plain is None:
            return None
        effect, holds = plain
        shown = holds or policies
        return (
            effect,
            tuple(p.policy_id for p in policies),
            tuple(reason_of(p) for p in shown),
        )

    def _deny(
        self,
        facts: CallFacts,
        decision_id: str,
        reasons: tuple[str, ...],
        *,
        errors: Sequence[str] = (),
        request: Mapping[str, Any] | None = None,
        made: tuple[Mapping[str, Any], bytes] | None = None,
    ) -> Decision:
        """A DENY that no policy determined: refused before Cedar, by default, or on error."""
        return Decision(
            effect=Effect.DENY,
            decision_id=decision_id,
            policy_ids=(),
            reasons=reasons,
            policy_hash=self.policy_hash,
            facts=facts,
            errors=tuple(errors),
            request=request,
            stored_request=made,
        )

    def _decision(
        self,
        effect: Effect,
        decision_id: str,
        determining: Sequence[_cedar.ParsedPolicy],
        holds: Sequence[_cedar.ParsedPolicy],
        facts: CallFacts,
        request: Mapping[str, Any],
        made: tuple[Mapping[str, Any], bytes] | None,
    ) -> Decision:
        shown = [p for p in holds if p in determining] or determining
        reasons = tuple(reason_of(p) for p in shown)
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
            annotations={p.policy_id: p.annotations for p in determining},
            request=request,
            stored_request=made,
        )

    @property
    def compiled(self) -> Compiled:
        """The pre-parsed Cedar handles of the enforced policies, schema and entities
        (replay evaluates batches of recorded requests with exactly these)."""
        return self._compiled

    def source_of(self, policy_id: str) -> str | None:
        """``file:line`` where a policy is written, or ``None`` for an unknown id."""
        policy = self._by_id.get(policy_id)
        return f"{policy.path}:{policy.line}" if policy else None
