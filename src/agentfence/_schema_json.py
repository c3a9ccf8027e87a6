"""The schema :func:`agentfence._schema.generate_schema` writes, in Cedar's JSON schema format.

Cedar's reference ("JSON schema format") describes one object per namespace with
``entityTypes``, ``actions`` and ``commonTypes``; an action lists ``memberOf`` and
``appliesTo {principalTypes, resourceTypes, context}``, and a type is ``{"type": "String"}``,
``{"type": "Set", "element": …}``, ``{"type": "Record", "attributes": …}`` (an attribute
``"required": false`` when optional), ``{"type": "Entity", "name": …}``,
``{"type": "Extension", "name": "decimal"}`` or the name of a common type. The JSON is built
from the same tool catalog, argument types and flow parts as the text, not by parsing the text;
a test checks that Cedar reads both as the same schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentfence import _values
from agentfence._cedar_types import CedarType, Prim, SetOf
from agentfence._schema import (
    ALL_FLOW,
    APPROVE_ACTION,
    DATA_TYPE,
    PROVENANCE_TYPE,
    USAGE_TYPE,
    WINDOW_TYPE,
    FlowParts,
    check_tool_names,
    value_fields,
)
from agentfence.tools import ToolCatalog, ToolEntry

__all__ = ["generate_schema_json"]

Json = dict[str, Any]

_PROVENANCE_SETS = (
    "sources",
    "labels",
    "tools",
    "lists",
    "carries",
    "any_sources",
    "host_sources",
    "all_labels",
    "link_carries",
)
_DATA_SETS = ("labels", "tools", "returns", "carried", "link_carried")


def _prim(name: str) -> Json:
    if name == "decimal":
        return {"type": "Extension", "name": "decimal"}
    if name == "Bool":
        return {"type": "Boolean"}
    if name.startswith("Set<") and name.endswith(">"):
        return {"type": "Set", "element": _prim(name[4:-1])}
    return {"type": name}


def _type(ctype: CedarType) -> Json:
    if isinstance(ctype, Prim):
        return _prim(ctype.name)
    if isinstance(ctype, SetOf):
        return {"type": "Set", "element": _type(ctype.item)}
    return _record({f.name: (_type(f.type), f.required) for f in ctype.fields})


def _record(attributes: dict[str, tuple[Json, bool]]) -> Json:
    """A record type; an optional attribute carries ``"required": false``."""
    return {
        "type": "Record",
        "attributes": {
            name: t if required else {**t, "required": False}
            for name, (t, required) in attributes.items()
        },
    }


def _entity(name: str) -> Json:
    return {"type": "Entity", "name": name}


def _common(name: str) -> Json:
    return {"type": name}


def _common_types(flow: FlowParts) -> Json:
    """The common types of :func:`agentfence._schema._flow_types` and ``context.values``."""
    strings = _prim("Set<String>")
    types: Json = {}
    if "provenance" in flow or "resource_provenance" in flow:
        attrs = {name: (strings, True) for name in _PROVENANCE_SETS}
        types[PROVENANCE_TYPE] = _record({**attrs, "ambiguous": (_prim("Bool"), True)})
    if "data" in flow:
        types[DATA_TYPE] = _record({name: (strings, True) for name in _DATA_SETS})
    if "usage" in flow:
        types[WINDOW_TYPE] = _record(
            {
                "calls": (_prim("Long"), True),
                "tool_calls": (_prim("Long"), True),
                "total": (_prim("decimal"), True),
                "total_after": (_prim("decimal"), True),
            }
        )
        types[USAGE_TYPE] = _record({w: (_common(WINDOW_TYPE), True) for w in flow.windows})
    if flow.values is not None:
        wanted = flow.values.wants
        types[_values.VALUE_TYPE] = _record(
            {a: (_prim("String"), True) for a in _values.VALUE_ATTRIBUTES if wanted(a)}
        )
        types[_values.VALUES_TYPE] = _record(
            {
                a: (_prim(_values.set_attribute_type(a)), True)
                for a in _values.SET_ATTRIBUTES
                if wanted(a)
            }
        )
    return types


def _context(entry: ToolEntry, flow: FlowParts) -> Json:
    run = {
        "thread": (_prim("String"), True),
        "step": (_prim("Long"), True),
        "tool_call_id": (_prim("String"), True),
        "seed": (_prim("Long"), True),
    }
    attrs: dict[str, tuple[Json, bool]] = {
        "agent": (_entity("Agent"), True),
        "run": (_record(run), True),
        "args": (_type(entry.args_type), True),
    }
    if flow.input:
        attrs["input"] = (_type(entry.args_type), True)
    if "data" in flow:
        attrs["data"] = (_common(DATA_TYPE), True)
    if "provenance" in flow:
        fields = {f.name: (_common(PROVENANCE_TYPE), f.required) for f in entry.provenance_fields()}
        attrs["provenance"] = (_record(fields), True)
    if "resource_provenance" in flow:
        attrs["resource_provenance"] = (_common(PROVENANCE_TYPE), True)
    if "usage" in flow:
        attrs["usage"] = (_common(USAGE_TYPE), True)
    values = value_fields(entry, flow.values) if flow.values is not None else ()
    if values:
        kinds = {
            f.name: (_common(_values.VALUES_TYPE if f.is_set else _values.VALUE_TYPE), f.required)
            for f in values
        }
        attrs["values"] = (_record(kinds), True)
    return _record(attrs)


def generate_schema_json(
    catalog: ToolCatalog,
    principal_types: Sequence[str] = ("User",),
    flow: FlowParts = ALL_FLOW,
) -> Json:
    """The schema :func:`~agentfence._schema.generate_schema` writes for ``catalog``, in
    Cedar's JSON schema format (one namespace, the empty one).

    Declares every entity type itself: schema files (``*.cedarschema``) are text, and
    their declarations are not merged here.
    """
    check_tool_names(catalog)
    principals = list(principal_types)
    entity_types = sorted({"Agent", "Approval", "Group", *principal_types} | catalog.entity_types())
    actions: Json = {group: {} for group in sorted(catalog.groups())}
    for entry in sorted(catalog, key=lambda e: e.name):
        action: Json = {}
        if entry.spec.groups:
            action["memberOf"] = [{"id": g} for g in entry.spec.groups]
        action["appliesTo"] = {
            "principalTypes": principals,
            "resourceTypes": [entry.resource_type],
            "context": _context(entry, flow),
        }
        actions[entry.name] = action
    # Answering an approval request is itself an action that policy decides.
    approve = {
        "tool": (_prim("String"), True),
        "requester": (_entity(principal_types[0]), True),
        "approver_groups": ({"type": "Set", "element": _entity("Group")}, True),
        "risk": (_prim("String"), True),
    }
    actions[APPROVE_ACTION] = {
        "appliesTo": {
            "principalTypes": principals,
            "resourceTypes": ["Approval"],
            "context": _record(approve),
        }
    }
    namespace: Json = {"entityTypes": {name: {} for name in entity_types}, "actions": actions}
    common = _common_types(flow)
    if common:
        namespace["commonTypes"] = common
    return {"": namespace}
