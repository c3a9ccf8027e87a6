"""Attacks on what the fence decides versus what the tool runs (argument binding).

The fence validates a call's arguments once with the tool's own schema, decides and records
those values, and hands the tool a private copy of exactly the input it validated. Each test is
named for the attack that would work if that broke: the tool records what it received, and the
test compares it with what was decided and logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool, tool
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from agentfence import DecisionRecord, Fence, MemoryLog, Meter, OutcomeRecord, Resource, govern
from agentfence.policy import Effect
from agentfence.testing import tool_call
from tests.graphs import batch, config, graph_for, tool_messages

POLICIES = """
@id("mail-to-bob-only")
permit (principal, action == Action::"send_mail", resource == Recipient::"bob@acme.test");

@id("mail-any-to-bob-only")
permit (principal, action == Action::"send_mail_open", resource == Recipient::"bob@acme.test");

@id("small-payments")
permit (principal, action == Action::"pay", resource)
when {
  context.args.amount.greaterThan(decimal("0.0")) &&
  context.args.amount.lessThanOrEqual(decimal("100.0"))
};

@id("ceiling")
permit (principal, action == Action::"invoice", resource)
when { context.args.invoice.amount.lessThan(decimal("10000.0")) };

@id("delete-needs-confirmation-off")
permit (principal, action == Action::"delete_file", resource)
when { context.args.dry_run };

@id("fetch-docs")
permit (principal, action == Action::"fetch", resource)
when { context.args.url like "https://docs.acme.test/*" };

@id("count-small")
permit (principal, action == Action::"batch", resource)
when { context.args.count <= 10 };
"""


class Received:
    """What each tool actually received (after its own validation)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []


class MailArgs(BaseModel):
    to: str = Field(alias="recipient")
    body: str = ""


class OpenMailArgs(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    to: str = Field(alias="recipient")
    body: str = ""


class PayArgs(BaseModel):
    account: str
    amount: float = Field(validation_alias=AliasChoices("amount", "amt"))


class Invoice(BaseModel):
    account: str
    amount: float


class InvoiceArgs(BaseModel):
    invoice: Invoice


class DeleteArgs(BaseModel):
    path: str
    dry_run: bool = True


class FetchArgs(BaseModel):
    url: str


class BatchArgs(BaseModel):
    count: int


@pytest.fixture
def received() -> Received:
    return Received()


@pytest.fixture
def tools(received: Received) -> list[BaseTool]:
    def recorder(name: str) -> Any:
        def run(**kwargs: Any) -> str:
            received.calls.append((name, kwargs))
            return f"{name} ok"

        return run

    made = {
        "send_mail": MailArgs,
        "send_mail_open": OpenMailArgs,
        "pay": PayArgs,
        "invoice": InvoiceArgs,
        "delete_file": DeleteArgs,
        "fetch": FetchArgs,
        "batch": BatchArgs,
    }
    out: list[BaseTool] = []
    for name, schema in made.items():
        t = StructuredTool.from_function(
            func=recorder(name), name=name, description=f"{name}", args_schema=schema
        )
        out.append(t)
    govern(out[0], groups=[], resource=Resource("Recipient", arg="to"))
    govern(out[1], groups=[], resource=Resource("Recipient", arg="to"))
    govern(out[2], meter=Meter("payments", arg="amount"))
    return out


@pytest.fixture
def fence(tmp_path: Path, tools: list[BaseTool]) -> Iterator[Fence]:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "rules.cedar").write_text(POLICIES)
    (tmp_path / "p" / "types.cedarschema").write_text("entity User;\nentity Recipient;\n")
    with Fence.from_directory(tmp_path / "p", tools=tools, log=MemoryLog()) as made:
        yield made


def run_call(fence: Fence, tools: list[BaseTool], name: str, args: dict[str, Any]) -> Any:
    graph = graph_for(fence, tools, batch(tool_call(name, args, "c1")))
    result = graph.invoke({"messages": [("user", "go")]}, config("t1"))
    return tool_messages(result)["c1"]


def decide(fence: Fence, name: str, args: dict[str, Any]) -> Any:
    return fence.decide(name, args, principal='User::"alice"', thread="t")


def only_decision(fence: Fence) -> DecisionRecord:
    log = fence.log
    assert isinstance(log, MemoryLog)
    [record] = log.decisions()
    return record


# --- aliases --------------------------------------------------------------------------------


def test_alias_smuggled_recipient_never_reaches_the_tool(
    fence: Fence, tools: list[BaseTool], received: Received
) -> None:
    # The field is `to`, its alias `recipient`: pydantic fills `to` from the alias and drops
    # the field name. A fence reading the raw `to` would decide on bob and run for the attacker.
    message = run_call(
        fence, tools, "send_mail", {"to": "bob@acme.test", "recipient": "attacker@evil.com"}
    )
    assert received.calls == []
    assert message.status == "error"
    record = only_decision(fence)
    assert record.effect == "DENY"
    assert "'to'" in record.reasons[0] and "would drop them silently" in record.reasons[0]


def test_alias_spelled_recipient_is_decided_on_the_value_the_tool_gets(
    fence: Fence, tools: list[BaseTool], received: Received
) -> None:
    run_call(fence, tools, "send_mail", {"recipient": "attacker@evil.com"})
    assert received.calls == []
    record = only_decision(fence)
    assert record.effect == "DENY"
    assert record.resource == 'Recipient::"attacker@evil.com"'


def test_alias_spelled_recipient_runs_for_exactly_the_decided_value(
    fence: Fence, tools: list[BaseTool], received: Received
) -> None:
    run_call(fence, tools, "send_mail", {"recipient": "bob@acme.test", "body": "hi"})
    assert received.calls == [("send_mail", {"to": "bob@acme.test", "body": "hi"})]
    assert only_decision(fence).resource == 'Recipient::"bob@acme.test"'


def test_name_and_alias_both_given_is_ambiguous_when_both_spellings_are_accepted(
    fence: Fence, tools: list[BaseTool], received: Received
) -> None:
    run_call(
        fence, tools, "send_mail_open", {"to": "bob@acme.test", "recipient": "attacker@evil.com"}
    )
    assert received.calls == []
    reason = only_decision(fence).reasons[0]
    assert "is given more than once, as 'recipient' and 'to'" in reason


def test_two_alias_choices_given_at_once_are_ambiguous(fence: Fence) -> None:
    d = decide(fence, "pay", {"account": "acc-1", "amount": 5, "amt": 50000})
    assert d.effect is Effect.DENY
    assert "argument 'amount': is given more than once, as 'amount' and 'amt'" in d.reasons[0]


def test_second_alias_choice_is_decided_and_metered(fence: Fence) -> None:
    d = decide(fence, "pay", {"account": "acc-1", "amt": 50000})
    assert d.effect is Effect.DENY  # 50000 > 100: the alias value is the one decided
    allowed = decide(fence, "pay", {"account": "acc-1", "amt": 50})
    assert allowed.effect is Effect.ALLOW
    assert allowed.facts.args == {"account": "acc-1", "amount": 50.0}


@pytest.mark.parametrize(
    "extra",
    [{"bcc": "attacker@evil.com"}, {"Recipient": "attacker@evil.com"}, {"to ": "x@evil.com"}],
    ids=["bcc", "case-folded-alias", "trailing-space-key"],
)
def test_keys_the_schema_would_drop_are_refused(
    fence: Fence, tools: list[BaseTool], received: Received, extra: dict[str, str]
) -> None:
    run_call(fence, tools, "send_mail", {"recipient": "bob@acme.test", **extra})
    assert received.calls == []
    reason = only_decision(fence).reasons[0]
    assert "unknown argument(s)" in reason and repr(next(iter(extra))) in reason


def test_unknown_key_inside_a_nested_model_is_refused(fence: Fence) -> None:
    d = decide(fence, "invoice", {"invoice": {"account": "a", "amount": 5, "amount_due": 9e9}})
    assert d.effect is Effect.DENY
    assert "argument 'invoice': unknown argument(s) 'amount_due'" in d.reasons[0]


# --- defaults and coercion ------------------------------------------------------------------


def test_default_filled_in_is_what_the_policy_sees(
    fence: Fence, tools: list[BaseTool], received: Received
) -> None:
    # dry_run defaults to true: the policy permits dry runs, and the tool gets dry_run=True.
    run_call(fence, tools, "delete_file", {"path": "/srv/a"})
    assert received.calls == [("delete_file", {"path": "/srv/a", "dry_run": True})]
    assert only_decision(fence).effect == "ALLOW"


def test_explicit_false_overrides_the_default_and_is_denied(
    fence: Fence, tools: list[BaseTool], received: Received
) -> None:
    run_call(fence, tools, "delete_file", {"path": "/srv/a", "dry_run": "false"})
    assert received.calls == []
    assert only_decision(fence).effect == "DENY"


def test_numeric_string_is_coerced_before_the_decision(fence: Fence) -> None:
    d = decide(fence, "pay", {"account": "acc-1", "amount": "50000"})
    assert d.effect is Effect.DENY
    assert d.facts.args["amount"] == 50000.0


def test_float_written_as_integer_string_for_a_long_is_decided_as_the_tool_reads_it(
    fence: Fence,
) -> None:
    d = decide(fence, "batch", {"count": "11"})
    assert d.effect is Effect.DENY
    assert decide(fence, "batch", {"count": 10.0}).effect is Effect.ALLOW


def test_negative_amount_fails_the_two_sided_rule(fence: Fence) -> None:
    assert decide(fence, "pay", {"account": "acc-1", "amount": -50000}).effect is Effect.DENY


# --- decimals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("pay", {"account": "a", "amount": 100.00004}),
        ("pay", {"account": "a", "amount": "100.00004"}),
        ("pay", {"account": "a", "amount": 0.00001}),
        ("invoice", {"invoice": {"account": "a", "amount": 9999.99995}}),
    ],
    ids=["just-over-limit", "as-string", "tiny", "under-ceiling-by-rounding"],
)
def test_amount_cedar_cannot_hold_exactly_is_refused_not_rounded(
    fence: Fence, tool: str, args: dict[str, Any]
) -> None:
    d = decide(fence, tool, args)
    assert d.effect is Effect.DENY
    assert "has more than 4 decimal places" in d.reasons[0]


def test_amount_with_four_places_is_decided_exactly(fence: Fence) -> None:
    assert decide(fence, "pay", {"account": "a", "amount": 100.0}).effect is Effect.ALLOW
    assert decide(fence, "pay", {"account": "a", "amount": 100.0001}).effect is Effect.DENY


# --- the tool runs on its own copy ----------------------------------------------------------


def test_arguments_changed_after_the_decision_do_not_change_what_runs(
    fence: Fence, received: Received, tools: list[BaseTool]
) -> None:
    # A callback holding the model's tool call changes it after the fence decided: the tool
    # still runs the decided copy, and the outcome's metered amount is the decided one.
    from langgraph.prebuilt.tool_node import ToolCallRequest

    pay = next(t for t in tools if t.name == "pay")
    call = tool_call("pay", {"account": "acc-1", "amount": 50}, "c9")
    request = ToolCallRequest(tool_call=call, tool=pay, state={"messages": []}, runtime=None)

    def execute(req: ToolCallRequest) -> Any:
        call["args"]["amount"] = 99999  # the original is changed after the decision
        assert req.tool_call["args"] is not call["args"]
        return pay.invoke({**req.tool_call, "type": "tool_call"})

    fence._resolver = lambda _config: 'User::"alice"'
    fence.wrap_tool_call(request, execute)
    assert received.calls == [("pay", {"account": "acc-1", "amount": 50.0})]
    log = fence.log
    assert isinstance(log, MemoryLog)
    [outcome] = [r for r in log.records if isinstance(r, OutcomeRecord)]
    assert outcome.metered is not None and outcome.metered.amount == "50.0000"


def test_recorded_request_holds_the_validated_values(fence: Fence, tools: list[BaseTool]) -> None:
    run_call(fence, tools, "pay", {"account": "acc-1", "amount": "40"})
    log = fence.log
    assert isinstance(log, MemoryLog)
    record = only_decision(fence)
    assert record.request_blob is not None
    request = json.loads(log.blob(record.request_blob) or b"{}")
    assert request["context"]["args"]["amount"] == {"__extn": {"fn": "decimal", "arg": "40.0000"}}


def test_json_schema_tool_with_undeclared_key_is_refused(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def upload(**kwargs: Any) -> str:
        seen.append(kwargs)
        return "ok"

    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    upload_tool = StructuredTool.from_function(
        func=upload, name="upload", description="upload", args_schema=schema
    )
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "r.cedar").write_text(
        'permit (principal, action == Action::"upload", resource) '
        'when { context.args.name == "report" };'
    )
    with Fence.from_directory(tmp_path / "p", tools=[upload_tool]) as fence:
        d = fence.decide(
            "upload",
            {"name": "report", "target": "https://evil.example"},
            principal="alice",
        )
        assert d.effect is Effect.DENY
        assert "('target' was unexpected)" in d.reasons[0]
        assert "policy would not see them" in d.reasons[0]
        ok = fence.decide("upload", {"name": "report"}, principal="alice")
        assert ok.effect is Effect.ALLOW


def test_run_results_name_the_refusal(fence: Fence, tools: list[BaseTool]) -> None:
    message = run_call(fence, tools, "send_mail", {"recipient": "b@acme.test", "cc": "x"})
    assert message.status == "error"
    assert "unknown argument(s) 'cc'" in str(message.content)


def test_tool_with_injected_arguments_is_bound_on_the_model_arguments_only(
    tmp_path: Path,
) -> None:
    got: list[tuple[str, str]] = []

    @tool
    def notify(to: str, call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Notify someone."""
        got.append((to, call_id))
        return "ok"

    govern(notify, resource=Resource("Recipient", arg="to"))
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "r.cedar").write_text(
        'permit (principal, action, resource == Recipient::"bob@acme.test");'
    )
    (tmp_path / "p" / "t.cedarschema").write_text("entity User;\nentity Recipient;\n")
    with Fence.from_directory(tmp_path / "p", tools=[notify]) as fence:
        graph = graph_for(
            fence,
            [notify],
            batch(
                tool_call("notify", {"to": "bob@acme.test"}, "n1"),
                tool_call("notify", {"to": "eve@evil.com"}, "n2"),
            ),
        )
        result = graph.invoke({"messages": [("user", "go")]}, config("t1"))
    assert got == [("bob@acme.test", "n1")]
    assert tool_messages(result)["n2"].status == "error"
    # The injected argument is the framework's, not the model's: not visible to policy.
    assert '"call_id"' not in fence.engine.generated_schema
