"""The inbox's answer API (``/api/v1/``): bearer tokens, LangChain's decision format, and
every abuse the answer-API issue lists, each test named for the attack.

The world is the inbox's: the test policies (fran may approve payments; bob is a declared
approver outside the finance group; alice is in finance but is the requester), a real
LangGraph graph whose ``pay`` call waits for approval in a signed log, inbox accounts for
all three, and an API token each. The happy path runs over a real uvicorn server on a free
loopback port; the abuse cases use Starlette's TestClient over the same application (the
same handlers, without a socket), and each checks that nothing was stored.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import threading
import time
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from langchain_core.tools import BaseTool
from starlette.testclient import TestClient
from typer.testing import CliRunner

from agentfence import Fence
from agentfence._signing import Signer, write_private_key
from agentfence._storage.tables import LogBackend
from agentfence.approvals import StoredApproval
from agentfence.cli import app as cli_app
from agentfence.config import Settings
from agentfence.errors import ConfigurationError
from agentfence.inbox import Inbox, create_app
from agentfence.inbox.accounts import IssuedToken
from agentfence.inbox.api import API_MAX_BODY
from agentfence.inbox.app import SESSION_COOKIE
from agentfence.inbox.sensitive import MASK
from agentfence.log import parse_entry
from agentfence.records import ApprovalAnswerRecord
from agentfence.testing import tool_call
from tests.conftest import Ran, approver_key
from tests.graphs import batch, config, graph_for, tool_messages

PASSWORD = "correct horse battery staple"
MINUTE = 60 * 1_000_000
DAY = 24 * 3600
BASE = "http://127.0.0.1:8765"


class Clock:
    """A settable clock (microseconds) shared by the fence and the inbox."""

    def __init__(self) -> None:
        self.now = 1_800_000_000_000_000

    def __call__(self) -> int:
        return self.now


@dataclass
class World:
    fence: Fence
    graph: Any
    inbox: Inbox
    clock: Clock
    ran: Ran
    request_id: str
    db: str
    tokens: dict[str, IssuedToken]

    def client(self) -> TestClient:
        return TestClient(create_app(self.inbox), base_url=BASE)

    def stored(self) -> StoredApproval:
        stored = self.inbox.store.get(self.request_id)
        assert stored is not None
        return stored

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name].token}"}

    def answers_in_log(self) -> list[ApprovalAnswerRecord]:
        reader = LogBackend(self.db, create=False, readonly=True)
        try:
            rows = reader.select(kind="agentfence.approval_answer/v1")
            found = [parse_entry(row.body)[1] for row in rows]
        finally:
            reader.db.close()
        assert all(isinstance(a, ApprovalAnswerRecord) for a in found)
        return found  # type: ignore[return-value]


@pytest.fixture
def world(
    tmp_path: Path,
    policy_dir: Path,
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    ran: Ran,
    store_url: str,
) -> Iterator[World]:
    """A paused run, an inbox over its log, and a token for fran, bob and alice."""
    approvers = policy_dir / "approvers.toml"
    approvers.write_text(
        approvers.read_text() + '\n[inbox]\nsensitive_args = { pay = ["account"] }\n'
    )
    clock = Clock()
    fence = make_fence(log=store_url, signing_key=Signer.generate("api-test"), clock=clock)
    calls = (
        tool_call("read_record", {"record_id": "r-1"}, "read-1"),
        tool_call("pay", {"account": "acc-7", "amount": 900.0, "memo": "invoice 12"}, "pay-1"),
    )
    graph = graph_for(fence, tools, batch(*calls))
    assert "__interrupt__" in graph.invoke({"messages": [("user", "pay")]}, config())
    [stored] = fence.approvals.list()
    inbox = Inbox.open(
        store_url, policies=policy_dir, tools=tools, settings=Settings.from_env({}), clock=clock
    )
    tokens = {}
    for name in ("fran", "bob", "alice"):
        signer = approver_key(name)
        key = write_private_key(tmp_path / f"{name}.key", signer)
        inbox.accounts.add(
            name,
            principal=f'User::"{name}"',
            key_path=key,
            key_name=f"{signer.name}+{signer.key_id:08x}",
            password=PASSWORD,
        )
        tokens[name] = inbox.accounts.issue_token(name, expires_seconds=30 * DAY, note="test")
    yield World(fence, graph, inbox, clock, ran, stored.request.request_id, store_url, tokens)
    fence.close()


def secret_of(token: str) -> str:
    """The secret part of ``aft_<id>_<secret>`` (the secret may itself contain ``_``)."""
    return token.split("_", 2)[2]


def answer_url(world: World) -> str:
    return f"/api/v1/requests/{world.request_id}/answer"


def post_answer(
    client: TestClient, world: World, body: Any, *, name: str = "fran", **headers: str
) -> Any:
    return client.post(answer_url(world), json=body, headers={**world.bearer(name), **headers})


def error_of(response: Any) -> tuple[int, str, str]:
    """(status, code, message) of an API error, checking its JSON shape."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return response.status_code, body["error"]["code"], body["error"]["message"]


def assert_nothing_stored(world: World) -> None:
    stored = world.stored()
    assert stored.answer is None, stored.answer
    assert stored.status(world.clock.now) == "pending"


# --- the happy path, over a real server ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(world: World) -> Iterator[str]:
    """The inbox application under uvicorn on a free loopback port, with access logs on."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(world.inbox), host="127.0.0.1", port=port, log_level="info", access_log=True
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start within 30 seconds")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def http(
    method: str, url: str, token: str | None = None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_approver_answers_over_a_real_server_and_the_call_runs_once(
    world: World, served: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    token = world.tokens["fran"].token
    status, listed = http("GET", f"{served}/api/v1/requests", token)
    assert status == 200
    assert listed["others"] == 0
    [item] = listed["requests"]
    assert item["request_id"] == world.request_id
    assert (item["tool"], item["principal"]) == ("pay", 'User::"alice"')
    assert item["reasons"] == ["payments over 100 need finance"]
    assert item["allowed_decisions"] == ["approve", "edit", "reject", "respond"]

    status, shown = http("GET", f"{served}/api/v1/requests/{world.request_id}", token)
    assert status == 200
    assert shown["status"] == "pending"
    assert shown["args"] == {"account": MASK, "amount": 900.0, "memo": "invoice 12"}
    assert shown["masked_args"] == ["account"]
    assert shown["action_request"]["name"] == "pay"
    assert shown["review_config"] == {
        "action_name": "pay",
        "allowed_decisions": ["approve", "edit", "reject", "respond"],
    }
    status, revealed = http("GET", f"{served}/api/v1/requests/{world.request_id}?reveal=1", token)
    assert revealed["args"]["account"] == "acc-7"

    status, done = http(
        "POST",
        f"{served}/api/v1/requests/{world.request_id}/answer",
        token,
        {"decisions": [{"type": "approve"}]},
    )
    assert (status, done["status"], done["decision"]) == (200, "answered", "approve")
    assert done["approver"] == 'User::"fran"'
    stored = world.stored().answer
    assert stored is not None
    assert stored["key"] == f"fran+{approver_key('fran').key_id:08x}"  # signed with fran's key

    out = world.fence.resume(world.graph, config())
    assert world.ran.names() == ["read_record", "pay"]
    assert tool_messages(out)["pay-1"].status == "success"
    assert [(a.answer, a.verdict, a.approver) for a in world.answers_in_log()] == [
        ("approve", "accepted", 'User::"fran"')
    ]
    [used] = world.inbox.accounts.tokens("fran")
    assert used.last_used_us == world.clock.now
    # The access log has the requests, never the token.
    assert f"/api/v1/requests/{world.request_id}/answer" in caplog.text
    assert token not in caplog.text
    assert secret_of(token) not in caplog.text


# --- who may call ----------------------------------------------------------------------------


def test_a_call_without_a_token_is_refused(world: World) -> None:
    client = world.client()
    for response in (
        client.get("/api/v1/requests"),
        client.post(answer_url(world), json={"type": "approve"}),
    ):
        status, code, message = error_of(response)
        assert (status, code) == (401, "no_token")
        assert "send `Authorization: Bearer <token>`" in message
        assert "agentfence inbox token issue NAME" in message
        assert response.headers["www-authenticate"] == 'Bearer realm="agentfence"'
    assert_nothing_stored(world)


def test_a_malformed_or_guessed_token_is_refused_without_saying_which(world: World) -> None:
    client = world.client()
    real = world.tokens["fran"]
    wrong_secret = real.token[:-4] + ("AAAA" if not real.token.endswith("AAAA") else "BBBB")
    unknown_id = "aft_0000000000000000_" + secret_of(real.token)
    for header in (f"Bearer {wrong_secret}", f"Bearer {unknown_id}", "Bearer aft_nonsense"):
        response = client.post(
            answer_url(world), json={"type": "approve"}, headers={"Authorization": header}
        )
        status, code, message = error_of(response)
        assert (status, code) == (401, "bad_token"), header
        assert message.startswith("the API token is not one this inbox issued"), message
    for header in ("Basic ZnJhbjpwYXNzd29yZA==", "Bearer", "Bearer  "):
        response = client.get("/api/v1/requests", headers={"Authorization": header})
        assert error_of(response)[:2] == (401, "bad_token"), header
        assert "must be `Bearer <token>`" in error_of(response)[2]
    assert_nothing_stored(world)


def test_a_revoked_token_is_refused(world: World) -> None:
    client = world.client()
    assert client.get("/api/v1/requests", headers=world.bearer("fran")).status_code == 200
    world.inbox.accounts.revoke_token(world.tokens["fran"].info.id)
    response = post_answer(client, world, {"type": "approve"})
    status, code, message = error_of(response)
    assert (status, code) == (401, "revoked_token")
    assert f"API token {world.tokens['fran'].info.id} was revoked" in message
    assert "agentfence inbox token issue fran" in message
    assert_nothing_stored(world)


def test_an_expired_token_is_refused(world: World) -> None:
    client = world.client()
    world.clock.now += 30 * DAY * 1_000_000 - 1
    assert client.get("/api/v1/requests", headers=world.bearer("fran")).status_code == 200
    world.clock.now += 1
    status, code, message = error_of(post_answer(client, world, {"type": "approve"}))
    assert (status, code) == (401, "expired_token")
    assert (
        f"API token {world.tokens['fran'].info.id} has expired; ask the inbox operator" in message
    )


def test_a_token_dies_with_its_account_when_it_is_removed_or_replaced(
    world: World, tmp_path: Path
) -> None:
    client = world.client()
    world.inbox.accounts.remove("bob")
    assert error_of(client.get("/api/v1/requests", headers=world.bearer("bob")))[:2] == (
        401,
        "bad_token",
    )
    # fran's account re-pointed (say, at another principal): her old token must not follow.
    signer = approver_key("fran")
    world.inbox.accounts.add(
        "fran",
        principal='User::"fran"',
        key_path=tmp_path / "fran.key",
        key_name=f"{signer.name}+{signer.key_id:08x}",
        password=PASSWORD,
        replace=True,
    )
    assert error_of(post_answer(client, world, {"type": "approve"}))[:2] == (401, "bad_token")
    assert world.inbox.accounts.tokens("fran") == []
    assert_nothing_stored(world)


# --- what a token may do ------------------------------------------------------------------


def test_another_approvers_request_is_refused_and_nothing_is_stored(world: World) -> None:
    client = world.client()
    listed = client.get("/api/v1/requests", headers=world.bearer("bob")).json()
    assert listed == {"requests": [], "others": 1}
    status, code, message = error_of(
        client.get(f"/api/v1/requests/{world.request_id}", headers=world.bearer("bob"))
    )
    assert (status, code) == (403, "not_allowed")
    assert message.startswith('User::"bob" may not see this request')
    status, code, message = error_of(post_answer(client, world, {"type": "approve"}, name="bob"))
    assert (status, code) == (403, "not_allowed")
    assert message.startswith('User::"bob" may not answer this request')
    assert_nothing_stored(world)


def test_self_approval_through_the_api_is_refused(world: World) -> None:
    client = world.client()
    assert client.get("/api/v1/requests", headers=world.bearer("alice")).json()["requests"] == []
    status, code, message = error_of(
        post_answer(client, world, {"decisions": [{"type": "approve"}]}, name="alice")
    )
    assert (status, code) == (403, "self_approval")
    assert message == 'User::"alice" requested this call and cannot approve it'
    assert_nothing_stored(world)


def test_a_cross_site_page_riding_a_session_cookie_cannot_answer(world: World) -> None:
    client = world.client()
    page = client.get("/sign-in")
    form_token = page.text.split('name="form_token" value="')[1].split('"')[0]
    signed = client.post(
        "/sign-in",
        data={"form_token": form_token, "name": "fran", "password": PASSWORD},
        follow_redirects=False,
    )
    assert signed.status_code == 303 and SESSION_COOKIE in client.cookies
    evil = "https://evil.example"
    # fran's browser, on another site: her session cookie goes along, but cookies are no
    # credential here.
    for headers in ({"Origin": evil}, {"Sec-Fetch-Site": "cross-site"}, {}):
        response = client.post(answer_url(world), json={"type": "approve"}, headers=headers)
        status, code, _ = error_of(response)
        expected = (401, "no_token") if not headers else (403, "cross_site")
        assert (status, code) == expected, headers
    # Even with a token (leaked into a page), a cross-origin request is refused.
    status, code, message = error_of(post_answer(client, world, {"type": "approve"}, Origin=evil))
    assert (status, code) == (403, "cross_site")
    assert f"Origin {evil!r} is not {BASE!r}" in message
    # A simple (no-preflight) cross-site POST cannot be JSON.
    response = client.post(
        answer_url(world),
        content=b'{"type": "approve"}',
        headers={**world.bearer("fran"), "Content-Type": "text/plain"},
    )
    assert error_of(response)[:2] == (415, "unsupported_media_type")
    # CORS preflight: refused, and never an Access-Control-Allow-* header.
    preflight = client.options(
        answer_url(world),
        headers={
            "Origin": evil,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert error_of(preflight)[:2] == (405, "cors_refused")
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]
    assert_nothing_stored(world)


def test_a_replayed_answer_is_refused_and_the_fence_sees_one_answer(world: World) -> None:
    client = world.client()
    first = post_answer(client, world, {"decisions": [{"type": "approve"}]})
    assert first.status_code == 200, first.text
    stored_first = world.stored().answer
    replay = post_answer(client, world, {"decisions": [{"type": "approve"}]})
    status, code, message = error_of(replay)
    assert (status, code) == (409, "answered")
    assert message == (
        f"request {world.request_id} is already answered; a request takes one answer"
    )
    assert world.stored().answer == stored_first
    world.fence.resume(world.graph, config())
    assert world.ran.names() == ["read_record", "pay"]
    # Replayed after the thread resumed: still refused, and the call does not run again.
    assert post_answer(client, world, {"type": "approve"}).status_code == 409
    assert world.fence.resume(world.graph, config()) is None
    assert world.ran.names() == ["read_record", "pay"]
    assert len(world.answers_in_log()) == 1


def test_an_oversized_body_is_refused(world: World) -> None:
    client = world.client()
    huge = {"type": "reject", "message": "x" * API_MAX_BODY}
    status, code, message = error_of(post_answer(client, world, huge))
    assert (status, code) == (413, "too_large")
    assert f"the body is over {API_MAX_BODY // 1024} KiB" in message

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is counted while reading
        yield b'{"type": "reject", "message": "'
        for _ in range(API_MAX_BODY // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = client.post(
        answer_url(world),
        content=chunks(),
        headers={**world.bearer("fran"), "Content-Type": "application/json"},
    )
    assert error_of(response)[:2] == (413, "too_large")
    assert_nothing_stored(world)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{", 400, "the body is not JSON"),
        (b'{"type": NaN}', 400, "the body is not JSON (NaN is not JSON)"),
        (b"[]", 422, "the body must be a JSON object, not a list"),
        (b'{"decisions": "approve"}', 422, "decisions must be a list of exactly 1 decision"),
        (b'{"decisions": []}', 422, "(this request holds one call), got 0"),
        (b'{"decisions": [{"type": "approve"}, {"type": "approve"}]}', 422, "got 2"),
        (b'{"decisions": ["approve"]}', 422, "decisions[0] must be an object, not a string"),
        (b'{"decisions": [{"type": 1}]}', 422, "decisions[0].type must be one of approve"),
        (b'{"type": "approve", "extra": 1}', 422, "unexpected field extra in a approve"),
        (b'{"type": "reject", "message": 5}', 422, "message must be a string, got a number"),
        (b'{"type": "reject"}', 422, "say why you reject the call"),
        (b'{"type": "edit"}', 422, "edited_action must be an object"),
        (
            b'{"type": "edit", "edited_action": {"name": "wipe", "args": {"path": "/"}}}',
            422,
            "edited_action.name must be 'pay' (an edit changes the arguments, never the tool)",
        ),
        (
            b'{"type": "edit", "edited_action": {"name": "pay", "args": []}}',
            422,
            "edited_action.args must be an object of all the call's arguments, got a list",
        ),
        (
            b'{"type": "edit", "edited_action": {"name": "pay", "args": {"account": "a", '
            b'"amount": "lots"}}}',
            422,
            "the edited arguments do not fit 'pay'",
        ),
    ],
)
def test_malformed_json_and_wrong_types_are_refused_naming_the_field(
    world: World, body: bytes, status: int, message: str
) -> None:
    response = world.client().post(
        answer_url(world),
        content=body,
        headers={**world.bearer("fran"), "Content-Type": "application/json"},
    )
    got_status, _, got_message = error_of(response)
    assert got_status == status, got_message
    assert message in got_message
    assert_nothing_stored(world)


def test_a_decision_type_outside_the_review_config_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = world.client()
    # Older inbox clients' words are not decisions here.
    for kind in ("accept", "ignore", "response"):
        status, code, message = error_of(post_answer(client, world, {"type": kind}))
        assert (status, code) == (422, "decision_not_allowed"), kind
        assert f"type {kind!r} is not a decision; use approve, edit, reject or respond" in message
    # A review config that allows only approve and reject: an edit is refused, by the path the
    # inbox's form shares.
    import agentfence.inbox.inbox as inbox_module

    real = inbox_module.single_request

    def narrower(request: Any) -> dict[str, Any]:
        payload = real(request)
        payload["review_configs"] = [
            {"action_name": request.tool, "allowed_decisions": ["approve", "reject"]}
        ]
        return payload

    monkeypatch.setattr(inbox_module, "single_request", narrower)
    edit = {
        "type": "edit",
        "edited_action": {"name": "pay", "args": {"account": "acc-7", "amount": 50.0}},
    }
    status, code, message = error_of(post_answer(client, world, edit))
    assert (status, code) == (422, "decision_not_allowed")
    assert message == "the request's review config allows approve, reject, not 'edit'"
    shown = client.get(f"/api/v1/requests/{world.request_id}", headers=world.bearer("fran"))
    assert shown.json()["allowed_decisions"] == ["approve", "reject"]
    assert_nothing_stored(world)


def test_a_respond_without_a_reply_is_refused(world: World) -> None:
    status, code, message = error_of(post_answer(world.client(), world, {"type": "respond"}))
    assert (status, code) == (422, "invalid")
    assert message == "write the reply: the agent's model reads it as the call's result"
    assert_nothing_stored(world)


def test_an_unknown_request_is_not_found(world: World) -> None:
    client = world.client()
    for response in (
        client.get("/api/v1/requests/nope", headers=world.bearer("fran")),
        client.post(
            "/api/v1/requests/nope/answer", json={"type": "approve"}, headers=world.bearer("fran")
        ),
    ):
        status, code, message = error_of(response)
        assert (status, code) == (404, "unknown")
        assert "there is no approval request 'nope'" in message


# --- edit and reject, end to end ------------------------------------------------------------


def test_an_edit_is_checked_signed_and_runs_with_the_edited_arguments(world: World) -> None:
    client = world.client()
    edited = {"account": "acc-7", "amount": 90.0, "memo": "half now"}
    response = post_answer(
        client,
        world,
        {"decisions": [{"type": "edit", "edited_action": {"name": "pay", "args": edited}}]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["decision"] == "edit"
    stored = world.stored().answer
    assert stored is not None and stored["answer"]["edited_args"] == edited
    out = world.fence.resume(world.graph, config())
    assert tool_messages(out)["pay-1"].status == "success"
    assert world.ran.names() == ["read_record", "pay"]
    shown = client.get(f"/api/v1/requests/{world.request_id}", headers=world.bearer("fran"))
    answer = shown.json()["answer"]
    assert (answer["decision"], answer["verdict"]) == ("edit", "accepted")
    assert answer["edited_args"]["account"] == MASK  # sensitive, masked in what is shown


def test_an_edit_echoing_the_mask_of_a_sensitive_argument_is_refused(world: World) -> None:
    client = world.client()
    shown = client.get(f"/api/v1/requests/{world.request_id}", headers=world.bearer("fran"))
    args = dict(shown.json()["args"])  # the account is shown masked
    args["amount"] = 90.0
    status, code, message = error_of(
        post_answer(client, world, {"type": "edit", "edited_action": {"name": "pay", "args": args}})
    )
    assert (status, code) == (422, "invalid")
    assert message == (
        "edited argument 'account' is the mask shown for a sensitive value; send its real "
        "value (read it with ?reveal=1)"
    )
    assert_nothing_stored(world)


def test_a_reject_carries_its_message_to_the_model(world: World) -> None:
    response = post_answer(world.client(), world, {"type": "reject", "message": "not this month"})
    assert response.status_code == 200, response.text
    out = world.fence.resume(world.graph, config())
    assert "not this month" in str(tool_messages(out)["pay-1"].content)
    assert world.ran.names() == ["read_record"]


def test_a_respond_answers_the_model_and_the_call_never_runs(world: World) -> None:
    response = post_answer(
        world.client(), world, {"type": "respond", "message": "pay acc-7 by hand, not here"}
    )
    assert response.status_code == 200, response.text
    stored = world.inbox.store.get(world.request_id)
    assert stored is not None and stored.answer is not None
    assert stored.answer["answer"]["decision"] == "respond"
    out = world.fence.resume(world.graph, config())
    message = tool_messages(out)["pay-1"]
    assert message.status == "success"
    assert "pay acc-7 by hand, not here" in str(message.content)
    assert world.ran.names() == ["read_record"]  # the held pay never ran


# --- tokens at rest and in the CLI ------------------------------------------------------------


def test_tokens_are_stored_hashed_and_never_shown_again(world: World, tmp_path: Path) -> None:
    issued = world.tokens["fran"]
    assert issued.token.startswith(f"aft_{issued.info.id}_")
    assert len(secret_of(issued.token)) == 43  # 32 random bytes, base64url
    assert issued.token not in repr(issued)
    if world.db.startswith("sqlite:///"):
        raw = Path(world.db.removeprefix("sqlite:///")).read_bytes()
        assert issued.token.encode() not in raw
        assert secret_of(issued.token).encode() not in raw
        with sqlite3.connect(world.db.removeprefix("sqlite:///")) as conn:
            [row] = conn.execute(
                "SELECT token_hash FROM inbox_api_tokens WHERE id = ?", (issued.info.id,)
            ).fetchall()
        assert len(row[0]) == 64 and issued.token not in row[0]


def test_token_issue_list_and_revoke_from_the_cli(world: World) -> None:
    if not world.db.startswith("sqlite:///"):
        pytest.skip("the CLI reads the same store; once is enough")
    runner = CliRunner()
    issued = runner.invoke(
        cli_app,
        [
            "inbox",
            "token",
            "issue",
            "fran",
            "--expires",
            "2h",
            "--note",
            "ci bot",
            "--db",
            world.db,
        ],
    )
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert token.startswith("aft_") and len(token) == 4 + 16 + 1 + 43
    token_id = token.split("_")[1]
    assert f"issued API token {token_id} for fran" in issued.stderr
    assert "It is shown only now" in issued.stderr
    listed = runner.invoke(cli_app, ["inbox", "token", "list", "fran", "--json", "--db", world.db])
    rows = {t["id"]: t for t in json.loads(listed.stdout)["tokens"]}
    assert rows[token_id]["note"] == "ci bot" and rows[token_id]["state"] == "active"
    assert token not in listed.stdout and secret_of(token) not in listed.stdout
    revoked = runner.invoke(cli_app, ["inbox", "token", "revoke", token_id, "--db", world.db])
    assert revoked.exit_code == 0 and f"revoked API token {token_id} of fran" in revoked.stdout
    again = runner.invoke(cli_app, ["inbox", "token", "revoke", token_id, "--db", world.db])
    assert isinstance(again.exception, ConfigurationError)
    assert str(again.exception) == f"API token {token_id} was already revoked"
    nobody = runner.invoke(cli_app, ["inbox", "token", "issue", "nobody", "--db", world.db])
    assert isinstance(nobody.exception, ConfigurationError)
    assert "there is no inbox approver 'nobody'; add them first" in str(nobody.exception)
    bad = runner.invoke(cli_app, ["inbox", "token", "issue", "fran", "--expires", "soon"])
    assert isinstance(bad.exception, ConfigurationError)
    assert "--expires: 'soon' is not a duration like 90s, 15m, 2h or 1d" in str(bad.exception)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_approver_guide_quotes_the_token_commands_help() -> None:
    from agentfence.cli._inbox import token_app

    guide = _flat((Path(__file__).resolve().parents[2] / "docs/approver-guide.md").read_text())
    for command in token_app.registered_commands:
        callback = command.callback
        assert callback is not None and callback.__doc__
        summary = _flat(callback.__doc__.splitlines()[0])
        assert summary in guide, f"{command.name}: {summary!r} is not in the approver guide"
        hints = typing.get_type_hints(callback, include_extras=True)
        for name, hint in hints.items():
            for text in (getattr(m, "help", None) for m in getattr(hint, "__metadata__", ())):
                assert text, f"{command.name}: {name} has no help"
                assert _flat(text) in guide, f"{command.name}: help {text!r} is not quoted"


# --- several answers in one request ---------------------------------------------------------


def second_held(world: World, tools: list[BaseTool], principal: str = 'User::"alice"') -> str:
    """Another held payment, on thread t2, by ``principal``; its request id."""
    call = tool_call("pay", {"account": "acc-8", "amount": 500.0, "memo": "invoice 13"}, "pay-2")
    graph = graph_for(world.fence, tools, batch(call))
    held = graph.invoke(
        {"messages": [("user", "pay")]}, config("t2", agentfence_principal=principal)
    )
    assert "__interrupt__" in held
    [stored] = world.fence.approvals.list(thread="t2")
    return stored.request.request_id


def post_answers(client: TestClient, world: World, body: Any, name: str = "fran") -> Any:
    return client.post("/api/v1/answers", json=body, headers=world.bearer(name))


def test_batch_answers_each_request_with_its_own_signed_answer(
    world: World, tools: list[BaseTool]
) -> None:
    other = second_held(world, tools)
    unknown = "0" * 32
    body = {
        "answers": [
            {"request_id": world.request_id, "decision": {"type": "approve"}},
            {"request_id": unknown, "decision": {"type": "approve"}},
            {"request_id": other, "decision": {"type": "reject", "message": "duplicate"}},
        ]
    }
    response = post_answers(world.client(), world, body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["answered"], data["refused"]) == (2, 1)
    statuses = [(r["request_id"], r["status"]) for r in data["results"]]
    assert statuses == [(world.request_id, "answered"), (unknown, "refused"), (other, "answered")]
    assert data["results"][1]["error"]["code"] == "unknown"
    for request_id, decision in ((world.request_id, "approve"), (other, "reject")):
        stored = world.inbox.store.get(request_id)
        assert stored is not None and stored.answer is not None
        signed = stored.answer["answer"]
        assert (signed["request_id"], signed["action_digest"], signed["decision"]) == (
            request_id,
            stored.request.action_digest,
            decision,
        )


def test_batch_answer_for_a_request_the_approver_may_not_answer_is_refused_alone(
    world: World, tools: list[BaseTool]
) -> None:
    own = second_held(world, tools, principal='User::"fran"')  # fran's own payment
    body = {
        "answers": [
            {"request_id": own, "decision": {"type": "approve"}},
            {"request_id": world.request_id, "decision": {"type": "approve"}},
        ]
    }
    data = post_answers(world.client(), world, body).json()
    refused, answered = data["results"]
    assert refused["status"] == "refused" and refused["error"]["code"] == "self_approval"
    assert "requested this call and cannot approve it" in refused["error"]["message"]
    assert answered["status"] == "answered"
    assert world.inbox.store.get(own).answer is None  # type: ignore[union-attr]


def test_batch_answers_need_a_token_and_a_well_formed_body(world: World) -> None:
    client = world.client()
    body = {"answers": [{"request_id": world.request_id, "decision": {"type": "approve"}}]}
    assert error_of(client.post("/api/v1/answers", json=body))[:2] == (401, "no_token")
    crossing = client.post(
        "/api/v1/answers",
        json=body,
        headers={**world.bearer("fran"), "Origin": "https://evil.example"},
    )
    assert error_of(crossing)[:2] == (403, "cross_site")
    for bad, message in (
        ({"answers": []}, "answers must be a list of 1 to 100 answers, got 0"),
        ([body], "the body must be"),
        ({"answers": [{"request_id": 7, "decision": {}}]}, "answers[0] must be an object"),
    ):
        status, code, text = error_of(post_answers(client, world, bad))
        assert (status, code) == (422, "invalid") and message in text
    malformed = post_answers(
        client,
        world,
        {"answers": [{"request_id": world.request_id, "decision": {"type": "yes"}}]},
    )
    assert malformed.json()["results"][0]["error"]["code"] == "decision_not_allowed"
    assert_nothing_stored(world)
