"""Tools described by a JSON Schema alone, such as MCP tools loaded by langchain-mcp-adapters.

An MCP tool (MCP specification, "Tools") declares its arguments as a JSON Schema
(``inputSchema``) and its behaviour as hints (``annotations``). langchain-mcp-adapters turns
it into a LangChain tool whose ``args_schema`` is that schema as a dict and whose
``metadata`` holds the annotations; such a tool passes its arguments to the server exactly as
sent, unvalidated. So the fence validates them here, with ``jsonschema``, against a
*closed* copy of the schema: a key the schema does not declare is refused at every level,
because the server would get it and policy would not see it.

The annotations become action groups that policies can name (:data:`MCP_GROUPS`). They are
the server's own claims: trust them only as far as you trust the server.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from agentfence.errors import ArgumentError, ToolSpecError

__all__ = [
    "MCP_GROUP",
    "MCP_GROUPS",
    "SchemaCheck",
    "is_mcp_tool",
    "mcp_groups",
]

MCP_GROUP = "mcp"
"""The action group of every tool loaded from an MCP server."""

MCP_GROUPS = {
    "readOnlyHint": "mcp_read_only",
    "destructiveHint": "mcp_destructive",
    "idempotentHint": "mcp_idempotent",
    "openWorldHint": "mcp_open_world",
}
"""The action group each MCP tool annotation (hint) puts a tool in, when the hint holds."""

_ADAPTER_MODULE = "langchain_mcp_adapters"


def is_mcp_tool(tool: Any) -> bool:
    """Whether a LangChain tool was made by langchain-mcp-adapters from an MCP tool."""
    run = getattr(tool, "coroutine", None)
    module = getattr(run, "__module__", None) or ""
    return module == _ADAPTER_MODULE or module.startswith(_ADAPTER_MODULE + ".")


def mcp_groups(annotations: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The action groups of an MCP tool with these annotations (the adapter's ``metadata``).

    Absent hints take the MCP specification's defaults (``readOnlyHint`` false,
    ``destructiveHint`` true, ``idempotentHint`` false, ``openWorldHint`` true), so a tool
    that says nothing counts as destructive and open-world. A tool that claims both read-only
    and destructive is put in both groups, so a forbid on either still applies.
    """
    hints = annotations or {}
    read_only = hints.get("readOnlyHint") is True
    destructive = hints.get("destructiveHint")
    groups = [MCP_GROUP]
    if read_only:
        groups.append(MCP_GROUPS["readOnlyHint"])
    if destructive is True or (destructive is None and not read_only):
        groups.append(MCP_GROUPS["destructiveHint"])
    if hints.get("idempotentHint") is True:
        groups.append(MCP_GROUPS["idempotentHint"])
    if hints.get("openWorldHint") is not False:
        groups.append(MCP_GROUPS["openWorldHint"])
    return tuple(groups)


class SchemaCheck:
    """Validates a call's arguments against a tool's JSON Schema, closed to undeclared keys."""

    def __init__(self, tool: str, schema: Mapping[str, Any]) -> None:
        from jsonschema import validators  # imported here: most tools have a pydantic schema
        from jsonschema.exceptions import SchemaError

        if not isinstance(schema, Mapping) or schema.get("type", "object") != "object":
            raise ToolSpecError(
                f"tool {tool!r}: its input schema must be a JSON Schema object with "
                f'"type": "object", got {_short(schema)}; fix the tool\'s definition '
                "(for an MCP tool, its inputSchema on the server)"
            )
        cls = validators.validator_for(schema, default=validators.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "(top level)"
            raise ToolSpecError(
                f"tool {tool!r}: its input schema is not a valid JSON Schema ({exc.message}, "
                f"at {where}); fix the tool's definition (for an MCP tool, its inputSchema on "
                "the server)"
            ) from None
        self._validator = cls(closed(schema))

    def check(self, args: Mapping[str, Any]) -> None:
        """Raise :class:`ArgumentError` naming the first argument that does not fit."""
        error = next(iter(sorted(self._validator.iter_errors(dict(args)), key=_order)), None)
        if error is None:
            return
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, Mapping):
            missing = [k for k in error.validator_value if k not in error.instance]
            name = ".".join(p for p in (path, str(missing[0]) if missing else "") if p)
            raise ArgumentError(name, "is required but missing")
        if error.validator == "additionalProperties":
            raise ArgumentError(
                path,
                f"{error.message}: the tool's schema does not declare them, so policy would not "
                "see them; send only the declared arguments",
            )
        raise ArgumentError(path, error.message)


def closed(schema: Any) -> Any:
    """A copy of the schema in which an object that declares properties and says nothing of
    others (``additionalProperties`` absent) admits no others."""
    out = copy.deepcopy(schema)
    _close(out)
    return out


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_DATA = ("const", "enum", "default", "examples")


def _close(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _close(item)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("properties"), dict) and not (
        {"additionalProperties", "patternProperties", "unevaluatedProperties"} & set(node)
    ):
        node["additionalProperties"] = False
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for sub in value.values():  # names map to schemas: close each schema
                _close(sub)
        elif key not in _DATA:
            _close(value)


def _order(error: Any) -> tuple[int, str]:
    return (len(error.absolute_path), str(list(error.absolute_path)))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
