"""The generated schema in Cedar's JSON schema format (``agentfence policy schema --json``).

Cedar reads the JSON and the text as the same schema, and validates policies the same way
against both, for every set of context attributes a policy set can name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cedarpy
import pytest
from langchain_core.tools import tool
from pydantic import BaseModel

from agentfence import Resource, govern
from agentfence._schema import ALL_FLOW, FlowParts, generate_schema
from agentfence._schema_json import generate_schema_json
from agentfence.demo.tools import TOOLS
from agentfence.errors import PolicyLoadError
from agentfence.tools import ToolCatalog

ROOT = Path(__file__).resolve().parents[2]


class Address(BaseModel):
    city: str
    zip_code: str | None = None


@tool
def ship(
    to: str, items: list[str], count: int, express: bool, price: float, address: Address
) -> str:
    """Ship items to an address."""
    return "shipped"


govern(ship, groups=["orders"], resource=Resource("Order", arg="to"))

CATALOGS = {
    "demo": ToolCatalog.from_tools(TOOLS),
    "nested": ToolCatalog.from_tools([*TOOLS, ship]),
}
FLOWS = {
    "all": ALL_FLOW,
    "none": FlowParts.of([]),
    "usage-day-values-email": FlowParts.of(
        [
            "permit(principal, action, resource) when { context.usage.day.calls < 3 && "
            'context.values.to.email_domain == "acme.example" };'
        ]
    ),
    "provenance-data": FlowParts.of(
        [
            'forbid(principal, action, resource) when { context.data.labels.contains("pii") '
            "&& context.provenance has to && context.resource_provenance.ambiguous };"
        ]
    ),
}


def as_cedar(schema: cedarpy.Schema) -> str:
    # Cedar renders the JSON form's built-in types fully qualified (__cedar::String).
    return str(schema).replace("__cedar::", "")


@pytest.mark.parametrize("flow", FLOWS, ids=str)
@pytest.mark.parametrize("catalog", CATALOGS, ids=str)
def test_cedar_reads_the_json_and_the_text_as_the_same_schema(catalog: str, flow: str) -> None:
    tools, parts = CATALOGS[catalog], FLOWS[flow]
    data = generate_schema_json(tools, ("User",), parts)
    from_json = cedarpy.Schema.from_json_str(json.dumps(data))
    from_text = cedarpy.Schema.from_str(generate_schema(tools, (), ("User",), parts))
    assert as_cedar(from_json) == as_cedar(from_text)


def test_the_json_has_cedars_json_schema_shape() -> None:
    data = generate_schema_json(CATALOGS["nested"])
    assert set(data) == {""}
    namespace = data[""]
    assert set(namespace) == {"entityTypes", "actions", "commonTypes"}
    assert {"Agent", "Approval", "Group", "User", "Order", "Tool"} <= set(namespace["entityTypes"])
    action = namespace["actions"]["ship"]
    assert action["memberOf"] == [{"id": "orders"}]
    assert action["appliesTo"]["principalTypes"] == ["User"]
    assert action["appliesTo"]["resourceTypes"] == ["Order"]
    args = action["appliesTo"]["context"]["attributes"]["args"]["attributes"]
    assert args["items"] == {"type": "Set", "element": {"type": "String"}}
    assert args["count"] == {"type": "Long"} and args["express"] == {"type": "Boolean"}
    assert args["price"] == {"type": "Extension", "name": "decimal"}
    assert args["address"]["attributes"]["zip_code"] == {"type": "String", "required": False}
    context = action["appliesTo"]["context"]["attributes"]
    assert context["agent"] == {"type": "Entity", "name": "Agent"}
    assert context["usage"] == {"type": "AgentfenceUsage"}
    assert namespace["actions"]["orders"] == {}


REFUND = 'permit(principal, action == Action::"refund", resource) when { context.args.%s };'
GOOD = REFUND % 'amount.lessThanOrEqual(decimal("50.0"))'
# A misspelt attribute: a policy that would never match must fail validation in both forms.
BAD = REFUND % 'amont.lessThanOrEqual(decimal("50.0"))'


@pytest.mark.parametrize(("policy", "passes"), [(GOOD, True), (BAD, False)], ids=["good", "bad"])
def test_a_policy_validates_the_same_against_the_json_and_the_text(
    policy: str, passes: bool
) -> None:
    catalog = CATALOGS["demo"]
    text = cedarpy.validate_policies(policy, generate_schema(catalog))
    from_json = cedarpy.validate_policies(policy, json.dumps(generate_schema_json(catalog)))
    assert text.validation_passed is passes
    assert from_json.validation_passed is passes
    assert [e.error for e in from_json.errors] == [e.error for e in text.errors]
    if not passes:
        assert "attribute `args.amont` in context" in from_json.errors[0].error


def test_a_tool_named_approve_is_refused_in_json_too() -> None:
    @tool
    def approve(note: str) -> str:
        """Approve."""
        return note

    with pytest.raises(PolicyLoadError, match="a tool is named 'approve', which is the action"):
        generate_schema_json(ToolCatalog.from_tools([approve]))


def schema_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentfence.cli", "policy", "schema", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def test_policy_schema_json_prints_what_cedar_loads(tmp_path: Path) -> None:
    tools = "agentfence.demo.tools:TOOLS"
    result = schema_cli("--tools", tools, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == generate_schema_json(CATALOGS["demo"])
    # With a policy directory, only the context the policies name is declared.
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "p.cedar").write_text(
        'permit(principal, action == Action::"refund", resource) '
        "when { context.usage.day.calls < 5 };\n"
    )
    narrowed = schema_cli("--tools", tools, "--json", "--policies", policies)
    assert narrowed.returncode == 0, narrowed.stderr
    namespace = json.loads(narrowed.stdout)[""]
    assert set(namespace["commonTypes"]) == {"AgentfenceUsage", "AgentfenceUsageWindow"}
    text = schema_cli("--tools", tools, "--policies", policies)
    assert as_cedar(cedarpy.Schema.from_json_str(narrowed.stdout)) == as_cedar(
        cedarpy.Schema.from_str(text.stdout)
    )


def test_policy_schema_json_refuses_schema_files_it_cannot_convert() -> None:
    demo = ROOT / "src/agentfence/demo/policies"
    result = schema_cli("--tools", "agentfence.demo.tools:TOOLS", "--json", "--policies", demo)
    assert result.returncode == 2
    assert "has schema files (desk.cedarschema) in the Cedar schema syntax" in result.stderr
    assert "run `agentfence policy schema` without --json" in result.stderr
    assert result.stdout == ""
