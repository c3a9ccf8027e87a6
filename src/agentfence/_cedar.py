"""The one module that imports ``cedarpy``.

It parses Cedar policy and schema text into pre-parsed handles, reports problems with the
file and line they come from (cedarpy's own messages carry no position), and evaluates one
request. Everything above it speaks agentfence's types.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cedarpy
from cedarpy import pst

ENGINE_VERSION = f"cedarpy/{importlib.metadata.version('cedarpy')}"
"""The evaluator recorded with every decision, so a replay can say what decided it."""


@dataclass(frozen=True)
class Statement:
    """One ``;``-terminated statement of a Cedar file, with the lines it spans."""

    path: str
    start_line: int
    end_line: int
    text: str


@dataclass(frozen=True)
class ParsedPolicy:
    """A parsed policy with the id agentfence gives it and where it was written."""

    policy_id: str
    path: str
    line: int
    effect: str
    annotations: Mapping[str, str]
    node: pst.Template
    name: str = ""
    """The file's name within the policy directory (``path`` is how messages show it)."""


def split_statements(text: str, path: str) -> list[Statement]:
    """Split Cedar text at each top-level ``;`` outside strings and comments.

    Cedar policies and schema declarations both end with ``;`` and the character appears
    nowhere else but inside string literals and ``//`` comments, so this is enough to give
    every statement its line numbers. The text of each statement keeps its leading comments
    and blank lines so that line numbers inside it stay true.
    """
    statements: list[Statement] = []
    start = 0
    i = 0
    n = len(text)
    depth = 0
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch == "/" and i + 1 < n and text[i + 1] == "/":
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        elif ch == ";" and depth <= 0:
            statements.append(_statement(text, start, i + 1, path))
            start = i + 1
        i += 1
    tail = text[start:]
    if strip_comments(tail).strip():
        statements.append(_statement(text, start, n, path))
    return statements


def _statement(text: str, start: int, end: int, path: str) -> Statement:
    chunk = text[start:end]
    first_code = _first_code_offset(chunk)
    start_line = text.count("\n", 0, start + first_code) + 1
    end_line = text.count("\n", 0, end) + 1
    return Statement(path=path, start_line=start_line, end_line=end_line, text=chunk)


def _first_code_offset(chunk: str) -> int:
    """Offset of the first character that is neither white space nor inside a comment."""
    i = 0
    n = len(chunk)
    while i < n:
        if chunk[i].isspace():
            i += 1
        elif chunk.startswith("//", i):
            nl = chunk.find("\n", i)
            i = n if nl < 0 else nl + 1
        else:
            return i
    return 0


def strip_comments(chunk: str) -> str:
    return "\n".join(line.split("//", 1)[0] for line in chunk.splitlines())


def parse_policy_file(
    text: str, path: str, *, name: str | None = None
) -> tuple[list[ParsedPolicy], list[str]]:
    """Parse one ``.cedar`` file into policies, or into ``file:line: message`` problems.

    Each statement is parsed on its own so that a syntax error names the line where the
    failing policy starts. ``path`` is how messages show the file; ``name`` (default:
    ``path``) is how ids show it: a policy's id is its ``@id`` annotation, else
    ``name:line``, so ids do not depend on where the directory is.
    """
    policies: list[ParsedPolicy] = []
    problems: list[str] = []
    for stmt in split_statements(text, path):
        try:
            tree = cedarpy.policies_to_pst(stmt.text)
        except ValueError as exc:
            problems.append(
                f"{path}:{stmt.start_line}: {exc} (in the policy on lines "
                f"{stmt.start_line}-{stmt.end_line})"
            )
            continue
        if tree.templates:
            problems.append(
                f"{path}:{stmt.start_line}: policy templates (?principal, "
                "?resource) are not supported; write a static policy"
            )
            continue
        for node in tree.static_policies.values():
            annotations = dict(node.annotations)
            policy_id = annotations.get("id") or f"{name or path}:{stmt.start_line}"
            policies.append(
                ParsedPolicy(
                    policy_id=policy_id,
                    path=path,
                    line=stmt.start_line,
                    effect=node.effect,
                    annotations=MappingProxyType(annotations),
                    node=dataclasses.replace(node, id=policy_id),
                    name=name or path,
                )
            )
    return policies, problems


def build_policy_set(policies: Sequence[ParsedPolicy]) -> cedarpy.PolicySet:
    """Combine parsed policies into one pre-parsed handle keyed by agentfence's ids."""
    tree = pst.PolicySet(
        templates={},
        static_policies={p.policy_id: p.node for p in policies},
        template_links=(),
    )
    return cedarpy.PolicySet.from_pst(tree)


def validate_policies(policies: Sequence[ParsedPolicy], schema: cedarpy.Schema) -> list[str]:
    """Validate each policy against the schema; return ``file:line: message`` problems."""
    problems: list[str] = []
    for policy in policies:
        text = str(
            cedarpy.PolicySet.from_pst(
                pst.PolicySet(
                    templates={}, static_policies={policy.policy_id: policy.node}, template_links=()
                )
            )
        )
        result = cedarpy.validate_policies(text, schema)
        for error in result.errors:
            message = error.error.replace("policy `policy0`", f"policy `{policy.policy_id}`")
            problems.append(f"{policy.path}:{policy.line}: {message}")
    return problems


def parse_schema(text: str, sources: Sequence[Statement]) -> cedarpy.Schema:
    """Parse schema text; on failure raise ``ValueError`` naming the file and line.

    ``sources`` are the statements the text was assembled from, in order: the first prefix
    of them that fails to parse holds the error.
    """
    try:
        return cedarpy.Schema.from_str(text)
    except ValueError as exc:
        raise ValueError(_locate_schema_error(sources, str(exc))) from exc


def _locate_schema_error(sources: Sequence[Statement], message: str) -> str:
    prefix = ""
    for stmt in sources:
        prefix += stmt.text + "\n"
        try:
            cedarpy.Schema.from_str(prefix)
        except ValueError as exc:
            return f"{stmt.path}:{stmt.start_line}: {exc}"
    return message


def parse_entities(text: str, schema: cedarpy.Schema, path: str) -> cedarpy.Entities:
    """Parse a Cedar entities JSON document, validated against the schema."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    try:
        return cedarpy.Entities.from_json_str(text, schema)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


# The stored form of a Cedar request (the decision log's request blob): compact JSON, sorted
# keys, UTF-8. Not RFC 8785: Cedar longs may exceed the integer range RFC 8785 allows.
_STORED = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stored_form(request: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> bytes:
    """A request's (or a list of requests') stored form: compact JSON, sorted keys, UTF-8."""
    return _STORED.encode(request).encode()


def prepare(request: Mapping[str, Any]) -> tuple[Mapping[str, Any], bytes | None]:
    """The request as it is given to Cedar, its context encoded once, and its stored form.

    Both come from one encoding of the context: Cedar parses the context's JSON text (the
    order of a record's keys means nothing to it), and the stored form is the same text
    inside the request's, byte for byte what :func:`stored_form` makes of the request (a
    JSON object with sorted keys is its keys in order, each with its value's encoding).
    When the context is not a dict, or the text is not UTF-8 (a lone surrogate), the request
    is given as it is and the stored form is left to :func:`stored_form` (``None``).
    """
    context = request.get("context")
    if type(context) is not dict:
        return request, None
    text = _STORED.encode(context)
    encode = _STORED.encode
    members = [
        encode(key) + ":" + (text if key == "context" else encode(request[key]))
        for key in sorted(request)
    ]
    try:
        stored = ("{" + ",".join(members) + "}").encode()
    except UnicodeEncodeError:
        return request, None
    return {**request, "context": text}, stored


@dataclass(frozen=True)
class Evaluation:
    """What Cedar answered for one request, before agentfence interprets it."""

    decision: str  # "Allow", "Deny" or "NoDecision"
    determining: tuple[str, ...]
    errors: tuple[str, ...]


def is_authorized(
    request: Mapping[str, Any],
    policy_set: cedarpy.PolicySet,
    entities: cedarpy.Entities,
    schema: cedarpy.Schema,
) -> Evaluation:
    """Evaluate one request with pre-parsed handles.

    A request may carry ``entities`` of its own (a verified principal and its groups): they
    are added to the base set for this request only, validated by the schema. Entities that
    do not fit (a duplicate of a base entity, a type the schema does not allow as a parent)
    give no decision, which the caller denies. Its ``context`` may be its JSON text
    (:func:`prepare`).
    """
    if "entities" in request:  # copied only then: most requests carry none
        request = dict(request)
        scoped = request.pop("entities")
        if scoped:
            try:
                entities = entities.with_added_json_str(json.dumps(scoped), schema)
            except ValueError as exc:
                return Evaluation(
                    decision="NoDecision",
                    determining=(),
                    errors=(f"the request's own entities (the principal's groups): {exc}",),
                )
    batch = [request if isinstance(request, dict) else dict(request)]
    (result,) = cedarpy.is_authorized_batch(batch, policy_set, entities, schema=schema)
    diagnostics = result.diagnostics
    return Evaluation(
        decision=result.decision.value,
        determining=tuple(diagnostics.reasons),
        errors=tuple(diagnostics.errors),
    )


def is_authorized_batch(
    requests: list[dict[str, Any]],
    policy_set: cedarpy.PolicySet,
    entities: cedarpy.Entities,
    schema: cedarpy.Schema,
) -> list[Evaluation]:
    """Evaluate requests that carry no entities of their own in one call, in order.

    Each request is evaluated on its own, exactly as :func:`is_authorized` would evaluate it;
    the one call saves the per-call work between Python and the engine. A request's
    ``context`` may be given as its JSON text (what cedarpy makes of a dict). Raises
    ``TypeError``, ``KeyError`` or ``ValueError`` when a request cannot be read at all (a
    principal that is neither text nor a type and id): the whole batch is refused then.
    """
    results = cedarpy.is_authorized_batch(requests, policy_set, entities, schema=schema)
    return [
        Evaluation(
            decision=result.decision.value,
            determining=tuple(result.diagnostics.reasons),
            errors=tuple(result.diagnostics.errors),
        )
        for result in results
    ]


def empty_entities(schema: cedarpy.Schema) -> cedarpy.Entities:
    """An empty, pre-parsed entity set."""
    return cedarpy.Entities.from_json_str("[]", schema)


def iter_files(directory: Path, suffix: str) -> Iterator[Path]:
    """Files with the suffix directly in the directory, in a stable order."""
    yield from sorted(p for p in directory.glob(f"*{suffix}") if p.is_file())
