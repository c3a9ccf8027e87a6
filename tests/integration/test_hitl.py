"""LangChain's human-in-the-loop formats in real graphs: one interrupt per create_agent turn
(batched), one per call (per_call), LangChain decisions that carry signed answers, respond."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from langchain.agents.middleware.human_in_the_loop import (
    ActionRequest,
    HITLRequest,
    ToolApprovalRequest,
)
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.types import Command

from agentfence import Fence, MemoryLog
from agentfence.approvals import ApprovalRequest
from agentfence.records import ApprovalAnswerRecord, ApprovalRequestRecord
from agentfence.testing import tool_call
from tests.conftest import Ran, signed
from tests.graphs import agent_for, batch, config, graph_for, tool_messages
from tests.unit.test_hitl import FENCE_KEY, exactly

PAY_A = tool_call("pay", {"account": "acc-1", "amount": 500.0}, "pay-a")
PAY_B = tool_call("pay", {"account": "acc-2", "amount": 700.0}, "pay-b")
SMALL = tool_call("pay", {"account": "acc-3", "amount": 5.0}, "small")


def held_turn(
    make_fence: Callable[..., Fence], tools: list[BaseTool], *calls: dict[str, Any], **kw: Any
) -> tuple[Fence, Any, MemoryLog, Any]:
    """A create_agent agent run until its first pause."""
    log = MemoryLog()
    fence = make_fence(log=log, **kw)
    agent = agent_for(fence, tools, batch(*calls))
    result = agent.invoke({"messages": [("user", "pay")]}, config())
    return fence, agent, log, result


def held_requests(fence: Fence, pause: Any) -> list[ApprovalRequest]:
    """The stored requests of a batched interrupt's actions, in order."""
    found = []
    for action in pause.value["action_requests"]:
        stored = fence.approvals.get(action["agentfence"]["request_id"])
        assert stored is not None
        found.append(stored.request)
    return found


def answers(log: MemoryLog) -> list[ApprovalAnswerRecord]:
    return [r for r in log.records if isinstance(r, ApprovalAnswerRecord)]


def decisions_per_call(log: MemoryLog) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in log.decisions():
        counts[record.tool_call_id] = counts.get(record.tool_call_id, 0) + 1
    return counts


def test_two_held_calls_of_one_turn_raise_one_interrupt_with_both_actions(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence, _, log, result = held_turn(make_fence, tools, PAY_A, SMALL, PAY_B)
    [pause] = result["__interrupt__"]
    exactly(HITLRequest, pause.value, {ActionRequest: FENCE_KEY})
    actions = pause.value["action_requests"]
    assert [(a["name"], a["args"]["account"]) for a in actions] == [
        ("pay", "acc-1"),
        ("pay", "acc-2"),
    ]
    assert [c["action_name"] for c in pause.value["review_configs"]] == ["pay", "pay"]
    assert [a["agentfence"]["tool_call_id"] for a in actions] == ["pay-a", "pay-b"]
    assert [a["agentfence"]["approvers"] for a in actions] == [["finance"], ["finance"]]
    # Nothing ran. The holds are on the log as they are made, so a turn nobody answers still
    # leaves them there; the allowed call is decided as it runs. Each call is decided once.
    assert ran.calls == []
    assert [(d.tool_call_id, d.effect) for d in log.decisions()] == [
        ("pay-a", "REQUIRE_APPROVAL"),
        ("pay-b", "REQUIRE_APPROVAL"),
    ]
    requested = [r for r in log.records if isinstance(r, ApprovalRequestRecord)]
    assert [r.tool_call_id for r in requested] == ["pay-a", "pay-b"]
    assert {s.request.tool_call_id for s in fence.approvals.list()} == {"pay-a", "pay-b"}


def test_one_resume_approves_one_and_rejects_the_other(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence, agent, log, result = held_turn(make_fence, tools, PAY_A, SMALL, PAY_B)
    [pause] = result["__interrupt__"]
    one, two = held_requests(fence, pause)
    decisions = [
        {"type": "approve", "agentfence": signed(one)},
        {
            "type": "reject",
            "message": "not this month",
            "agentfence": signed(two, decision="reject", message="not this month"),
        },
    ]
    out = agent.invoke(Command(resume={"decisions": decisions}), config())
    assert "__interrupt__" not in out
    assert sorted(ran.calls, key=str) == sorted(
        [
            ("pay", {"account": "acc-1", "amount": 500.0}),
            ("pay", {"account": "acc-3", "amount": 5.0}),
        ],
        key=str,
    )
    messages = tool_messages(out)
    assert messages["pay-a"].status == "success"
    assert messages["pay-b"].status == "error"
    assert "rejected the call to 'pay': not this month" in str(messages["pay-b"].content)
    # One decision per call on the log, and each answer recorded once.
    assert decisions_per_call(log) == {"pay-a": 1, "small": 1, "pay-b": 1}
    assert sorted((a.answer, a.verdict) for a in answers(log)) == [
        ("approve", "accepted"),
        ("reject", "accepted"),
    ]


def test_fence_resume_answers_a_batched_turn_from_the_store_and_asks_again_for_the_rest(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence, agent, _, result = held_turn(make_fence, tools, PAY_A, PAY_B)
    [pause] = result["__interrupt__"]
    one, two = held_requests(fence, pause)
    fence.approvals.submit(two.request_id, signed(two), now_us=two.created_us + 1)
    out = fence.resume(agent, config())
    # pay-b is answered; pay-a is asked again, alone, and nothing has run yet.
    [again] = out["__interrupt__"]
    assert [a["agentfence"]["request_id"] for a in again.value["action_requests"]] == [
        one.request_id
    ]
    assert ran.calls == []
    fence.approvals.submit(one.request_id, signed(one), now_us=one.created_us + 1)
    out = fence.resume(agent, config())
    assert "__interrupt__" not in out
    assert sorted(a["account"] for _, a in ran.calls) == ["acc-1", "acc-2"]


def test_respond_answers_in_the_tools_place_and_is_recorded(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence, agent, log, result = held_turn(make_fence, tools, PAY_A)
    [pause] = result["__interrupt__"]
    [request] = held_requests(fence, pause)
    text = "Paid already by cheque on Monday; nothing to do."
    decision = {
        "type": "respond",
        "message": text,
        "agentfence": signed(request, decision="respond", message=text),
    }
    out = agent.invoke(Command(resume={"decisions": [decision]}), config())
    message = tool_messages(out)["pay-a"]
    assert (message.content, message.status) == (text, "success")
    assert message.artifact["agentfence"]["responded"] is True
    assert ran.calls == []  # the tool did not run
    [answer] = answers(log)
    assert (answer.answer, answer.verdict, answer.approver) == (
        "respond",
        "accepted",
        'User::"fran"',
    )
    assert text in answer.reason
    assert log.outcomes() == []


@pytest.mark.parametrize(
    ("make_decision", "refusal"),
    [
        (lambda r: {"type": "approve"}, "unsigned answer"),
        (
            lambda r: {"type": "approve", "agentfence": signed(r, decision="reject")},
            "says 'approve' but its signed answer says 'reject'",
        ),
        (lambda r: {"type": "approve", "agentfence": signed(r, key="bob")}, "forged answer"),
        (
            lambda r: {
                "type": "edit",
                "edited_action": {"name": "pay", "args": {"account": "acc-666", "amount": 1.0}},
                "agentfence": signed(
                    r, decision="edit", edited_args={"account": "acc-1", "amount": 1.0}
                ),
            },
            "edited_action args are not the signed edited_args",
        ),
    ],
    ids=["unsigned", "type_mismatch", "forged", "smuggled_edit"],
)
def test_bad_decision_in_a_batch_is_refused_and_the_tool_does_not_run(
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    ran: Ran,
    make_decision: Callable[[ApprovalRequest], dict[str, Any]],
    refusal: str,
) -> None:
    fence, agent, log, result = held_turn(make_fence, tools, PAY_A)
    [request] = held_requests(fence, result["__interrupt__"][0])
    out = agent.invoke(Command(resume={"decisions": [make_decision(request)]}), config())
    message = tool_messages(out)["pay-a"]
    assert message.status == "error"
    assert refusal in str(message.content)
    assert ran.calls == []
    [answer] = answers(log)
    assert answer.verdict == "refused" and refusal in answer.reason


def test_decisions_in_the_wrong_order_are_refused_as_unbound(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence, agent, _, result = held_turn(make_fence, tools, PAY_A, PAY_B)
    one, two = held_requests(fence, result["__interrupt__"][0])
    swapped = [{"type": "approve", "agentfence": signed(r)} for r in (two, one)]
    out = agent.invoke(Command(resume={"decisions": swapped}), config())
    for call_id in ("pay-a", "pay-b"):
        assert "the answer is for request" in str(tool_messages(out)[call_id].content)
    assert ran.calls == []


def test_wrong_number_of_decisions_refuses_the_turn(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence, agent, _, result = held_turn(make_fence, tools, PAY_A, PAY_B)
    one, _ = held_requests(fence, result["__interrupt__"][0])
    out = agent.invoke(
        Command(resume={"decisions": [{"type": "approve", "agentfence": signed(one)}]}), config()
    )
    for call_id in ("pay-a", "pay-b"):
        assert "1 decisions for 2 held calls" in str(tool_messages(out)[call_id].content)
    assert ran.calls == []


def test_repeated_tool_call_id_cannot_borrow_another_calls_approval(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    """Attack: the model repeats a tool call id with other arguments in the same turn, hoping
    the approval of the first (the one the approver saw) runs the second."""
    smuggled = tool_call("pay", {"account": "acc-666", "amount": 900.0}, "pay-a")
    fence, agent, _, result = held_turn(make_fence, tools, PAY_A, smuggled)
    [request] = held_requests(fence, result["__interrupt__"][0])  # the approver sees one call
    assert request.args["account"] == "acc-1"
    out = agent.invoke(
        Command(resume={"decisions": [{"type": "approve", "agentfence": signed(request)}]}),
        config(),
    )
    assert ran.calls == [("pay", {"account": "acc-1", "amount": 500.0})]
    refused = [m for m in out["messages"] if isinstance(m, ToolMessage) and m.status == "error"]
    assert len(refused) == 1
    assert "is already held for a different call" in str(refused[0].content)


def test_repeated_tool_call_id_in_a_tool_node_cannot_borrow_an_approval(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    smuggled = tool_call("pay", {"account": "acc-666", "amount": 900.0}, "pay-a")
    fence = make_fence()
    graph = graph_for(fence, tools, batch(PAY_A, smuggled))
    result = graph.invoke({"messages": [("user", "pay")]}, config())
    # One request: the id is taken by whichever call the tool node reached first (they run
    # concurrently); the approver sees that one, and only that one may run.
    [pause] = result["__interrupt__"]
    [action] = pause.value["action_requests"]
    stored = fence.approvals.get(action["agentfence"]["request_id"])
    assert stored is not None
    out = graph.invoke(Command(resume={pause.id: signed(stored.request)}), config())
    refused = [m for m in out["messages"] if isinstance(m, ToolMessage) and m.status == "error"]
    assert len(refused) == 1 and "already held for a different call" in str(refused[0].content)
    assert [a["account"] for _, a in ran.calls] == [stored.request.args["account"]]


def test_per_call_mode_raises_a_tool_approval_request_per_held_call(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence, agent, _, result = held_turn(
        make_fence, tools, PAY_A, SMALL, PAY_B, interrupt_mode="per_call"
    )
    pauses = result["__interrupt__"]
    assert sorted(p.value["tool_call_id"] for p in pauses) == ["pay-a", "pay-b"]
    for pause in pauses:
        exactly(ToolApprovalRequest, pause.value, {ToolApprovalRequest: FENCE_KEY})
    assert all("oneOf" in p.response_schema for p in pauses)
    assert ran.calls == [("pay", {"account": "acc-3", "amount": 5.0})]  # allowed: ran
    resume = {}
    for pause in pauses:
        stored = fence.approvals.get(pause.value["agentfence"]["request_id"])
        assert stored is not None
        resume[pause.id] = {"type": "approve", "agentfence": signed(stored.request)}
    out = agent.invoke(Command(resume=resume), config())
    assert "__interrupt__" not in out
    assert sorted(a["account"] for _, a in ran.calls) == ["acc-1", "acc-2", "acc-3"]


def test_per_call_unsigned_approve_gets_a_refusal_naming_what_to_do(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    _, agent, _, result = held_turn(make_fence, tools, PAY_A, interrupt_mode="per_call")
    [pause] = result["__interrupt__"]
    out = agent.invoke(Command(resume={pause.id: {"type": "approve"}}), config())
    text = str(tool_messages(out)["pay-a"].content)
    assert "unsigned answer" in text and "agentfence approvals approve" in text
    assert "format is None" not in text
    assert ran.calls == []


def test_batched_turn_async(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence = make_fence()
    agent = agent_for(fence, tools, batch(PAY_A, PAY_B))
    result = asyncio.run(agent.ainvoke({"messages": [("user", "pay")]}, config()))
    [pause] = result["__interrupt__"]
    decisions = [{"type": "approve", "agentfence": signed(r)} for r in held_requests(fence, pause)]
    out = asyncio.run(agent.ainvoke(Command(resume={"decisions": decisions}), config()))
    assert "__interrupt__" not in out
    assert sorted(a["account"] for _, a in ran.calls) == ["acc-1", "acc-2"]


def test_tool_node_held_calls_pause_in_the_batched_format_and_all_run(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    """A hand-built ToolNode has no turn to batch: a held call pauses as it runs, in a
    one-action HITLRequest, and ``fence.run`` answers them as they come."""
    log = MemoryLog()
    fence = make_fence(log=log)
    graph = graph_for(fence, tools, batch(PAY_A, PAY_B))
    result = graph.invoke({"messages": [("user", "pay")]}, config())
    for pause in result["__interrupt__"]:
        exactly(HITLRequest, pause.value, {ActionRequest: FENCE_KEY})
        assert len(pause.value["action_requests"]) == 1

    def answer(pending: list[Any]) -> None:
        for item in pending:
            request = item.request
            fence.approvals.submit(request.request_id, signed(request), now_us=request.created_us)

    out = fence.run(graph, None, config(), on_pending=answer, poll_interval=0.01)
    assert "__interrupt__" not in out
    assert sorted(a["account"] for _, a in ran.calls) == ["acc-1", "acc-2"]
    assert decisions_per_call(log) == {"pay-a": 1, "pay-b": 1}


def test_batched_edit_runs_the_signed_arguments_decided_again(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence, agent, log, result = held_turn(make_fence, tools, PAY_A)
    [request] = held_requests(fence, result["__interrupt__"][0])
    edited = {"account": "acc-1", "amount": 50.0, "memo": None}
    decision = {
        "type": "edit",
        "edited_action": {"name": "pay", "args": edited},
        "agentfence": signed(request, decision="edit", edited_args=edited),
    }
    agent.invoke(Command(resume={"decisions": [decision]}), config())
    assert ran.calls == [("pay", {"account": "acc-1", "amount": 50.0})]
    # The edit is decided again (now a small payment, allowed), on the log beside the first.
    assert [d.effect for d in log.decisions()] == ["REQUIRE_APPROVAL", "ALLOW"]


def test_an_expired_batched_request_is_refused_on_resume(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    now = [1_800_000_000_000_000]
    fence, agent, log, _ = held_turn(
        make_fence, tools, PAY_A, clock=lambda: now[0], approval_expiry=60
    )
    now[0] += 61 * 1_000_000
    out = fence.resume(agent, config())
    assert "no approver answered before it expired" in str(tool_messages(out)["pay-a"].content)
    assert ran.calls == []
    assert [a.verdict for a in answers(log)] == ["expired"]


def test_an_answer_from_an_earlier_turn_does_not_run_a_later_call_with_the_same_id(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    """Attack: the model repeats an approved call's id in a later turn, hoping the earlier
    turn's answer (still in the agent state) runs it without asking."""
    from langchain_core.messages import AIMessage

    again = tool_call("pay", {"account": "acc-666", "amount": 900.0}, "pay-a")
    fence = make_fence()
    replies = [
        AIMessage(content="", tool_calls=[PAY_A]),
        AIMessage(content="", tool_calls=[again]),
        AIMessage(content="done"),
    ]
    agent = agent_for(fence, tools, replies)
    result = agent.invoke({"messages": [("user", "pay")]}, config())
    [request] = held_requests(fence, result["__interrupt__"][0])
    decision = {"type": "approve", "agentfence": signed(request)}
    out = agent.invoke(Command(resume={"decisions": [decision]}), config())
    # The later call is held on its own: a new request, a new pause; it did not run.
    [pause] = out["__interrupt__"]
    [later] = held_requests(fence, pause)
    assert later.request_id != request.request_id and later.args["account"] == "acc-666"
    assert ran.calls == [("pay", {"account": "acc-1", "amount": 500.0})]


def test_a_policy_set_that_can_hold_nothing_decides_each_call_once(
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    ran: Ran,
    policy_dir: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The batched turn's review decides calls ahead only to find the held ones; with no
    ``@require_approval`` or ``@overridable`` policy there are none, so each call is decided
    once, as it runs, and not a second time ahead of it."""
    base = policy_dir / "base.cedar"
    base.write_text(base.read_text().replace('@require_approval("finance")\n', ""))
    fence = make_fence()
    assert not fence.engine.can_hold
    decided: list[str] = []
    real = type(fence.engine).decide
    monkeypatch.setattr(
        type(fence.engine),
        "decide",
        lambda engine, facts: decided.append(facts.tool_call_id) or real(engine, facts),
    )
    out = agent_for(fence, tools, batch(PAY_A, SMALL)).invoke(
        {"messages": [("user", "pay")]}, config()
    )
    assert {k: m.status for k, m in tool_messages(out).items()} == {
        "pay-a": "success",
        "small": "success",
    }
    assert sorted(decided) == ["pay-a", "small"]
