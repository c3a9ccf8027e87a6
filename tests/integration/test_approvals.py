"""Human-override checkpoints in real graphs: pause, signed answers, resume, and every abuse."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool
from langgraph.types import Command

from agentfence import ConfigurationError, Fence, MemoryLog
from agentfence.approvals import ApprovalRequest, approve_decision
from agentfence.decision import EntityRef
from agentfence.errors import PolicyLoadError
from agentfence.records import ApprovalAnswerRecord, ApprovalRequestRecord
from agentfence.testing import tool_call
from tests.conftest import Ran, signed
from tests.graphs import agent_for, batch, config, graph_for, tool_messages

BIG_PAYMENT = tool_call("pay", {"account": "acc-7", "amount": 900.0}, "pay-1")


class Clock:
    """A settable clock (microseconds), so expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def paused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], clock: Clock, *calls: dict[str, Any]
) -> tuple[Fence, Any, MemoryLog, dict[str, Any]]:
    """A graph run until it pauses for approval."""
    log = MemoryLog()
    fence = make_fence(log=log, clock=clock)
    replies = [*batch(*(calls or (BIG_PAYMENT,))), AIMessage(content="done, again")]
    graph = graph_for(fence, tools, replies)
    result = graph.invoke({"messages": [("user", "pay")]}, config())
    assert "__interrupt__" in result
    return fence, graph, log, result


def pending(fence: Fence) -> ApprovalRequest:
    [stored] = [s for s in fence.approvals.list() if s.used_us is None]
    return stored.request


def answers(log: MemoryLog) -> list[ApprovalAnswerRecord]:
    return [r for r in log.records if isinstance(r, ApprovalAnswerRecord)]


def resume(graph: Any, value: Any) -> dict[str, Any]:
    return graph.invoke(Command(resume=value), config())


def test_pause_carries_the_hitl_request_and_agentfence_fields(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    fence, _, log, result = paused(make_fence, tools, clock)
    [pause] = result["__interrupt__"]
    value = pause.value
    # The approver sees the arguments as the tool will get them: validated, defaults filled.
    [action] = value["action_requests"]
    assert {k: v for k, v in action.items() if k != "agentfence"} == {
        "name": "pay",
        "args": {"account": "acc-7", "amount": 900.0, "memo": None},
        "description": 'pay for User::"alice" needs approval: payments over 100 need finance',
    }
    assert value["review_configs"] == [
        {"action_name": "pay", "allowed_decisions": ["approve", "edit", "reject", "respond"]}
    ]
    request = pending(fence)
    fields = action["agentfence"]  # a hand-built ToolNode: one action per held call
    assert fields["request_id"] == request.request_id
    assert fields["action_digest"] == request.action_digest
    assert fields["policy_hash"] == fence.policy_hash
    assert fields["approvers"] == ["finance"]
    assert fields["reasons"] == ["payments over 100 need finance"]
    assert fields["expires_us"] == clock.now + 15 * 60 * 1_000_000
    assert ran.calls == []
    [record] = [r for r in log.records if isinstance(r, ApprovalRequestRecord)]
    assert record.request_id == request.request_id


def test_approved_call_runs_once_and_everything_is_logged(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    fence, graph, log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    fence.approvals.submit(request.request_id, signed(request), now_us=clock.now)
    out = fence.run(graph, None, config())  # picks the answer up from the store
    assert "__interrupt__" not in out
    assert ran.calls == [("pay", {"account": "acc-7", "amount": 900.0})]
    assert tool_messages(out)["pay-1"].status == "success"
    [answer] = answers(log)
    assert (answer.verdict, answer.answer, answer.approver) == (
        "accepted",
        "approve",
        'User::"fran"',
    )
    assert len(log.decisions()) == 1 and len(log.outcomes()) == 1
    # The request is used: it cannot be answered or used again.
    assert fence.approvals.get(request.request_id).status(clock.now) == "used"  # type: ignore[union-attr]


def test_a_call_whose_approval_an_earlier_pass_used_returns_that_pass_result(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    """Attack or race: the answer reaches a call whose approval was already used by an
    earlier pass of the same call (an async re-execution while that pass was still recording
    its outcome). The tool must not run again, and the model must not be told it did not
    run: it gets the earlier pass's recorded result."""
    import threading

    from agentfence.records import OutcomeRecord

    fence, graph, log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    assert fence.approvals.consume(request.request_id, "an earlier pass", now_us=clock.now)
    earlier = OutcomeRecord(
        decision_id=request.decision_id,
        status="success",
        result_digest="0" * 64,
        time_us=clock.now,
    )
    # The earlier pass records its outcome while this one is resolving the answer.
    later = threading.Timer(0.5, lambda: log.append(earlier))
    later.start()
    out = resume(graph, signed(request))
    later.join()
    assert ran.calls == []  # not run a second time
    message = tool_messages(out)["pay-1"]
    assert message.status == "success" and message.artifact["agentfence"]["replayed"] is True
    [answer] = answers(log)
    assert (answer.verdict, answer.reason) == (
        "replayed",
        "the call ran on an earlier pass with this answer",
    )


def test_run_moves_on_from_a_pause_for_an_answer_an_earlier_pass_used(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    """Race (calls of one step side by side): a pass used a call's answer and ran it while a
    sibling's pause stopped the step, so the thread is paused on a request already answered
    and used. ``fence.resume`` (and so ``fence.run``) must resume it rather than wait forever
    for an answer that was given, and the call must neither pause for it again nor run a
    second time."""
    from agentfence.records import OutcomeRecord

    fence, graph, log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    fence.approvals.submit(request.request_id, signed(request), now_us=clock.now)
    assert fence.approvals.consume(request.request_id, "an earlier pass", now_us=clock.now)
    log.append(
        OutcomeRecord(
            decision_id=request.decision_id,
            status="success",
            result_digest="0" * 64,
            time_us=clock.now,
        )
    )
    out = fence.resume(graph, config())
    assert out is not None and "__interrupt__" not in out
    assert ran.calls == []  # the earlier pass ran it; this one does not
    message = tool_messages(out)["pay-1"]
    assert message.status == "success" and message.artifact["agentfence"]["replayed"] is True
    assert [a.verdict for a in answers(log)] == ["replayed"]


def test_approver_groups_of_another_entity_type_approve_and_outsiders_still_cannot(
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    ran: Ran,
    clock: Clock,
    policy_dir: Path,
) -> None:
    """A schema with ``entity User in [Team]`` and the finance group as ``Team::"finance"``:
    its members approve (the set of approver groups is of Team); anyone else still cannot."""
    (policy_dir / "people.cedarschema").write_text(
        "entity Group;\nentity Team;\nentity User in [Group, Team];\n"
    )
    entities = policy_dir / "entities.json"
    group, team = '{"type": "Group", "id": "finance"}', '{"type": "Team", "id": "finance"}'
    entities.write_text(entities.read_text().replace(group, team))
    fence, graph, _, _ = paused(make_fence, tools, clock)
    assert fence.engine.approver_group_type == "Team"
    request = pending(fence)
    assert approve_decision(fence.engine, request, EntityRef("User", "bob")) is not None
    assert approve_decision(fence.engine, request, EntityRef("User", "fran")) is None
    out = resume(graph, signed(request))  # fran, in Team::"finance"
    assert tool_messages(out)["pay-1"].status == "success"
    assert ran.calls == [("pay", {"account": "acc-7", "amount": 900.0})]


def test_approver_groups_under_two_entity_types_fail_loading(
    make_fence: Callable[..., Fence], policy_dir: Path
) -> None:
    base = policy_dir / "base.cedar"
    base.write_text(
        base.read_text() + '\n@id("ops-hold")\n@require_approval("ops")\n'
        'permit (principal, action == Action::"read_record", resource)\n'
        'when { context.args.record_id == "r-ops" };\n'
    )
    (policy_dir / "people.cedarschema").write_text(
        "entity Group;\nentity Team;\nentity User in [Group, Team];\n"
    )
    entities = policy_dir / "entities.json"
    entities.write_text(
        entities.read_text().rstrip().removesuffix("]")
        + ',{"uid": {"type": "Team", "id": "ops"}, "attrs": {}, "parents": []}]'
    )
    with pytest.raises(PolicyLoadError, match="approver groups must all be of one entity type"):
        make_fence()


def test_reject_tells_the_model_the_approvers_message(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    fence, graph, log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    out = resume(graph, signed(request, decision="reject", message="wrong account"))
    message = tool_messages(out)["pay-1"]
    assert ran.calls == []
    assert message.status == "error"
    assert "User::\"fran\" rejected the call to 'pay': wrong account" in str(message.content)
    assert answers(log)[0].reason == "rejected by the approver"


def test_edit_is_decided_again_and_its_diff_logged(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    fence, graph, log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    edited = {"account": "acc-7", "amount": 90.0}
    out = resume(graph, signed(request, decision="edit", edited_args=edited))
    assert tool_messages(out)["pay-1"].status == "success"
    assert ran.calls == [("pay", edited)]
    [answer] = answers(log)
    assert answer.verdict == "accepted" and answer.args_diff_blob is not None
    # RFC 8785 writes 90.0 as 90.
    assert log.blob(answer.args_diff_blob) == b'{"amount":{"new":90,"old":900}}'
    # The edit was decided again, and that decision is on the log too.
    assert [d.effect for d in log.decisions()] == ["REQUIRE_APPROVAL", "ALLOW"]


def test_edit_cannot_launder_a_denied_call(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    fence, graph, log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    out = resume(
        graph,
        signed(request, decision="edit", edited_args={"account": "sanctioned", "amount": 900.0}),
    )
    message = tool_messages(out)["pay-1"]
    assert ran.calls == []
    assert "is denied by policy: payments to sanctioned accounts are forbidden" in str(
        message.content
    )
    assert answers(log)[0].verdict == "refused"


# --- abuse: each is refused, the tool does not run, the model is told, the attempt logged --


def refuse(
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    ran: Ran,
    clock: Clock,
    make_answer: Callable[[ApprovalRequest], Any],
    fragment: str,
) -> None:
    fence, graph, log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    out = resume(graph, make_answer(request))
    message = tool_messages(out)["pay-1"]
    assert ran.calls == [], "the tool ran on an answer that must be refused"
    assert message.status == "error"
    assert fragment in str(message.content)
    [answer] = answers(log)
    assert answer.verdict in ("refused", "expired")
    assert fragment in answer.reason or answer.verdict == "expired"


def test_forged_answer_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    # Signed by a key that is not a declared approver's, claiming to be fran.
    from agentfence._signing import Signer
    from agentfence.approvals import ApprovalAnswer, sign_answer

    def forge(request: ApprovalRequest) -> Any:
        answer = ApprovalAnswer(
            request_id=request.request_id,
            action_digest=request.action_digest,
            approver='User::"fran"',
            decision="approve",
            answered_us=request.created_us,
        )
        return sign_answer(answer, Signer.generate("fran"))

    refuse(make_fence, tools, ran, clock, forge, "forged answer")


def test_tampered_signed_answer_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    def tamper(request: ApprovalRequest) -> Any:
        envelope = signed(request, decision="reject")
        envelope["answer"]["decision"] = "approve"  # the signature covers the decision
        return envelope

    refuse(make_fence, tools, ran, clock, tamper, "signature does not verify")


def test_unsigned_answer_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    refuse(
        make_fence,
        tools,
        ran,
        clock,
        lambda r: {"decisions": [{"type": "approve"}]},
        "unsigned answer",
    )


def test_answer_for_another_request_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    def other(request: ApprovalRequest) -> Any:
        return signed(request.model_copy(update={"request_id": "0" * 32}))

    refuse(make_fence, tools, ran, clock, other, "the answer is for request 0000")


def test_answer_for_other_arguments_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    def other_args(request: ApprovalRequest) -> Any:
        return signed(request.model_copy(update={"action_digest": "f" * 64}))

    refuse(make_fence, tools, ran, clock, other_args, "bound to different arguments")


def test_answer_after_expiry_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    def late(request: ApprovalRequest) -> Any:
        clock.now = request.expires_us + 1
        return signed(request, answered_us=request.expires_us + 1)

    refuse(make_fence, tools, ran, clock, late, "expired")


def test_approver_policy_does_not_allow_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    # bob is a declared approver but not in the finance group the policy names.
    refuse(
        make_fence,
        tools,
        ran,
        clock,
        lambda r: signed(r, approver="bob"),
        'User::"bob" may not approve this request',
    )
    # The refusal names the group the request needed.
    refuse(
        make_fence,
        tools,
        ran,
        clock,
        lambda r: signed(r, approver="bob"),
        '(it needs an approver in Group::"finance")',
    )


def test_self_approval_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    # alice is in finance, and a declared approver, but she asked for this call.
    refuse(
        make_fence,
        tools,
        ran,
        clock,
        lambda r: signed(r, approver="alice"),
        'User::"alice" requested this call and cannot approve it',
    )


def test_answer_claiming_another_approver_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    # bob signs, but the answer says it is fran's.
    refuse(
        make_fence,
        tools,
        ran,
        clock,
        lambda r: signed(r, approver="fran", key="bob"),
        "forged answer",
    )


@pytest.mark.parametrize("payload", ["yes", {"format": "agentfence.signed_answer/v1"}, 42])
def test_malformed_answer_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock, payload: Any
) -> None:
    refuse(make_fence, tools, ran, clock, lambda r: payload, "malformed answer")


def test_same_approval_used_twice_runs_the_tool_once(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    fence, graph, log, _first = paused(make_fence, tools, clock)
    request = pending(fence)
    answer = signed(request)
    resume(graph, answer)
    assert len(ran.calls) == 1
    # Resume again from the checkpoint taken at the pause, with the same answer.
    history = list(graph.get_state_history(config()))
    at_pause = next(s for s in history if s.interrupts)
    older = {"configurable": {**at_pause.config["configurable"], **config()["configurable"]}}
    out = graph.invoke(Command(resume=answer), older)
    assert len(ran.calls) == 1, "an approval ran a call twice"
    message = tool_messages(out)["pay-1"]
    assert message.artifact["agentfence"].get("replayed") is True, message.content
    assert [a.verdict for a in answers(log)] == ["accepted", "replayed"]


def test_used_answer_for_a_call_that_never_ran_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    fence, graph, log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    answer = signed(request)
    # The answer was used (for example by a worker that crashed before the tool ran).
    assert fence.approvals.consume(request.request_id, "someone-else", now_us=clock.now)
    out = resume(graph, answer)
    assert ran.calls == []
    assert "already used" in str(tool_messages(out)["pay-1"].content)
    assert answers(log)[0].reason == "this approval was already used"


def test_unanswered_request_expires_as_a_deny(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    fence, graph, log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    clock.now = request.expires_us + 1
    out = fence.run(graph, None, config(), timeout=0)
    message = tool_messages(out)["pay-1"]
    assert ran.calls == []
    assert "no approver answered before it expired" in str(message.content)
    assert answers(log)[0].verdict == "expired"
    assert fence.approvals.get(request.request_id).status(clock.now) == "expired"  # type: ignore[union-attr]


def test_expired_marker_before_expiry_is_refused(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    refuse(
        make_fence,
        tools,
        ran,
        clock,
        lambda r: {"format": "agentfence.expired/v1", "request_id": r.request_id},
        "malformed answer",
    )


def test_expiry_comes_from_the_policy_annotation(
    make_fence: Callable[..., Fence], tools: list[BaseTool], clock: Clock, policy_dir: Path
) -> None:
    base = (policy_dir / "base.cedar").read_text()
    (policy_dir / "base.cedar").write_text(
        base.replace(
            '@require_approval("finance")', '@require_approval("finance")\n@approval_expires("2m")'
        )
    )
    _fence, _, _, result = paused(make_fence, tools, clock)
    [action] = result["__interrupt__"][0].value["action_requests"]
    assert action["agentfence"]["expires_us"] == (clock.now + 120 * 1_000_000)


def test_policy_change_while_waiting_decides_again(
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    ran: Ran,
    clock: Clock,
    policy_dir: Path,
) -> None:
    fence, graph, _log, _ = paused(make_fence, tools, clock)
    request = pending(fence)
    (policy_dir / "freeze.cedar").write_text(
        '@id("payment-freeze") @reason("payments are frozen")\n'
        'forbid (principal, action == Action::"pay", resource);\n'
    )
    fence.reload()
    out = resume(graph, signed(request))
    assert ran.calls == []
    assert "payments are frozen" in str(tool_messages(out)["pay-1"].content)


def test_parallel_approvals_each_get_their_own_request_and_answer(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    log = MemoryLog()
    fence = make_fence(log=log, clock=clock)
    calls = [
        tool_call("pay", {"account": "acc-1", "amount": 500.0}, "p1"),
        tool_call("read_record", {"record_id": "r1"}, "r1"),
        tool_call("pay", {"account": "acc-2", "amount": 700.0}, "p2"),
    ]
    for graph in (graph_for(fence, tools, batch(*calls)), agent_for(fence, tools, batch(*calls))):
        ran.calls.clear()
        thread = f"parallel-{id(graph)}"

        def approve_all(waiting: list[Any]) -> None:
            for item in waiting:
                fence.approvals.submit(
                    item.request.request_id, signed(item.request), now_us=clock.now
                )

        out = fence.run(
            graph,
            {"messages": [("user", "go")]},
            config(thread),
            on_pending=approve_all,
            poll_interval=0,
        )
        assert sorted(ran.names()) == ["pay", "pay", "read_record"]
        messages = tool_messages(out)
        assert all(messages[i].status == "success" for i in ("p1", "p2", "r1"))
        mine = [s for s in fence.approvals.list(thread=thread)]
        assert len(mine) == 2 and all(s.used_us is not None for s in mine)
    requests = [r for r in log.records if isinstance(r, ApprovalRequestRecord)]
    assert len(requests) == 4  # two per graph, none twice
    assert len({r.request_id for r in requests}) == 4
    assert [a.verdict for a in answers(log)].count("accepted") == 4


def test_an_async_run_waits_for_an_async_approver_and_resumes_every_held_call(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    """Fence.arun drives a create_agent agent's ainvoke through its pauses; on_pending may be
    a coroutine function."""
    log = MemoryLog()
    fence = make_fence(log=log, clock=clock)
    calls = [
        tool_call("pay", {"account": "acc-1", "amount": 500.0}, "p1"),
        tool_call("pay", {"account": "acc-2", "amount": 700.0}, "p2"),
    ]
    for graph in [agent_for(fence, tools, batch(*calls))]:
        ran.calls.clear()
        thread = f"async-{id(graph)}"
        announced: list[str] = []

        async def approve_all(waiting: list[Any], announced: list[str] = announced) -> None:
            await asyncio.sleep(0)
            for item in waiting:
                announced.append(item.request.request_id)
                fence.approvals.submit(
                    item.request.request_id, signed(item.request), now_us=clock.now
                )

        out = asyncio.run(
            fence.arun(
                graph,
                {"messages": [("user", "go")]},
                config(thread),
                on_pending=approve_all,
                poll_interval=0,
            )
        )
        assert sorted(ran.names()) == ["pay", "pay"] and len(announced) == 2
        messages = tool_messages(out)
        assert messages["p1"].status == messages["p2"].status == "success"


def test_aresume_resumes_a_paused_thread_once_answers_are_in(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran, clock: Clock
) -> None:
    """A worker that picks threads up (async, a create_agent agent): nothing to do while
    answers are pending; once they are in, aresume resumes the thread (until it is done)."""
    fence = make_fence(log=MemoryLog(), clock=clock)
    calls = [
        tool_call("pay", {"account": "acc-1", "amount": 500.0}, "p1"),
        tool_call("pay", {"account": "acc-2", "amount": 700.0}, "p2"),
    ]
    graph = agent_for(fence, tools, batch(*calls))

    async def scenario() -> Any:
        out = await graph.ainvoke({"messages": [("user", "go")]}, config("aresume"))
        assert "__interrupt__" in out
        assert await fence.aresume(graph, config("aresume")) is None  # nobody answered yet
        for stored in fence.approvals.list(thread="aresume"):
            fence.approvals.submit(
                stored.request.request_id, signed(stored.request), now_us=clock.now
            )
        for _ in range(3):
            resumed = await fence.aresume(graph, config("aresume"))
            if resumed is None:
                break
            out = resumed
        return out

    out = asyncio.run(scenario())
    assert sorted(ran.names()) == ["pay", "pay"]
    assert "__interrupt__" not in out
    assert tool_messages(out)["p1"].status == tool_messages(out)["p2"].status == "success"


# --- unattended runs: on_hold="deny" -------------------------------------------------------


@pytest.mark.parametrize("where", ["fence", "run"])
def test_unattended_run_refuses_a_held_call_without_pausing(
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    ran: Ran,
    tmp_path: Any,
    where: str,
) -> None:
    from agentfence._signing import Signer
    from agentfence.log import SignedLog
    from agentfence.verify import verify_log

    signer = Signer.generate("unattended")
    log = SignedLog.open(tmp_path / "fence.db", signer=signer)
    fence = make_fence(log=log, **({"on_hold": "deny"} if where == "fence" else {}))
    graph = graph_for(fence, tools, batch(BIG_PAYMENT))
    run_config = config(**({"agentfence_on_hold": "deny"} if where == "run" else {}))
    result = graph.invoke({"messages": [("user", "pay")]}, run_config)
    assert "__interrupt__" not in result  # the thread did not pause
    assert ran.calls == []
    message = tool_messages(result)["pay-1"]
    assert message.status == "error"
    assert "this run takes no approvals, so it was refused without running" in str(message.content)
    assert fence.approvals.list() == []  # nobody was asked
    fence.close()
    records = [r for _, r in SignedLog.open(tmp_path / "fence.db", signer=signer).read()]
    [held] = [r for r in records if isinstance(r, ApprovalRequestRecord)]
    [answer] = [r for r in records if isinstance(r, ApprovalAnswerRecord)]
    assert (answer.verdict, answer.answer, answer.approver) == ("unattended", "none", None)
    assert answer.request_id == held.request_id
    assert verify_log(tmp_path / "fence.db", [signer.verifier_key]).decisions == 1


def test_an_attended_run_of_the_same_fence_still_pauses(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence = make_fence(on_hold="deny")
    graph = graph_for(fence, tools, batch(BIG_PAYMENT))
    result = graph.invoke({"messages": [("user", "pay")]}, config(agentfence_on_hold="interrupt"))
    assert "__interrupt__" in result and ran.calls == []


@pytest.mark.parametrize("bad", ["refuse", "DENY ", 1])
def test_an_unknown_on_hold_mode_is_refused_naming_the_modes(
    make_fence: Callable[..., Fence], bad: Any
) -> None:
    with pytest.raises(ConfigurationError, match="is not an on_hold mode; use 'interrupt'"):
        make_fence(on_hold=bad)


def test_an_unknown_on_hold_mode_for_one_run_fails_closed(
    make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    fence = make_fence()
    graph = graph_for(fence, tools, batch(BIG_PAYMENT))
    result = graph.invoke({"messages": [("user", "pay")]}, config(agentfence_on_hold="skip"))
    assert "__interrupt__" not in result and ran.calls == []
    assert "fail closed" in str(tool_messages(result)["pay-1"].content)
