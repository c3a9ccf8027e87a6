"""Verified principals in a real create_agent run: the token's groups decide, a bad token denies.

The identity provider is the test's own (keys generated here, the JWKS served over HTTP by a
local server), the log a signed SQLite file, the spans exported in memory: the auditor then
verifies and replays the log, and neither the log file nor any span holds the token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentfence import (
    BearerToken,
    BearerTokenResolver,
    Fence,
    MemoryLog,
    PrincipalRejected,
    replay,
    verify_log,
)
from agentfence._signing import Signer
from agentfence.log import SignedLog
from agentfence.records import DecisionRecord
from agentfence.testing import tool_call
from agentfence.tracing import Telemetry
from tests.conftest import Ran
from tests.graphs import agent_for, batch, tool_messages
from tests.tokens import AUDIENCE, ISSUER, Provider, serve_jwks

POLICY = """\
@id("finance-pays")
@reason("finance may pay")
permit (principal in Group::"finance", action == Action::"pay", resource);
"""


@pytest.fixture(scope="module")
def idp() -> Provider:
    return Provider()


@pytest.fixture
def jwks_url(idp: Provider) -> Iterator[str]:
    with serve_jwks(idp.jwks()) as (url, _):
        yield url


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "people.cedarschema").write_text(
        "entity Group;\nentity User in [Group];\n", encoding="utf-8"
    )
    (folder / "pay.cedar").write_text(POLICY, encoding="utf-8")
    return folder


class Desk:
    """A fence with the resolver, a signed log file and an in-memory span exporter."""

    def __init__(self, policies: Path, tools: list[BaseTool], url: str, db: Path) -> None:
        self.db = db
        self.signer = Signer.generate("desk-log")
        self.spans = InMemorySpanExporter()
        self.checkpoints = ""
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.fence = Fence.from_directory(
            policies,
            tools=tools,
            log=SignedLog.open(db, signer=self.signer),
            principal_resolver=BearerTokenResolver(issuer=ISSUER, audience=AUDIENCE, jwks_url=url),
            telemetry=Telemetry(tracer_provider=provider),
        )

    def pay(self, tools: list[BaseTool], token: str, thread: str) -> Any:
        agent = agent_for(
            self.fence, tools, batch(tool_call("pay", {"account": "acc-1", "amount": 5}, "p"))
        )
        config = {"configurable": {"thread_id": thread, "agentfence_token": BearerToken(token)}}
        result = agent.invoke({"messages": [("user", "pay")]}, config)
        self.checkpoints += repr(list(agent.checkpointer.list(None)))
        return tool_messages(result)["p"]

    def decisions(self) -> list[DecisionRecord]:
        with SignedLog.open(self.db, signer=self.signer) as log:
            return [r for _, r in log.read() if isinstance(r, DecisionRecord)]


@pytest.fixture
def desk(policies: Path, tools: list[BaseTool], jwks_url: str, tmp_path: Path) -> Desk:
    return Desk(policies, tools, jwks_url, tmp_path / "fence.db")


def test_groups_claim_decides_and_a_bad_token_denies(
    idp: Provider, desk: Desk, tools: list[BaseTool], ran: Ran
) -> None:
    finance = idp.token("ed-1", sub="fran", groups=["finance"], jti="tok-fran")
    support = idp.token("rsa-1", sub="sam", groups=["support"], jti="tok-sam")
    expired = idp.token("ec-1", sub="fran", exp=int(time.time()) - 60, jti="tok-old")
    allowed = desk.pay(tools, finance, "t-fran")
    denied = desk.pay(tools, support, "t-sam")
    refused = desk.pay(tools, f"Bearer {expired}", "t-old")

    # Only the token whose groups claim says finance ran the tool.
    assert ran.calls == [("pay", {"account": "acc-1", "amount": 5.0})]
    assert allowed.status == "success"
    assert denied.status == "error"
    assert "no policy permits User::\"sam\" to call 'pay'" in str(denied.content)
    # The bad token is a denial that says why, not a bare "could not be decided".
    assert refused.status == "error"
    assert str(refused.content).startswith(
        "agentfence denied the call to 'pay': the bearer token has expired [decision "
    )

    fran, sam, old = desk.decisions()
    assert (fran.effect, fran.principal, fran.policy_ids) == (
        "ALLOW",
        'User::"fran"',
        ["finance-pays"],
    )
    assert (sam.effect, sam.principal) == ("DENY", 'User::"sam"')
    assert (old.effect, old.principal, old.reasons) == (
        "DENY",
        None,
        ["the bearer token has expired"],
    )
    # The log says which token it was by its ids, for the auditor.
    assert "kid='ec-1'" in old.errors[0] and "jti='tok-old'" in old.errors[0]
    assert "sub='fran'" in old.errors[0]

    # The auditor verifies the log with the public key alone, and replay decides the same:
    # the groups the token gave were recorded with each request.
    verified = verify_log(desk.db, [desk.signer.verifier_key])
    assert verified.decisions == 3
    report = replay(desk.db)
    assert (report.replayed, report.unchanged, report.changes) == (2, 2, ())

    # Neither the log file nor any span (nor LangGraph's checkpoints, given a BearerToken)
    # holds a token, or even a token's signature.
    stored = desk.db.read_bytes() + b"".join(
        p.read_bytes() for p in desk.db.parent.glob("fence.db-*")
    )
    span_text = repr([(s.name, s.attributes, s.events) for s in desk.spans.get_finished_spans()])
    for token in (finance, support, expired):
        signature = token.rsplit(".", 1)[1]
        assert signature.encode() not in stored
        assert signature not in span_text
        assert signature not in desk.checkpoints
        assert token.split(".")[1] not in span_text


def test_run_without_a_token_is_denied_and_recorded(
    desk: Desk, tools: list[BaseTool], ran: Ran
) -> None:
    agent = agent_for(
        desk.fence, tools, batch(tool_call("pay", {"account": "acc-1", "amount": 5}, "p"))
    )
    # A principal named in the config is not read: the resolver decides who the run is.
    config = {"configurable": {"thread_id": "t", "agentfence_principal": 'User::"fran"'}}
    message = tool_messages(agent.invoke({"messages": [("user", "pay")]}, config))["p"]
    assert ran.calls == []
    assert "no bearer token: the run did not carry one" in str(message.content)
    [record] = desk.decisions()
    assert record.effect == "DENY" and record.principal is None


def test_token_principal_also_in_entities_json_fails_closed(
    idp: Provider, policies: Path, tools: list[BaseTool], jwks_url: str, tmp_path: Path, ran: Ran
) -> None:
    # entities.json already gives fran her groups: a token's groups cannot be merged with
    # them, so the call is refused (fail closed) rather than decided on either set alone.
    (policies / "entities.json").write_text(
        '[{"uid": {"type": "User", "id": "fran"}, "attrs": {}, "parents": []}]',
        encoding="utf-8",
    )
    desk = Desk(policies, tools, jwks_url, tmp_path / "other.db")
    message = desk.pay(tools, idp.token(sub="fran", groups=["finance"]), "t")
    assert ran.calls == []
    assert "could not be evaluated for this call (fail closed)" in str(message.content)
    [record] = desk.decisions()
    assert "the request's own entities (the principal's groups)" in record.errors[0]


def test_async_agent_run_verifies_the_token_too(
    idp: Provider, desk: Desk, tools: list[BaseTool], ran: Ran
) -> None:
    for sub, groups in (("fran", ["finance"]), ("sam", ["support"])):
        call = tool_call("pay", {"account": "acc-2", "amount": 7}, "p")
        agent = agent_for(desk.fence, tools, batch(call))
        token = BearerToken(idp.token("ed-1", sub=sub, groups=groups))
        config = {"configurable": {"thread_id": f"a-{sub}", "agentfence_token": token}}
        asyncio.run(agent.ainvoke({"messages": [("user", "pay")]}, config))
    assert ran.calls == [("pay", {"account": "acc-2", "amount": 7.0})]
    assert [(d.principal, d.effect) for d in desk.decisions()] == [
        ('User::"fran"', "ALLOW"),
        ('User::"sam"', "DENY"),
    ]


def test_any_resolver_can_refuse_with_a_reason_and_other_errors_stay_hidden(
    policies: Path, tools: list[BaseTool], ran: Ran
) -> None:
    def resolver(config: Any) -> str:
        if config["configurable"].get("kind") == "rejected":
            raise PrincipalRejected("the session was revoked", "session='s-9'")
        raise RuntimeError("directory timeout at 10.0.0.7")

    log = MemoryLog()
    fence = Fence.from_directory(policies, tools=tools, log=log, principal_resolver=resolver)
    messages = []
    for kind in ("rejected", "broken"):
        call = tool_call("pay", {"account": "a", "amount": 1}, kind)
        agent = agent_for(fence, tools, batch(call))
        config = {"configurable": {"thread_id": kind, "kind": kind}}
        messages.append(tool_messages(agent.invoke({"messages": [("user", "pay")]}, config))[kind])
    rejected, broken = messages
    assert ran.calls == []
    assert str(rejected.content).startswith(
        "agentfence denied the call to 'pay': the session was revoked [decision "
    )
    assert "session='s-9'" not in str(rejected.content)
    # Any other failure keeps the fixed fail-closed text: its message stays in the log.
    assert "could not be decided and recorded (fail closed)" in str(broken.content)
    assert "10.0.0.7" not in str(broken.content)
    first, second = log.decisions()
    assert first.reasons == ["the session was revoked"]
    assert first.errors == ["PrincipalRejected: the session was revoked (session='s-9')"]
    assert second.reasons == [
        "the call could not be decided (fail closed): directory timeout at 10.0.0.7"
    ]


def test_groups_given_with_a_configured_principal_decide_and_replay(
    policies: Path, tools: list[BaseTool], tmp_path: Path, ran: Ran
) -> None:
    signer = Signer.generate("desk-log")
    db = tmp_path / "groups.db"
    fence = Fence.from_directory(policies, tools=tools, log=SignedLog.open(db, signer=signer))
    for name, parents in (("zoe", ['Group::"finance"']), ("max", [])):
        call = tool_call("pay", {"account": "a", "amount": 1}, name)
        agent = agent_for(fence, tools, batch(call))
        principal = {"type": "User", "id": name, "parents": parents}
        config = {"configurable": {"thread_id": name, "agentfence_principal": principal}}
        agent.invoke({"messages": [("user", "pay")]}, config)
    assert ran.calls == [("pay", {"account": "a", "amount": 1.0})]
    report = replay(db)
    assert (report.replayed, report.unchanged, report.changes) == (2, 2, ())
