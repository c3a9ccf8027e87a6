"""Policy portability: arguments also under ``context.input`` (the Cedar conventions for agent
tools), so a policy written that way decides exactly as one written with ``context.args``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import StructuredTool

from agentfence import Fence, MemoryLog
from agentfence._schema import FlowParts
from agentfence.errors import PolicyLoadError

REFUND_SCHEMA = {
    "type": "object",
    "properties": {"order": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["order", "amount"],
}

AGENTFENCE_STYLE = """
@id("refund-small")
permit (principal, action == Action::"refund", resource)
when { context.args.amount.lessThanOrEqual(decimal("500.0")) && context.args.order like "o-*" };
"""

CONVENTIONS_STYLE = """
@id("refund-small")
permit (principal, action == Action::"refund", resource)
when { context.input.amount.lessThanOrEqual(decimal("500.0")) && context.input.order like "o-*" };
"""

CALLS: list[dict[str, Any]] = [
    {"order": "o-1", "amount": 40},
    {"order": "o-2", "amount": 500},
    {"order": "o-3", "amount": 500.0001},
    {"order": "x-4", "amount": 10},
    {"order": "o-5", "amount": 9000},
    {"order": "o-6", "amount": "12"},  # not a number: refused before either policy
    {"order": "o-7", "amount": 1, "approved_by": "me"},  # undeclared key: refused
]


def refund_tool() -> StructuredTool:
    return StructuredTool.from_function(
        func=lambda **kw: "ok", name="refund", description="Refund", args_schema=REFUND_SCHEMA
    )


def fence_with(tmp_path: Path, name: str, text: str) -> Fence:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "refunds.cedar").write_text(text)
    return Fence.from_directory(folder, tools=[refund_tool()], log=MemoryLog())


def test_policy_in_either_style_decides_the_same_calls(tmp_path: Path) -> None:
    ours = fence_with(tmp_path, "ours", AGENTFENCE_STYLE)
    theirs = fence_with(tmp_path, "theirs", CONVENTIONS_STYLE)
    effects = []
    for args in CALLS:
        a = ours.decide("refund", args, principal='User::"alice"')
        b = theirs.decide("refund", args, principal='User::"alice"')
        assert (a.effect, a.policy_ids) == (b.effect, b.policy_ids), args
        effects.append(a.effect.value)
    assert effects == ["ALLOW", "ALLOW", "DENY", "DENY", "DENY", "DENY", "DENY"]


def test_context_input_is_declared_only_when_a_policy_names_it(tmp_path: Path) -> None:
    assert FlowParts.of([CONVENTIONS_STYLE]).input
    assert not FlowParts.of([AGENTFENCE_STYLE]).input
    assert not FlowParts.of(["// context.input in a comment only\n" + AGENTFENCE_STYLE]).input
    ours = fence_with(tmp_path, "ours", AGENTFENCE_STYLE)
    decision = ours.decide("refund", CALLS[0], principal='User::"alice"')
    assert decision.request is not None and "input" not in decision.request["context"]


def test_context_input_attribute_the_tool_lacks_fails_loading(tmp_path: Path) -> None:
    text = CONVENTIONS_STYLE.replace("context.input.order", "context.input.orderId")
    with pytest.raises(PolicyLoadError) as caught:
        fence_with(tmp_path, "typo", text)
    assert "refunds.cedar" in str(caught.value)
    assert "orderId" in str(caught.value)
