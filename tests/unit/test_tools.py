"""Tool specs, the JSON Schema -> Cedar type mapping, and argument conversion."""

from __future__ import annotations

import datetime
import enum
from typing import Any, Literal

import cedarpy
import pytest
from langchain_core.tools import StructuredTool, tool
from pydantic import BaseModel, ConfigDict

from agentfence import Resource, ToolSpec, ToolSpecError, govern
from agentfence._schema import generate_schema
from agentfence.tools import ArgumentError, ToolCatalog


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    city: str
    zip_code: str | None = None


class Node(BaseModel):
    name: str
    children: list[Node] = []


@tool
def everything(
    name: str,
    count: int,
    ratio: float,
    flag: bool,
    tags: list[str],
    address: Address,
    color: Color,
    mode: Literal["fast", "slow"],
    when: datetime.date,
    note: str | None = None,
    limit: int = 10,
    extra: dict[str, Any] | None = None,
    tree: Node | None = None,
) -> str:
    """A tool with one argument of each kind."""
    return "ok"


def entry() -> Any:
    catalog = ToolCatalog.from_tools([everything])
    found = catalog.get("everything")
    assert found is not None
    return found


def test_type_mapping_is_documented_shape() -> None:
    schema = generate_schema(ToolCatalog.from_tools([everything]))
    for line in (
        '"name": String',
        '"count": Long',
        '"ratio": decimal',
        '"flag": Bool',
        '"tags": Set<String>',
        '"city": String',
        '"zip_code"?: String',
        '"color": String',
        '"mode": String',
        '"when": String',
        '"note"?: String',
        '"limit": Long',
    ):
        assert line in schema, line
    # Free-form objects and recursive models have no Cedar type: not visible to policies.
    assert '"extra"' not in schema
    assert '"children"' not in schema
    cedarpy.Schema.from_str(schema)  # the generated text is valid Cedar schema


def test_conversion_produces_cedar_values() -> None:
    args = {
        "name": "n",
        "count": 3,
        "ratio": 0.125,
        "flag": True,
        "tags": ["a", "b"],
        "address": {"city": "Oslo"},
        "color": "red",
        "mode": "fast",
        "when": "2026-01-02",
        "extra": {"anything": [1, 2]},
    }
    values = entry().cedar_args(args)
    assert values["ratio"] == {"__extn": {"fn": "decimal", "arg": "0.1250"}}
    assert values["address"] == {"city": "Oslo"}
    assert values["color"] == "red"
    assert values["when"] == "2026-01-02"
    assert values["limit"] == 10  # defaults are filled in by validation
    assert "note" not in values and "extra" not in values


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ({"count": "many"}, "argument 'count'"),
        ({"count": 2**63}, "argument 'count': integer"),
        ({"ratio": float("nan")}, "argument 'ratio': nan is not a finite number"),
        ({"ratio": 1e300}, "argument 'ratio'"),
        ({"color": "green"}, "argument 'color'"),
        ({"address": {"zip_code": "1"}}, "argument 'address.city'"),
    ],
)
def test_conversion_refuses_values_that_do_not_fit(bad: dict[str, Any], fragment: str) -> None:
    args = {
        "name": "n",
        "count": 3,
        "ratio": 1.0,
        "flag": True,
        "tags": [],
        "address": {"city": "Oslo"},
        "color": "red",
        "mode": "fast",
        "when": "2026-01-02",
        **bad,
    }
    with pytest.raises(ArgumentError) as info:
        entry().cedar_args(args)
    assert fragment in str(info.value)


def test_dict_schema_tool_is_checked_strictly() -> None:
    raw = StructuredTool.from_function(
        func=lambda **kw: "ok",
        name="raw",
        description="raw schema",
        args_schema={
            "type": "object",
            "properties": {"n": {"type": "integer"}, "s": {"type": "string", "default": "d"}},
            "required": ["n"],
        },
    )
    found = ToolCatalog.from_tools([raw]).get("raw")
    assert found is not None and found.model is None
    assert found.cedar_args({"n": 1}) == {"n": 1, "s": "d"}
    with pytest.raises(ArgumentError, match="argument 'n': '1' is not of type 'integer'"):
        found.cedar_args({"n": "1"})
    with pytest.raises(ArgumentError, match="argument 'n': is required but missing"):
        found.cedar_args({})


def test_govern_attaches_a_spec_that_reads_back() -> None:
    @tool
    def probe(target: str) -> str:
        """Probe."""
        return target

    same = govern(probe, groups=["read"], resource=Resource("Host", arg="target"))
    assert same is probe
    assert ToolSpec.of(probe) == ToolSpec(groups=("read",), resource=Resource("Host", "target"))
    assert ToolCatalog.from_tools([probe]).get("probe").resource_id({"target": "h1"}) == "h1"  # type: ignore[union-attr]


def test_tool_without_spec_acts_on_tool_entity() -> None:
    found = entry()
    assert found.resource_type == "Tool"
    assert found.resource_id({}) == "everything"


def test_resource_argument_may_be_a_dotted_path() -> None:
    @tool
    def ship(address: Address) -> str:
        """Ship."""
        return "ok"

    govern(ship, resource=Resource("City", arg="address.city"))
    found = ToolCatalog.from_tools([ship]).get("ship")
    assert found is not None
    assert found.resource_id({"address": {"city": "Oslo"}}) == "Oslo"
    with pytest.raises(ArgumentError, match="names the City resource but is missing"):
        found.resource_id({"address": {}})


def test_malformed_resource_is_refused() -> None:
    with pytest.raises(ToolSpecError, match="not a Cedar entity type name"):
        Resource("not a type", arg="x")
    with pytest.raises(ToolSpecError, match="empty or malformed"):
        Resource("Host", arg="a..b")


def test_malformed_group_is_refused() -> None:
    @tool
    def t(x: str) -> str:
        """T."""
        return x

    with pytest.raises(ToolSpecError, match="action group 'bad name' is not a valid name"):
        govern(t, groups=["bad name"])


def test_metadata_with_unknown_keys_is_refused() -> None:
    @tool
    def t(x: str) -> str:
        """T."""
        return x

    t.metadata = {"agentfence": {"group": ["read"]}}
    with pytest.raises(ToolSpecError, match=r"unknown key\(s\) \['group'\]"):
        ToolCatalog.from_tools([t])


def test_duplicate_tool_names_are_refused() -> None:
    with pytest.raises(ToolSpecError, match="two tools are named 'everything'"):
        ToolCatalog.from_tools([everything, everything])


@tool
def transfer(account: str, amount: int, memo: str = "") -> str:
    """A flat tool: one spelling per argument, nothing nested."""
    return "ok"


class _OpenArgs(BaseModel):
    model_config = ConfigDict(extra="allow")
    account: str


def test_key_smuggled_beside_plainly_spelled_arguments_is_refused() -> None:
    found = ToolCatalog.from_tools([transfer]).get("transfer")
    assert found is not None and found.input_keys is not None
    assert found.input_keys.single is not None  # the quick check applies to this tool
    with pytest.raises(ArgumentError, match=r"unknown argument\(s\) 'bcc'") as info:
        found.bind({"account": "a", "amount": 1, "bcc": "x"})
    assert "its arguments are 'account', 'amount', 'memo'" in str(info.value)
    with pytest.raises(ArgumentError, match=r"unknown argument\(s\) '3'"):
        found.bind({"account": "a", "amount": 1, 3: "x"})
    bound = found.bind({"account": "a", "amount": 1})
    assert bound.given == {"account", "amount"}  # memo came from the tool's default
    assert bound.values == {"account": "a", "amount": 1, "memo": ""}


def test_open_model_keeps_unknown_keys_under_the_quick_check() -> None:
    open_tool = StructuredTool.from_function(
        func=lambda **kw: "ok", name="open", description="open", args_schema=_OpenArgs
    )
    found = ToolCatalog.from_tools([open_tool]).get("open")
    assert found is not None and found.input_keys is not None
    assert found.input_keys.single is not None and found.input_keys.open
    assert found.bind({"account": "a", "note": "kept"}).given == {"account"}
