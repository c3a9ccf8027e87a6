"""Loading a policy set: reading the directory, parsing policies and their annotations, the
entity labels, duplicate ids, default reasons and the policy set's hash.

:class:`~agentfence.policy.PolicyEngine` builds on these; ``agentfence policy validate``
without tools calls :func:`check_syntax` alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rfc8785

from agentfence import _cedar
from agentfence._approvers import APPROVERS_FILE
from agentfence.errors import PolicyLoadError

ENTITIES_FILE = "entities.json"
DIRECTORY_FILE = "directory.json"
REQUIRE_APPROVAL = "require_approval"
OVERRIDABLE = "overridable"
REASON = "reason"
SHADOW = "shadow"
REDACT = "redact"
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Compiled:
    """A policy set compiled for cedarpy: with and without its overridable policies."""

    policy_set: Any
    without_overridable: Any
    schema: Any
    entities: Any


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
    problems.extend(duplicate_ids(policies))
    if problems:
        raise load_error(problems)
    return len(policies)


def read_directory(root: Path) -> dict[str, str]:
    """The texts of a policy directory: ``*.cedar``, ``*.cedarschema``, ``entities.json``,
    ``approvers.toml`` and ``directory.json``."""
    if not root.is_dir():
        raise PolicyLoadError(
            f"policy directory {str(root)!r} does not exist or is not a directory; "
            "create it with your *.cedar files or pass the right path"
        )
    paths = [*_cedar.iter_files(root, ".cedar"), *_cedar.iter_files(root, ".cedarschema")]
    paths += [
        root / name
        for name in (ENTITIES_FILE, APPROVERS_FILE, DIRECTORY_FILE)
        if (root / name).is_file()
    ]
    texts: dict[str, str] = {}
    for path in paths:
        try:
            texts[path.name] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyLoadError(
                f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
            ) from exc
    return texts


def compile(policies: Sequence[_cedar.ParsedPolicy], schema: Any, entities: Any) -> Compiled:
    overridable = [p for p in policies if p.effect == "forbid" and OVERRIDABLE in p.annotations]
    return Compiled(
        policy_set=_cedar.build_policy_set(policies),
        without_overridable=_cedar.build_policy_set([p for p in policies if p not in overridable]),
        schema=schema,
        entities=entities,
    )


def redaction_kinds_of(annotations: Mapping[str, str]) -> tuple[str, ...]:
    """The kinds a policy's ``@redact("iban, card")`` names (none without the annotation)."""
    raw = annotations.get(REDACT)
    if raw is None:
        return ()
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def annotation_problems(
    policies: Sequence[_cedar.ParsedPolicy], known: frozenset[str] | None
) -> list[str]:
    problems: list[str] = []
    for policy in policies:
        where = f"{policy.path}:{policy.line}"
        if REDACT not in policy.annotations:
            continue
        kinds = redaction_kinds_of(policy.annotations)
        if policy.effect != "permit":
            problems.append(
                f"{where}: @redact on a forbid has no effect (a forbid never allows a call "
                "whose result could be redacted); put it on the permit that allows the call"
            )
        if not kinds:
            problems.append(
                f'{where}: @redact needs the kinds to redact, e.g. @redact("iban, card")'
            )
        for kind in kinds:
            if not _KIND.match(kind):
                problems.append(
                    f"{where}: @redact kind {kind!r} is not a valid kind name (lower-case "
                    "letters, digits and '_')"
                )
            elif known is not None and kind not in known:
                problems.append(
                    f"{where}: @redact kind {kind!r} is unknown; known kinds are "
                    f"{', '.join(sorted(known))} (add a Redactor for others)"
                )
    return problems


def entity_labels(text: str) -> dict[tuple[str, str], frozenset[str]]:
    """Each entity's ``labels`` attribute joined with its ancestors' (parents, transitively).

    ``entities.json`` has already been validated against the schema when this runs.
    """
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    own: dict[tuple[str, str], frozenset[str]] = {}
    parents: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for item in data if isinstance(data, list) else ():
        if not isinstance(item, Mapping) or not isinstance(item.get("uid"), Mapping):
            continue
        uid = (str(item["uid"].get("type")), str(item["uid"].get("id")))
        declared = (item.get("attrs") or {}).get("labels")
        if isinstance(declared, list):
            own[uid] = frozenset(x for x in declared if isinstance(x, str))
        parents[uid] = [
            (str(p.get("type")), str(p.get("id")))
            for p in item.get("parents") or ()
            if isinstance(p, Mapping)
        ]
    result: dict[tuple[str, str], frozenset[str]] = {}
    for uid in parents:
        seen: set[tuple[str, str]] = set()
        stack = [uid]
        labels: set[str] = set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            labels |= own.get(current, frozenset())
            stack.extend(parents.get(current, ()))
        if labels:
            result[uid] = frozenset(labels)
    return result


def strings_in(value: Any, budget: int = 10_000) -> list[str]:
    """The string leaves of an argument value (at most ``budget`` of them, depth first)."""
    out: list[str] = []
    stack = [value]
    while stack and len(out) < budget:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
    return out


def duplicate_ids(policies: Sequence[_cedar.ParsedPolicy]) -> list[str]:
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


def reason_of(policy: _cedar.ParsedPolicy) -> str:
    """A policy's ``@reason``, else a sentence naming it and where it is written (by its file's
    name within the directory, so a decision reads the same wherever the policies were
    loaded from: replay compares reasons too)."""
    reason = policy.annotations.get(REASON)
    if reason:
        return reason
    where = (
        "" if policy.policy_id.endswith(f":{policy.line}") else f" ({policy.name}:{policy.line})"
    )
    if REQUIRE_APPROVAL in policy.annotations:  # its permit holds the call: it does not allow it
        return f"held for approval by policy {policy.policy_id}{where}"
    verb = "forbids" if policy.effect == "forbid" else "permits"
    return f"policy {policy.policy_id}{where} {verb} this call"


def load_error(problems: Sequence[str]) -> PolicyLoadError:
    listing = "\n".join(f"  {p}" for p in problems)
    return PolicyLoadError(
        f"the policies could not be loaded ({len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''}):\n{listing}\n"
        "Fix them and run `agentfence policy validate` again; the active policies are unchanged.",
        tuple(problems),
    )


def policy_hash(files: Mapping[str, str], schema_text: str) -> str:
    material: dict[str, Any] = {
        "format": "agentfence.policyset/v1",
        "files": dict(sorted(files.items())),
        "schema": hashlib.sha256(schema_text.encode()).hexdigest(),
    }
    return hashlib.sha256(rfc8785.dumps(material)).hexdigest()


def _group_refs(entities_text: str | None) -> set[tuple[str, str]]:
    """Every (type, id) ``entities.json`` holds as an entity or names as a parent."""
    try:
        entities = json.loads(entities_text or "[]")
    except ValueError:  # reported by the entities check
        return set()
    refs: set[tuple[str, str]] = set()
    for entity in entities if isinstance(entities, list) else []:
        if not isinstance(entity, dict):
            continue
        for ref in [entity.get("uid"), *(entity.get("parents") or [])]:
            if isinstance(ref, dict) and isinstance(ref.get("id"), str):
                refs.add((str(ref.get("type")), ref["id"]))
    return refs


def _approver_groups(policies: Sequence[_cedar.ParsedPolicy]) -> list[tuple[Any, str, str]]:
    """(policy, annotation, group name) for each ``@require_approval`` / ``@overridable``."""
    named = []
    for policy in policies:
        for key in (REQUIRE_APPROVAL, OVERRIDABLE):
            name = policy.annotations.get(key)
            if name:
                named.append((policy, key, name))
    return named


def approver_group_type(
    policies: Sequence[_cedar.ParsedPolicy],
    entities_text: str | None,
    principal_types: Sequence[str] = ("User",),
) -> tuple[str, list[str]]:
    """The entity type of the approver groups the policies name, and any problem with it.

    Approver groups are ``Group`` entities unless ``entities.json`` has the named groups
    under another single type (``Team::"oncall-lead"``, for ``entity User in [Team]``): then
    they are of that type, and ``context.approver_groups`` is a set of it. Named groups found
    under two types are a problem: the set has one element type. A principal's type is never
    a group's.
    """
    refs = _group_refs(entities_text)
    found: dict[str, set[str]] = {}
    for policy, key, name in _approver_groups(policies):
        for kind in {t for t, i in refs if i == name and t not in principal_types}:
            found.setdefault(kind, set()).add(f'@{key}("{name}") at {policy.path}:{policy.line}')
    if not found:
        return "Group", []
    if len(found) == 1:
        return next(iter(found)), []
    shown = "; ".join(f"{kind}: {', '.join(sorted(at))}" for kind, at in sorted(found.items()))
    return "Group", [
        f"approver groups must all be of one entity type, but entities.json has the named "
        f"groups under {len(found)} types ({shown}); put them under one type"
    ]


def approver_group_notes(
    policies: Sequence[_cedar.ParsedPolicy], entities_text: str | None, group_type: str = "Group"
) -> list[str]:
    """Groups that ``@require_approval`` or ``@overridable`` name but no entity is in.

    A name no ``group_type`` entity or parent carries (a typo, say) means nobody is ever in
    it, so, under the usual approve policy (``principal in context.approver_groups``), nobody
    could approve.
    """
    refs = _group_refs(entities_text)
    notes = []
    for policy, key, name in _approver_groups(policies):
        if (group_type, name) in refs:
            continue
        other = sorted(t for t, i in refs if i == name)
        hint = f' ({other[0]}::"{name}" exists, but it is not a group)' if other else ""
        notes.append(
            f'{policy.path}:{policy.line}: @{key}("{name}") names a group no entity is in: '
            f'entities.json has no {group_type}::"{name}", as an entity or a parent{hint}, so '
            "nobody could approve these calls; fix the name or add the group"
        )
    return notes
