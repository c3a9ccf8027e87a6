"""Tools described by a JSON Schema alone (MCP tools): validation and annotation groups."""

from __future__ import annotations

from typing import Any

import pytest

from agentfence._mcp_tools import SchemaCheck, closed, mcp_groups
from agentfence.errors import ArgumentError, ToolSpecError

ORDER = {
    "type": "object",
    "properties": {
        "to": {"type": "string"},
        "item": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            "required": ["sku"],
        },
    },
    "required": ["to"],
}


def test_unannotated_mcp_tool_counts_as_destructive_and_open_world() -> None:
    assert mcp_groups(None) == ("mcp", "mcp_destructive", "mcp_open_world")


def test_read_only_hint_leaves_destructive_out() -> None:
    hints = {"readOnlyHint": True, "openWorldHint": False}
    assert mcp_groups(hints) == ("mcp", "mcp_read_only")


def test_contradictory_hints_keep_the_destructive_group() -> None:
    # A server claiming read-only and destructive at once stays under a forbid on either.
    hints = {"readOnlyHint": True, "destructiveHint": True, "idempotentHint": True}
    assert mcp_groups(hints) == (
        "mcp",
        "mcp_read_only",
        "mcp_destructive",
        "mcp_idempotent",
        "mcp_open_world",
    )


def test_nested_key_the_schema_does_not_declare_is_refused() -> None:
    check = SchemaCheck("order", ORDER)
    check.check({"to": "a", "item": {"sku": "x", "qty": 1}})
    with pytest.raises(ArgumentError) as caught:
        check.check({"to": "a", "item": {"sku": "x", "ship_to": "attacker"}})
    assert "argument 'item'" in str(caught.value)
    assert "'ship_to' was unexpected" in str(caught.value)


def test_schema_that_allows_more_keys_keeps_allowing_them() -> None:
    check = SchemaCheck("open", {**ORDER, "additionalProperties": True})
    check.check({"to": "a", "extra": 1})


def test_property_named_properties_is_not_mistaken_for_a_keyword() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"properties": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    out = closed(schema)
    assert out["additionalProperties"] is False
    assert out["properties"]["properties"]["additionalProperties"] is False
    assert "additionalProperties" not in out["properties"]
    assert schema == {
        "type": "object",
        "properties": {"properties": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }


def test_malformed_schema_names_the_tool() -> None:
    with pytest.raises(ToolSpecError) as caught:
        SchemaCheck("wipe", {"type": "object", "properties": {"path": {"type": 7}}})
    assert "tool 'wipe': its input schema is not a valid JSON Schema" in str(caught.value)
    assert "properties/path/type" in str(caught.value)


def test_schema_that_is_not_an_object_names_the_tool() -> None:
    with pytest.raises(ToolSpecError) as caught:
        SchemaCheck("echo", {"type": "string"})
    assert "tool 'echo': its input schema must be a JSON Schema object" in str(caught.value)
