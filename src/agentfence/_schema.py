"""The Cedar schema agentfence generates from the governed tools, and which data-flow parts
of the context a policy set names (so only those are declared and computed).

:func:`generate_schema` declares each tool as an action whose ``context`` is ``{agent, run,
args}`` plus the parts :class:`FlowParts` finds named in the policies (``data``,
``provenance``, ``resource_provenance``, ``usage``, ``values``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agentfence import _cedar, _values
from agentfence._cedar_types import render_type
from agentfence.errors import PolicyLoadError
from agentfence.tools import ToolCatalog, ToolEntry

__all__ = [
    "ALL_FLOW",
    "APPROVE_ACTION",
    "DATA_TYPE",
    "FLOW_ROOTS",
    "PROVENANCE_TYPE",
    "USAGE_TYPE",
    "USAGE_WINDOWS",
    "WINDOW_TYPE",
    "FlowParts",
    "check_tool_names",
    "generate_schema",
    "value_fields",
]

APPROVE_ACTION = "approve"

FLOW_ROOTS = ("data", "provenance", "resource_provenance", "usage")
USAGE_WINDOWS = ("thread", "minute", "hour", "day")
# A policy names a data-flow attribute as context.usage, context["usage"] or context has usage.
_FLOW_REF = re.compile(
    r'\bcontext\s*(?:\.\s*|\[\s*"|\s+has\s+"?)(data|provenance|resource_provenance|usage)\b'
)
# context.values is not a data-flow root (it needs no thread history), but is declared and
# computed the same way: only for policy sets that name it.
_VALUES_REF = re.compile(r'\bcontext\s*(?:\.\s*|\[\s*"|\s+has\s+"?)values\b')
# context.input: the arguments again, under the name the Cedar conventions for agent tools
# (MCP tool definitions turned into a Cedar schema) give them, for policies written that way.
_INPUT_REF = re.compile(r'\bcontext\s*(?:\.\s*|\[\s*"|\s+has\s+"?)input\b')
_WINDOW_REF = re.compile(
    r'\busage"?\s*\]?\s*(?:\.\s*|\[\s*"|\s+has\s+"?)(thread|minute|hour|day)\b'
)


@dataclass(frozen=True)
class FlowParts:
    """Which data-flow attributes the policies use, so only those are declared and computed.

    Every call pays for the attributes in its Cedar request (computing them, and Cedar
    reading and validating them), so a policy set that never names ``context.usage`` does not
    get it. ``ALL`` is what ``agentfence policy schema`` shows without policies.
    """

    roots: frozenset[str]
    windows: tuple[str, ...]
    values: _values.Selection | None = None
    """What of ``context.values`` the policies name (``None``: they do not name it)."""
    input: bool = False
    """Whether the policies name ``context.input`` (the arguments under the conventions'
    name, the same record as ``context.args``)."""

    def __contains__(self, root: object) -> bool:
        return (
            root in self.roots
            or (root == "values" and self.values is not None)
            or (root == "input" and self.input)
        )

    @classmethod
    def of(cls, texts: Iterable[str]) -> FlowParts:
        """The parts the policy texts name (``context.usage.day…``, ``context has data``…)."""
        roots: set[str] = set()
        windows: set[str] = set()
        codes: list[str] = []
        for text in texts:
            code = "\n".join(line.split("//", 1)[0] for line in text.splitlines())
            roots.update(_FLOW_REF.findall(code))
            windows.update(_WINDOW_REF.findall(code))
            codes.append(code)
        if "usage" in roots and not windows:
            windows = set(USAGE_WINDOWS)
        values = None
        if any(_VALUES_REF.search(code) for code in codes):
            values = _values.Selection.of(codes)
        return cls(
            frozenset(roots),
            tuple(w for w in USAGE_WINDOWS if w in windows),
            values,
            input=any(_INPUT_REF.search(code) for code in codes),
        )


ALL_FLOW = FlowParts(frozenset(FLOW_ROOTS), USAGE_WINDOWS, values=_values.ALL, input=True)


PROVENANCE_TYPE = "AgentfenceProvenance"
DATA_TYPE = "AgentfenceData"
USAGE_TYPE = "AgentfenceUsage"
WINDOW_TYPE = "AgentfenceUsageWindow"


def _flow_types(flow: FlowParts) -> list[str]:
    """Common types (Cedar schema, "Common type declarations") the tools' contexts share."""
    types: list[str] = []
    if "provenance" in flow or "resource_provenance" in flow:
        types.append(
            f"type {PROVENANCE_TYPE} = {{\n"
            '  "sources": Set<String>, "labels": Set<String>, "tools": Set<String>,\n'
            '  "lists": Set<String>, "carries": Set<String>, "any_sources": Set<String>,\n'
            '  "host_sources": Set<String>, "all_labels": Set<String>,\n'
            '  "link_carries": Set<String>, "ambiguous": Bool\n'
            "};"
        )
    if "data" in flow:
        types.append(
            f"type {DATA_TYPE} = {{\n"
            '  "labels": Set<String>, "tools": Set<String>, "returns": Set<String>,\n'
            '  "carried": Set<String>, "link_carried": Set<String>\n'
            "};"
        )
    if "usage" in flow:
        types.append(
            f"type {WINDOW_TYPE} = {{\n"
            '  "calls": Long, "tool_calls": Long, "total": decimal, "total_after": decimal\n'
            "};"
        )
        windows = ",\n".join(f'  "{w}": {WINDOW_TYPE}' for w in flow.windows)
        types.append(f"type {USAGE_TYPE} = {{\n{windows}\n}};")
    return types


def _provenance_type(entry: ToolEntry) -> str:
    fields = entry.provenance_fields()
    if not fields:
        return "{}"
    inner = ",\n".join(
        f'      "{f.name}"{"" if f.required else "?"}: {PROVENANCE_TYPE}' for f in fields
    )
    return "{\n" + inner + "\n    }"


_DECLARED = re.compile(r"^\s*entity\s+(.+?)(?:\s+in\s|\s*[={;]|$)", re.DOTALL)


def _declared_entity_types(sources: Sequence[_cedar.Statement]) -> set[str]:
    names: set[str] = set()
    for stmt in sources:
        code = _cedar.strip_comments(stmt.text)
        match = _DECLARED.match(code)
        if match:
            names.update(n.strip().strip('"') for n in match.group(1).split(","))
    return names


def check_tool_names(catalog: ToolCatalog) -> None:
    """Refuse a tool named as the action agentfence reserves for approvers' answers."""
    if catalog.get(APPROVE_ACTION) is not None:
        raise PolicyLoadError(
            f"a tool is named {APPROVE_ACTION!r}, which is the action agentfence reserves for "
            "approvers' answers; rename the tool"
        )


def generate_schema(
    catalog: ToolCatalog,
    sources: Sequence[_cedar.Statement] = (),
    principal_types: Sequence[str] = ("User",),
    flow: FlowParts = ALL_FLOW,
    group_type: str = "Group",
) -> str:
    """The Cedar schema text for the governed tools (declarations the schema files lack).

    Each tool is an action; its ``context`` is ``{agent, run, args}`` where ``args`` is the
    type derived from the tool's argument schema, plus the data-flow attributes ``flow``
    names (``data``, ``provenance`` with one entry per string or numeric argument,
    ``resource_provenance``, ``usage``) and ``values`` (typed views of each string or set
    of strings argument, ``agentfence._values``). Entity types used by principals, agents and
    resources are declared here unless a schema file declares them. ``group_type`` is the
    entity type of approver groups (``context.approver_groups`` of ``Action::"approve"``).
    """
    check_tool_names(catalog)
    declared = _declared_entity_types(sources)
    needed = sorted(
        ({"Agent", "Approval", "Group", group_type, *principal_types} | catalog.entity_types())
        - declared
    )
    lines = ["// Generated by agentfence from the governed tools."]
    lines += [f"entity {name};" for name in needed]
    lines += _flow_types(flow)
    if flow.values is not None:
        lines += _values.schema_types(flow.values)
    lines += [f'action "{group}";' for group in sorted(catalog.groups())]
    principals = ", ".join(principal_types)
    for entry in sorted(catalog, key=lambda e: e.name):
        member = ""
        if entry.spec.groups:
            member = " in [" + ", ".join(f'"{g}"' for g in entry.spec.groups) + "]"
        context = [
            '    "agent": Agent',
            '    "run": { "thread": String, "step": Long, "tool_call_id": String, "seed": Long }',
            f'    "args": {render_type(entry.args_type, "    ")}',
        ]
        if flow.input:
            context.append(f'    "input": {render_type(entry.args_type, "    ")}')
        if "data" in flow:
            context.append(f'    "data": {DATA_TYPE}')
        if "provenance" in flow:
            context.append(f'    "provenance": {_provenance_type(entry)}')
        if "resource_provenance" in flow:
            context.append(f'    "resource_provenance": {PROVENANCE_TYPE}')
        if "usage" in flow:
            context.append(f'    "usage": {USAGE_TYPE}')
        fields = value_fields(entry, flow.values) if flow.values is not None else ()
        if fields:
            context.append(f'    "values": {_values.context_type(fields)}')
        lines.append(
            f'action "{entry.name}"{member} appliesTo {{\n'
            f"  principal: [{principals}],\n"
            f"  resource: [{entry.resource_type}],\n"
            "  context: {\n" + ",\n".join(context) + "\n  }\n"
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
        f'    "approver_groups": Set<{group_type}>,\n'
        '    "risk": String\n'
        "  }\n"
        "};"
    )
    return "\n".join(lines) + "\n"


def value_fields(
    entry: ToolEntry, selection: _values.Selection = _values.ALL
) -> tuple[_values.ValueField, ...]:
    """The tool's top-level ``String`` and ``Set<String>`` arguments the selection names, in
    schema order."""
    fields: list[_values.ValueField] = []
    for f in entry.args_type.fields:
        shown = render_type(f.type)
        if shown in ("String", "Set<String>") and selection.wants(f.name):
            fields.append(_values.ValueField(f.name, f.required, shown != "String"))
    return tuple(fields)
