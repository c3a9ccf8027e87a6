"""The web inbox (agentfence.inbox) through Starlette's TestClient: sign-in, sessions, and
every security property the approver issue lists, each in its own test.

The world: the test policies (fran may approve payments, bob is a declared approver outside
the finance group, alice is in finance but is the requester), a paused graph whose ``pay``
call waits for approval in a signed SQLite log, and inbox accounts for all three.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from langchain_core.tools import BaseTool
from opentelemetry.sdk.trace import TracerProvider
from starlette.testclient import TestClient
from typer.testing import CliRunner

from agentfence import Fence
from agentfence._signing import Signer, write_private_key
from agentfence.approvals import ApprovalAnswer, ApprovalRefused, StoredApproval, check_answer
from agentfence.cli import app as cli_app
from agentfence.config import Settings
from agentfence.errors import ConfigurationError, PolicyLoadError
from agentfence.inbox import Inbox, create_app
from agentfence.inbox.accounts import MAX_FAILURES, ApproverAccounts, check_password
from agentfence.inbox.app import SESSION_COOKIE, SIGN_IN_COOKIE
from agentfence.testing import tool_call
from agentfence.tracing import Telemetry
from tests.conftest import Ran, approver_key
from tests.graphs import batch, config, graph_for, tool_messages

PASSWORD = "correct horse battery staple"
SCRIPT = '<script>alert("pwned")</script>'
MINUTE = 60 * 1_000_000


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
    tools: list[BaseTool]

    def client(self, *, base_url: str = "http://127.0.0.1:8765", **kwargs: Any) -> TestClient:
        return TestClient(create_app(self.inbox, **kwargs), base_url=base_url)

    def stored(self) -> StoredApproval:
        stored = self.inbox.store.get(self.request_id)
        assert stored is not None
        return stored


@pytest.fixture
def world(
    tmp_path: Path,
    policy_dir: Path,
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    ran: Ran,
    store_url: str,
) -> World:
    """A paused run and an inbox over its log: in a SQLite file, and in PostgreSQL."""
    approvers = policy_dir / "approvers.toml"
    approvers.write_text(
        approvers.read_text() + '\n[inbox]\nsensitive_args = { pay = ["account"] }\n'
    )
    clock = Clock()
    db = store_url
    fence = make_fence(
        log=db,
        signing_key=Signer.generate("inbox-unit"),
        clock=clock,
        telemetry=Telemetry(tracer_provider=TracerProvider()),  # decisions carry trace ids
    )
    calls = (
        tool_call("read_record", {"record_id": "r-1"}, "read-1"),
        tool_call("pay", {"account": "acc-7", "amount": 900.0, "memo": SCRIPT}, "pay-1"),
    )
    graph = graph_for(fence, tools, batch(*calls))
    assert "__interrupt__" in graph.invoke({"messages": [("user", "pay")]}, config())
    [stored] = fence.approvals.list()
    inbox = Inbox.open(
        db, policies=policy_dir, tools=tools, settings=Settings.from_env({}), clock=clock
    )
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
    return World(fence, graph, inbox, clock, ran, stored.request.request_id, tools)


def sign_in(client: TestClient, name: str, password: str = PASSWORD, **extra: str) -> Any:
    page = client.get("/sign-in")
    token = re.search(r'name="form_token" value="([^"]+)"', page.text)
    assert token is not None, page.text
    data = {"form_token": token.group(1), "name": name, "password": password, **extra}
    return client.post("/sign-in", data=data, follow_redirects=False)


def signed_in(world: World, name: str, **kwargs: Any) -> TestClient:
    client = world.client(**kwargs)
    response = sign_in(client, name)
    assert response.status_code == 303, response.text
    return client


def csrf_of(client: TestClient, path: str = "/") -> str:
    page = client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


def answer(client: TestClient, request_id: str, **data: str) -> Any:
    return client.post(f"/requests/{request_id}/answer", data=data, follow_redirects=False)


def set_cookies(response: Any) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}


# --- sign-in, sessions, cookies ------------------------------------------------------------


def test_sign_in_shows_the_pending_list_and_sign_out_ends_the_session(world: World) -> None:
    client = world.client()
    first = client.get("/", follow_redirects=False)
    assert (first.status_code, first.headers["location"]) == (303, "/sign-in?next=%2F")
    wrong = sign_in(client, "fran", "not the password at all")
    assert wrong.status_code == 401
    assert "Wrong name or password" in wrong.text
    unknown = sign_in(client, "nobody", PASSWORD)
    assert unknown.status_code == 401 and "Wrong name or password" in unknown.text
    response = sign_in(client, "fran")
    assert (response.status_code, response.headers["location"]) == (303, "/")
    page = client.get("/")
    assert page.status_code == 200
    assert "Waiting for you" in page.text
    assert f'data-request="{world.request_id}"' in page.text
    assert "payments over 100 need finance" in page.text
    session_id = client.cookies[SESSION_COOKIE]

    out = client.post("/sign-out", data={"csrf": csrf_of(client)}, follow_redirects=False)
    assert (out.status_code, out.headers["location"]) == (303, "/sign-in?signed_out=1")
    assert "You are signed out." in client.get(out.headers["location"]).text
    # The old session id is dead on the server, not just forgotten by the browser.
    assert world.inbox.accounts.session(session_id) is None
    replay = world.client()
    replay.cookies.set(SESSION_COOKIE, session_id)
    assert replay.get("/", follow_redirects=False).status_code == 303


def test_sign_in_goes_back_to_a_local_page_only(world: World) -> None:
    client = world.client()
    back = sign_in(client, "fran", next="/history")
    assert back.headers["location"] == "/history"
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        other = world.client()
        assert sign_in(other, "fran", next=target).headers["location"] == "/"


def test_session_expires_when_idle_and_at_its_maximum_age(world: World) -> None:
    client = signed_in(world, "fran")
    world.clock.now += 29 * MINUTE
    assert client.get("/", follow_redirects=False).status_code == 200
    world.clock.now += 31 * MINUTE  # 31 minutes idle: over the 30-minute default
    expired = client.get("/", follow_redirects=False)
    assert (expired.status_code, expired.headers["location"]) == (303, "/sign-in?next=%2F")
    rows = client.get("/pending/rows")
    assert (rows.status_code, rows.text) == (401, "sign in again")

    client = signed_in(world, "fran")
    for _ in range(12 * 3):  # active every 20 minutes, for 12 hours
        world.clock.now += 20 * MINUTE
        assert client.get("/", follow_redirects=False).status_code == 200
    world.clock.now += 20 * MINUTE
    assert client.get("/", follow_redirects=False).status_code == 303  # 12h maximum age


def test_session_id_is_new_at_sign_in_so_a_planted_id_is_never_promoted(world: World) -> None:
    client = world.client()
    client.cookies.set(SESSION_COOKIE, "planted-by-an-attacker")
    issued = session_id_of(sign_in(client, "fran"))
    assert issued and issued != "planted-by-an-attacker"
    assert world.inbox.accounts.session("planted-by-an-attacker") is None
    # Signing in again from a signed-in browser replaces the session: the old id dies.
    again = world.client()
    token = re.search(r'name="form_token" value="([^"]+)"', again.get("/sign-in").text)
    assert token is not None
    again.cookies.set(SESSION_COOKIE, issued)
    data = {"form_token": token.group(1), "name": "fran", "password": PASSWORD}
    renewed = session_id_of(again.post("/sign-in", data=data, follow_redirects=False))
    assert renewed and renewed != issued
    assert world.inbox.accounts.session(issued) is None
    assert world.inbox.accounts.session(renewed) is not None


def session_id_of(response: Any) -> str:
    """The session id a response sets."""
    header = set_cookies(response)[SESSION_COOKIE]
    return header.split(";", 1)[0].split("=", 1)[1]


def test_cookie_flags_httponly_samesite_and_secure_over_tls(world: World) -> None:
    plain = world.client()
    form = plain.get("/sign-in")
    sign_in_cookie = set_cookies(form)[SIGN_IN_COOKIE]
    assert "HttpOnly" in sign_in_cookie and "SameSite=strict" in sign_in_cookie
    assert "Path=/sign-in" in sign_in_cookie and "Secure" not in sign_in_cookie
    session = set_cookies(sign_in(plain, "fran"))[SESSION_COOKIE]
    assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/" in session
    assert "Secure" not in session

    tls = world.client(base_url="https://inbox.example")
    assert "Secure" in set_cookies(tls.get("/sign-in"))[SIGN_IN_COOKIE]
    session = set_cookies(sign_in(tls, "fran"))[SESSION_COOKIE]
    assert "Secure" in session and "HttpOnly" in session and "SameSite=lax" in session
    assert "max-age=31536000" in tls.get("/sign-in").headers["strict-transport-security"]

    forced = world.client(secure_cookies=True)  # behind a TLS proxy that hides the scheme
    assert "Secure" in set_cookies(forced.get("/sign-in"))[SIGN_IN_COOKIE]


def test_wrong_passwords_lock_the_account_for_a_while(world: World) -> None:
    client = world.client()
    for _ in range(MAX_FAILURES):
        assert sign_in(client, "fran", "a wrong password!").status_code == 401
    assert sign_in(client, "fran").status_code == 401  # right password, but locked
    world.clock.now += 6 * MINUTE
    assert sign_in(client, "fran").status_code == 303


def test_pages_carry_security_headers(world: World) -> None:
    client = signed_in(world, "fran")
    page = client.get(f"/requests/{world.request_id}")
    headers = page.headers
    assert headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert (headers["x-frame-options"], headers["x-content-type-options"]) == ("DENY", "nosniff")
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "same-origin"
    text = page.text
    for own in ("inbox.js", "sign.js"):  # the inbox's own files; no inline script
        text = text.replace(f'<script src="/static/{own}" defer>', "")
    assert "<script" not in text


# --- CSRF ------------------------------------------------------------------------------------


def test_state_changing_requests_need_the_csrf_token(world: World) -> None:
    client = signed_in(world, "fran")
    missing = answer(client, world.request_id, decision="approve")
    assert missing.status_code == 403
    assert "the form&#39;s CSRF token is missing or wrong, so nothing was done" in missing.text
    wrong = answer(client, world.request_id, decision="approve", csrf="x" * 43)
    assert wrong.status_code == 403 and "CSRF token is missing or wrong" in wrong.text
    assert world.stored().answer is None, "an answer without a good CSRF token was stored"

    # Sign-out is a state change too.
    out = client.post("/sign-out", data={"csrf": "guess"}, follow_redirects=False)
    assert out.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200

    # A post from another site is refused even with the right token.
    token = csrf_of(client)
    crossing = client.post(
        f"/requests/{world.request_id}/answer",
        data={"csrf": token, "decision": "approve"},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert crossing.status_code == 403
    assert "cross-site request refused (Origin &#39;https://evil.example&#39;" in crossing.text
    fetched = client.post(
        f"/requests/{world.request_id}/answer",
        data={"csrf": token, "decision": "approve"},
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert fetched.status_code == 403 and "Sec-Fetch-Site is &#39;cross-site&#39;" in fetched.text
    assert world.stored().answer is None


def test_sign_in_needs_the_forms_own_token(world: World) -> None:
    client = world.client()
    forged = client.post(
        "/sign-in",
        data={"form_token": "t" * 43, "name": "fran", "password": PASSWORD},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert "The sign-in form expired or was not sent by this page" in forged.text
    assert SESSION_COOKIE not in client.cookies


# --- who may answer --------------------------------------------------------------------------


def test_an_approver_policy_does_not_allow_sees_no_button_and_is_refused(world: World) -> None:
    client = signed_in(world, "bob")
    listing = client.get("/").text
    assert world.request_id not in listing
    assert "Nothing waits for you right now." in listing
    assert "1 other pending request waits for other approvers." in listing
    page = client.get(f"/requests/{world.request_id}")
    assert page.status_code == 200
    assert 'id="approve"' not in page.text and 'id="edit"' not in page.text
    assert 'id="reject"' not in page.text
    assert "You may not answer this request: no policy permits User::&#34;bob&#34;" in page.text
    assert "acc-7" not in page.text and 'class="args"' not in page.text  # no details either

    refused = answer(client, world.request_id, decision="approve", csrf=csrf_of(client))
    assert refused.status_code == 403
    assert (
        "User::&#34;bob&#34; may not answer this request: no policy permits "
        "User::&#34;bob&#34; to call &#39;approve&#39;"
    ) in refused.text
    assert world.stored().answer is None
    assert client.get("/history").text.count("<tr>") == 0


def test_self_approval_is_refused(world: World) -> None:
    client = signed_in(world, "alice")  # in finance, but she asked for this payment
    page = client.get(f"/requests/{world.request_id}")
    assert 'id="approve"' not in page.text
    assert "User::&#34;alice&#34; requested this call and cannot approve it" in page.text
    refused = answer(client, world.request_id, decision="approve", csrf=csrf_of(client))
    assert refused.status_code == 403
    assert "User::&#34;alice&#34; requested this call and cannot approve it" in refused.text
    assert world.stored().answer is None


def test_the_allowed_approver_sees_the_buttons_and_masked_sensitive_values(world: World) -> None:
    client = signed_in(world, "fran")
    page = client.get(f"/requests/{world.request_id}").text
    assert 'id="approve"' in page and 'id="reject"' in page and 'id="edit"' in page
    assert "acc-7" not in page  # pay.account is sensitive in approvers.toml
    assert "••••••" in page and "Reveal sensitive values" in page
    revealed = client.get(f"/requests/{world.request_id}?reveal=1").text
    assert "acc-7" in revealed
    # The run's earlier decision and the log entries are linked.
    plain = page.replace("\u200b", "")  # names may wrap after _ : / . @ on narrow screens
    assert "read_record" in plain and "Record::&#34;r-1&#34;" in plain
    seqs = re.findall(rf"/requests/{world.request_id}/log/(\d+)", page)
    assert len(seqs) == 3  # the read, the held decision, the request record
    entry = client.get(f"/requests/{world.request_id}/log/{seqs[1]}")
    assert entry.status_code == 200 and "agentfence.decision/v1" in entry.text
    assert "REQUIRE_APPROVAL" in entry.text
    activation = client.get(f"/requests/{world.request_id}/log/0")
    assert activation.status_code == 404
    assert "log entry 0 is not part of request" in activation.text


# --- answering -------------------------------------------------------------------------------


def test_approve_runs_the_call_once_when_the_thread_resumes(world: World) -> None:
    client = signed_in(world, "fran")
    response = answer(client, world.request_id, decision="approve", csrf=csrf_of(client))
    assert response.status_code == 303
    assert response.headers["location"] == f"/requests/{world.request_id}?done=approve"
    page = client.get(response.headers["location"]).text
    assert "Approved. The thread resumes when its runner picks up the answer." in page
    stored = world.stored().answer
    assert stored is not None
    assert stored["answer"]["approver"] == 'User::"fran"'
    assert stored["key"] == f"fran+{approver_key('fran').key_id:08x}"
    assert world.ran.names() == ["read_record"]  # it ran before the pause
    out = world.fence.resume(world.graph, config())
    assert world.ran.names() == ["read_record", "pay"]
    assert tool_messages(out)["pay-1"].status == "success"
    assert world.fence.resume(world.graph, config()) is None
    assert world.ran.names() == ["read_record", "pay"]
    history = client.get("/history").text
    assert "approve" in history and "User::&#34;fran&#34;" in history and "accepted" in history


def test_double_submit_answers_once(world: World) -> None:
    client = signed_in(world, "fran")
    token = csrf_of(client)
    first = answer(client, world.request_id, decision="approve", csrf=token)
    second = answer(client, world.request_id, decision="reject", csrf=token, message="no")
    assert first.status_code == 303
    assert second.status_code == 409
    assert f"request {world.request_id} is already answered; a request takes one answer" in (
        second.text
    )
    assert world.stored().answer["answer"]["decision"] == "approve"  # type: ignore[index]


def test_concurrent_submits_store_exactly_one_answer(world: World) -> None:
    clients = [signed_in(world, "fran") for _ in range(4)]
    tokens = [csrf_of(c) for c in clients]
    codes: list[int] = []

    def post(index: int) -> None:
        codes.append(
            answer(
                clients[index], world.request_id, decision="approve", csrf=tokens[index]
            ).status_code
        )

    threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [303, 409, 409, 409]


def test_expired_requests_cannot_be_answered(world: World) -> None:
    client = signed_in(world, "fran")
    token = csrf_of(client)
    world.clock.now = world.stored().request.expires_us + 1
    page = client.get(f"/requests/{world.request_id}").text
    assert 'id="approve"' not in page and "status-expired" in page
    refused = answer(client, world.request_id, decision="approve", csrf=token)
    assert refused.status_code == 410
    assert f"request {world.request_id} expired at" in refused.text
    assert "and can no longer be answered; the call will not run" in refused.text
    assert world.stored().answer is None
    assert world.request_id not in client.get("/").text


def test_reject_needs_a_message_the_agent_will_read(world: World) -> None:
    client = signed_in(world, "fran")
    token = csrf_of(client)
    empty = answer(client, world.request_id, decision="reject", csrf=token, message="  ")
    assert empty.status_code == 422
    assert "say why you reject the call: the agent&#39;s model reads your message" in empty.text
    done = answer(client, world.request_id, decision="reject", csrf=token, message=SCRIPT)
    assert done.status_code == 303
    out = world.fence.resume(world.graph, config())
    assert "rejected the call to 'pay': <script>alert(\"pwned\")</script>" in str(
        tool_messages(out)["pay-1"].content
    )
    assert world.ran.names() == ["read_record"]


def test_user_controlled_text_is_escaped(world: World) -> None:
    client = signed_in(world, "fran")
    page = client.get(f"/requests/{world.request_id}").text
    assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in page
    assert SCRIPT not in page
    token = csrf_of(client)
    answer(client, world.request_id, decision="reject", csrf=token, message=SCRIPT)
    for path in ("/history", f"/requests/{world.request_id}"):
        text = client.get(path).text
        assert "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in text, path
        assert SCRIPT not in text, path
    # The sign-in form echoes the name it was given, escaped.
    echoed = sign_in(world.client(), SCRIPT, "a wrong password!").text
    assert SCRIPT not in echoed and "&lt;script&gt;" in echoed


def test_edit_is_validated_and_decided_again_before_it_is_stored(world: World) -> None:
    client = signed_in(world, "fran")
    token = csrf_of(client)

    def edit(**fields: str) -> Any:
        data = {f"arg.{k}": v for k, v in fields.items()}
        return answer(client, world.request_id, decision="edit", csrf=token, **data)

    not_a_value = edit(amount="lots")
    assert not_a_value.status_code == 422
    assert "argument &#39;amount&#39;: &#39;lots&#39; is not a value" in not_a_value.text
    wrong_type = edit(amount='"ninety"')
    assert wrong_type.status_code == 422
    assert "the edited arguments do not fit &#39;pay&#39;: argument &#39;amount&#39;" in (
        wrong_type.text
    )
    missing = edit(account="", amount="")  # account is sensitive: empty keeps it
    assert missing.status_code == 422
    assert "argument &#39;amount&#39;: Field required" in missing.text
    unchanged = edit(amount="900.0", memo=SCRIPT)
    assert unchanged.status_code == 422
    assert "nothing was changed; press Approve to run the call as requested" in unchanged.text
    denied = edit(account="sanctioned", amount="900")
    assert denied.status_code == 422
    assert (
        "the call as edited is denied by policy: payments to sanctioned accounts are forbidden"
    ) in denied.text
    assert world.stored().answer is None
    # The form keeps what was typed, escaped.
    assert 'value="sanctioned"' in denied.text and "<details open>" in denied.text

    good = edit(amount="90", memo="smaller")
    assert good.status_code == 303
    stored = world.stored().answer
    assert stored is not None
    assert stored["answer"]["decision"] == "edit"
    assert stored["answer"]["edited_args"] == {"account": "acc-7", "amount": 90, "memo": "smaller"}
    history = client.get("/history").text
    assert "amount: 900.0 → 90" in history and "memo: &lt;script&gt;" in history
    assert "acc-7" not in history  # the sensitive account stays masked
    out = world.fence.resume(world.graph, config())
    assert tool_messages(out)["pay-1"].status == "success"
    assert world.ran.calls[-1] == ("pay", {"account": "acc-7", "amount": 90.0})


# --- set-up ----------------------------------------------------------------------------------


def test_a_misspelt_sensitive_argument_fails_loading(
    world: World, policy_dir: Path, tools: list[BaseTool]
) -> None:
    approvers = policy_dir / "approvers.toml"
    approvers.write_text(approvers.read_text().replace('pay = ["account"]', 'pay = ["acount"]'))
    with pytest.raises(PolicyLoadError, match=r"pay has no argument\(s\) acount \(its arguments"):
        Inbox.open(world.inbox.log, policies=policy_dir, tools=tools)
    approvers.write_text(approvers.read_text().replace('pay = ["acount"]', 'payy = ["account"]'))
    with pytest.raises(PolicyLoadError, match=r"names tool 'payy', which is not one of the"):
        Inbox.open(world.inbox.log, policies=policy_dir, tools=tools)


def test_add_approver_stores_a_password_hash_and_the_key(tmp_path: Path) -> None:
    key = write_private_key(tmp_path / "fran.key", approver_key("fran"))
    db = tmp_path / "inbox.db"
    runner = CliRunner()
    args = ["inbox", "add-approver", "fran", "--principal", 'User::"fran"', "--key", str(key)]
    result = runner.invoke(
        cli_app, [*args, "--db", f"sqlite:///{db}", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert 'added inbox approver fran: answers as User::"fran", signed with key fran+' in (
        result.output
    )
    accounts = ApproverAccounts(db, clock=lambda: 0)
    stored = accounts._conn().execute("SELECT password_hash FROM inbox_approvers").fetchone()[0]
    assert stored.startswith("scrypt$32768$8$1$") and PASSWORD not in stored
    assert check_password(PASSWORD, stored) and not check_password("something else", stored)
    account = accounts.get("fran")
    assert account is not None and account.key_path == key.resolve()

    again = runner.invoke(
        cli_app, [*args, "--db", f"sqlite:///{db}", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert isinstance(again.exception, ConfigurationError)
    assert "approver 'fran' already has an inbox account; pass --replace" in str(again.exception)
    short = runner.invoke(
        cli_app,
        [*args, "--db", f"sqlite:///{db}", "--password-stdin", "--replace"],
        input="short\n",
    )
    assert isinstance(short.exception, ConfigurationError)
    assert "the password is 5 characters; use at least 12" in str(short.exception)


def test_serve_binds_to_loopback_by_default() -> None:
    result = CliRunner().invoke(cli_app, ["inbox", "serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert re.search(
        r"--host\s+\S+\s+The address to listen on \(loopback by default\)", result.output
    )
    assert "[default: 127.0.0.1]" in result.output


def test_a_missing_web_stack_names_the_extra_to_install(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "agentfence.inbox.app")
    monkeypatch.setitem(sys.modules, "starlette.applications", None)
    with pytest.raises(ConfigurationError, match=r"run `pip install 'agentfence\[inbox\]'`"):
        create_app(world.inbox)


def test_an_unknown_request_is_not_found(world: World) -> None:
    client = signed_in(world, "fran")
    missing = client.get("/requests/0123456789abcdef")
    assert missing.status_code == 404
    assert "there is no approval request &#39;0123456789abcdef&#39;" in missing.text
    # A prefix of a real id is not enough: pages name requests by their full id.
    assert client.get(f"/requests/{world.request_id[:12]}").status_code == 404


def test_inbox_settings_come_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert (defaults.inbox_session_idle, defaults.inbox_session_max) == (1800, 43200)
    assert defaults.inbox_secure_cookies is None and defaults.inbox_trace_url is None
    env = {
        "AGENTFENCE_INBOX_SESSION_IDLE": "90s",
        "AGENTFENCE_INBOX_SESSION_MAX": "1d",
        "AGENTFENCE_INBOX_SECURE_COOKIES": "true",
        "AGENTFENCE_INBOX_TRACE_URL": "http://127.0.0.1:16686/trace/{trace_id}",
    }
    settings = Settings.from_env(env)
    assert (settings.inbox_session_idle, settings.inbox_session_max) == (90, 86400)
    assert settings.inbox_secure_cookies is True
    assert settings.inbox_trace_url == "http://127.0.0.1:16686/trace/{trace_id}"
    with pytest.raises(ConfigurationError, match=r"AGENTFENCE_INBOX_SESSION_IDLE='soon' is not"):
        _ = Settings.from_env({"AGENTFENCE_INBOX_SESSION_IDLE": "soon"}).inbox_session_idle
    with pytest.raises(ConfigurationError, match=r"must be an http\(s\) URL containing"):
        _ = Settings.from_env({"AGENTFENCE_INBOX_TRACE_URL": "javascript:x"}).inbox_trace_url
    with pytest.raises(ConfigurationError, match=r"AGENTFENCE_INBOX_SECURE_COOKIES='maybe'"):
        _ = Settings.from_env({"AGENTFENCE_INBOX_SECURE_COOKIES": "maybe"}).inbox_secure_cookies


def test_a_trace_link_is_offered_when_configured(world: World) -> None:
    world.inbox.trace_url = "http://127.0.0.1:16686/trace/{trace_id}"
    client = signed_in(world, "fran")
    page = client.get(f"/requests/{world.request_id}").text
    decision = world.inbox.evidence.decision(world.stored().request.decision_id)
    assert decision is not None and decision[1].trace_id
    assert f'href="http://127.0.0.1:16686/trace/{decision[1].trace_id}"' in page


# --- signing in the browser: the server's half ------------------------------------------------


def prepared(client: TestClient, request_id: str, **form: str) -> dict[str, Any]:
    response = client.post(
        f"/requests/{request_id}/prepare", data={"csrf": csrf_of(client), **form}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def browser_signed(
    client: TestClient,
    request_id: str,
    answer: dict[str, Any],
    signer: Signer,
    **headers: str,
) -> Any:
    """What the page's script sends: the answer's JSON text, the key's name, the signature."""
    answer_json = json.dumps(answer)
    signature = signer.sign(rfc8785.dumps(json.loads(answer_json)))
    body = {
        "answer": answer_json,
        "key": f"{signer.name}+{signer.key_id:08x}",
        "signature": base64.b64encode(signature).decode(),
    }
    return client.post(
        f"/requests/{request_id}/answer-signed",
        content=json.dumps(body),
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf_of(client), **headers},
    )


def test_prepare_gives_the_checked_answer_and_the_bytes_to_sign(world: World) -> None:
    client = signed_in(world, "fran")
    body = prepared(client, world.request_id, decision="approve", message="  fine  ")
    answer = ApprovalAnswer.model_validate_json(body["answer"])
    assert (answer.approver, answer.decision, answer.message) == ('User::"fran"', "approve", "fine")
    assert answer.action_digest == world.stored().request.action_digest
    assert base64.b64decode(body["bytes"]) == rfc8785.dumps(json.loads(body["answer"]))
    refused = client.post(
        f"/requests/{world.request_id}/prepare",
        data={"csrf": csrf_of(client), "decision": "reject"},
    )
    assert refused.status_code == 422
    assert "say why you reject the call" in refused.json()["error"]["message"]
    assert world.stored().answer is None  # preparing stores nothing


def test_a_browser_signed_answer_is_stored_with_the_browsers_key(world: World) -> None:
    client = signed_in(world, "fran")
    answer = json.loads(prepared(client, world.request_id, decision="approve")["answer"])
    response = browser_signed(client, world.request_id, answer, approver_key("fran"))
    assert response.status_code == 200, response.text
    assert response.json() == {"location": f"/requests/{world.request_id}?done=approve"}
    stored = world.stored().answer
    assert stored is not None and stored["key"] == f"fran+{approver_key('fran').key_id:08x}"
    world.fence.resume(world.graph, config())
    assert world.ran.names() == ["read_record", "pay"]


def test_a_browser_signed_answer_naming_another_approver_is_refused(world: World) -> None:
    client = signed_in(world, "bob")  # bob may not answer; he signs fran's answer with her key
    answer = json.loads(
        prepared(signed_in(world, "fran"), world.request_id, decision="approve")["answer"]
    )
    response = browser_signed(client, world.request_id, answer, approver_key("fran"))
    assert response.status_code == 403
    assert response.json()["error"]["message"] == (
        'the signed answer names User::"fran", but you are signed in as User::"bob"'
    )
    assert world.stored().answer is None


def test_a_browser_signed_answer_other_than_the_prepared_one_is_refused(world: World) -> None:
    client = signed_in(world, "fran")
    answer = json.loads(prepared(client, world.request_id, decision="approve")["answer"])
    padded = {**answer, "message": "  ok  "}  # not what prepare makes of it
    response = browser_signed(client, world.request_id, padded, approver_key("fran"))
    assert response.status_code == 422
    assert "the signed answer is not the one the inbox prepared" in response.text
    unfit = {**answer, "decision": "edit", "edited_args": {"account": "acc-7", "amount": "lots"}}
    response = browser_signed(client, world.request_id, unfit, approver_key("fran"))
    assert response.status_code == 422  # the edit's checks run on a signed answer too
    assert "the edited arguments do not fit 'pay'" in response.json()["error"]["message"]
    future = {**answer, "answered_us": world.clock.now + MINUTE}
    response = browser_signed(client, world.request_id, future, approver_key("fran"))
    assert response.status_code == 422
    assert "the signed answer's time is not between the request and now" in response.text
    forged = browser_signed(client, world.request_id, answer, approver_key("bob"))
    assert forged.status_code == 500
    assert "would be refused as forged" in forged.json()["error"]["message"]
    assert world.stored().answer is None


def test_a_browser_signed_answer_needs_the_csrf_header_and_the_same_site(world: World) -> None:
    client = signed_in(world, "fran")
    answer = json.loads(prepared(client, world.request_id, decision="approve")["answer"])
    no_csrf = browser_signed(
        client, world.request_id, answer, approver_key("fran"), **{"X-CSRF-Token": ""}
    )
    assert no_csrf.status_code == 403 and no_csrf.json()["error"]["code"] == "csrf"
    cross = browser_signed(
        client, world.request_id, answer, approver_key("fran"), Origin="https://evil.example"
    )
    assert cross.status_code == 403 and cross.json()["error"]["code"] == "cross_site"
    assert world.stored().answer is None


# --- answering several at once ------------------------------------------------------------------


def held_more(world: World) -> dict[str, str]:
    """Two more held payments beside the world's: alice's on t2, and fran's own on t3."""
    ids = {"t1": world.request_id}
    for thread, principal in (("t2", 'User::"alice"'), ("t3", 'User::"fran"')):
        call = tool_call("pay", {"account": "acc-8", "amount": 500.0, "memo": thread}, thread)
        graph = graph_for(world.fence, world.tools, batch(call))
        paused = graph.invoke(
            {"messages": [("user", "pay")]}, config(thread, agentfence_principal=principal)
        )
        assert "__interrupt__" in paused
        [held] = world.fence.approvals.list(thread=thread)
        ids[thread] = held.request.request_id
    return ids


def answer_selected(client: TestClient, decision: str, ids: list[str], **data: str) -> Any:
    form = {**data, "request": ids}
    return client.post(f"/answer-selected/{decision}", data=form, follow_redirects=False)


def test_select_and_approve_answers_each_with_its_own_signed_answer(world: World) -> None:
    ids = held_more(world)
    client = signed_in(world, "fran")
    listing = client.get("/").text
    boxes = re.findall(r'name="request" value="([0-9a-f]+)"', listing)
    assert sorted(boxes) == sorted([ids["t1"], ids["t2"]])  # not fran's own t3
    response = answer_selected(client, "approve", [ids["t1"], ids["t2"]], csrf=csrf_of(client))
    assert response.status_code == 200
    assert "Approved 2 of 2 selected" in response.text
    registry = world.inbox.registry
    for thread in ("t1", "t2"):
        stored = world.inbox.store.get(ids[thread])
        assert stored is not None and stored.answer is not None
        signed = stored.answer["answer"]
        assert (signed["request_id"], signed["action_digest"]) == (
            ids[thread],
            stored.request.action_digest,
        )
        check_answer(
            stored.answer,
            stored.request,
            engine=world.inbox.engine,
            registry=registry,
            now_us=world.clock(),
        )
    answers = [world.inbox.store.get(ids[t]).answer for t in ("t1", "t2")]  # type: ignore[union-attr]
    assert answers[0]["signature"] != answers[1]["signature"]  # type: ignore[index]
    # An answer moved to the other request is refused as bound to another.
    with pytest.raises(ApprovalRefused, match=f"the answer is for request {ids['t1']}"):
        check_answer(
            answers[0],
            world.inbox.store.get(ids["t2"]).request,  # type: ignore[union-attr]
            engine=world.inbox.engine,
            registry=registry,
            now_us=world.clock(),
        )


def test_select_and_approve_needs_the_csrf_token(world: World) -> None:
    ids = held_more(world)
    client = signed_in(world, "fran")
    missing = answer_selected(client, "approve", [ids["t1"], ids["t2"]])
    assert missing.status_code == 403
    assert "the form&#39;s CSRF token is missing or wrong, so nothing was done" in missing.text
    crossing = client.post(
        "/answer-selected/approve",
        data={"csrf": csrf_of(client), "request": [ids["t1"]]},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert crossing.status_code == 403 and "cross-site request refused" in crossing.text
    assert all(s.answer is None for s in world.inbox.store.list())


def test_a_selected_request_the_approver_may_not_answer_is_refused_and_the_rest_stored(
    world: World,
) -> None:
    ids = held_more(world)
    client = signed_in(world, "fran")
    # A hand-made form selecting fran's own request (not offered to her) between two others.
    response = answer_selected(
        client,
        "reject",
        [ids["t1"], ids["t3"], ids["t2"]],
        csrf=csrf_of(client),
        message="duplicate payments",
    )
    assert response.status_code == 200
    assert "Rejected 2 of 3 selected" in response.text
    assert "1 of the selected requests were not answered; the others were." in response.text
    assert "User::&#34;fran&#34; requested this call and cannot approve it" in response.text
    stored = {t: world.inbox.store.get(i) for t, i in ids.items()}
    assert stored["t3"].answer is None  # type: ignore[union-attr]
    for thread in ("t1", "t2"):
        answer_ = stored[thread].answer  # type: ignore[union-attr]
        assert answer_ is not None and answer_["answer"]["decision"] == "reject"
        assert answer_["answer"]["message"] == "duplicate payments"


def test_a_selection_with_an_unknown_id_answers_the_known_ones(world: World) -> None:
    ids = held_more(world)
    client = signed_in(world, "fran")
    unknown = "0" * 32
    response = answer_selected(
        client, "approve", [unknown, ids["t2"], ids["t2"]], csrf=csrf_of(client)
    )
    assert response.status_code == 200
    assert "Approved 1 of 2 selected" in response.text  # the repeated id counts once
    assert f"there is no approval request &#39;{unknown}&#39;" in response.text
    assert world.inbox.store.get(ids["t2"]).answer is not None  # type: ignore[union-attr]


def test_reject_selected_needs_a_message_and_a_selection(world: World) -> None:
    ids = held_more(world)
    client = signed_in(world, "fran")
    token = csrf_of(client)
    silent = answer_selected(client, "reject", [ids["t1"], ids["t2"]], csrf=token)
    assert silent.status_code == 422
    assert "say why you reject the selected calls" in silent.text
    none = answer_selected(client, "approve", [], csrf=token)
    assert none.status_code == 422 and "no request was selected" in none.text
    other = answer_selected(client, "edit", [ids["t1"]], csrf=token)
    assert other.status_code == 404 and "there is no batch answer &#39;edit&#39;" in other.text
    assert all(s.answer is None for s in world.inbox.store.list())
