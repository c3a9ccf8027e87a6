"""The web inbox in a real headless Chromium, end to end.

An agent (``create_agent`` with the fence as middleware, a signed SQLite log, the demo's
tools and policies) pauses for approval; the request appears in the approver's list without
a reload; fran signs in, opens it and approves (and, in a second thread, edits); the thread
resumes with ``Fence.resume`` and the tool runs once; the log verifies.

The inbox runs as ``agentfence inbox serve`` in a subprocess on a free loopback port, and the
approver is added with ``agentfence inbox add-approver``, as an operator would. The browser is
Debian's Chromium driven by Playwright for Python (no browser download). The test skips only
when ``/usr/bin/chromium`` is missing and ``AGENTFENCE_BROWSER_TESTS`` is not ``required``.

Screenshots go to pytest's temporary directory; set ``AGENTFENCE_SCREENSHOT_DIR=docs/images``
to refresh the ones in the approver guide.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver

from agentfence import Fence, Resource, govern
from agentfence._signing import Signer, write_private_key
from agentfence._storage.tables import LogBackend
from agentfence.demo import demo_approver, policy_dir
from agentfence.demo.tools import delete_file, lookup_customer, send_email
from agentfence.log import parse_entry
from agentfence.records import ApprovalAnswerRecord
from agentfence.testing import ScriptedChatModel, tool_call
from agentfence.verify import verify_log

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("AGENTFENCE_BROWSER_TESTS", "") == "required"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "fran's long approver passphrase"
XSS = "<script>window.__pwned = 1</script> screen cracked"
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not REQUIRED,
    reason="Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium; "
    "set AGENTFENCE_BROWSER_TESTS=required to make this a failure)",
)


@dataclass
class Desk:
    """The governed desk: a fence over a signed SQLite log, and a refund tool that counts."""

    fence: Fence
    tools: list[BaseTool]
    runs: list[dict[str, Any]]
    db: Path
    policies: Path
    log_key: Signer


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    policies = tmp_path / "policies"
    shutil.copytree(policy_dir(), policies)
    approvers = policies / "approvers.toml"
    sensitive = '{ refund = ["customer_id"], lookup_customer = ["customer_id"] }'
    approvers.write_text(approvers.read_text() + f"\n[inbox]\nsensitive_args = {sensitive}\n")
    runs: list[dict[str, Any]] = []

    @tool
    def refund(customer_id: str, amount: float, reason: str) -> str:
        """Refund an amount (in euros) to a customer's original payment method."""
        runs.append({"customer_id": customer_id, "amount": amount, "reason": reason})
        return f"refunded EUR {amount:.2f} to {customer_id}"

    govern(refund, groups=["payments"], resource=Resource("Customer", arg="customer_id"))
    tools: list[BaseTool] = [lookup_customer, send_email, refund, delete_file]
    db = tmp_path / "desk.db"
    log_key = Signer.generate("inbox-e2e")
    fence = Fence.from_directory(
        policies, tools=tools, log=f"sqlite:///{db}", signing_key=log_key, agent="support-bot"
    )
    try:
        yield Desk(fence, tools, runs, db, policies, log_key)
    finally:
        fence.close()


def agent_for(desk: Desk, amount: float, reason: str) -> Any:
    model = ScriptedChatModel(
        responses=[
            AIMessage(
                content="Looking up the customer.",
                tool_calls=[tool_call("lookup_customer", {"customer_id": "c-102"}, "lookup")],
            ),
            AIMessage(
                content="Refunding.",
                tool_calls=[
                    tool_call(
                        "refund",
                        {"customer_id": "c-102", "amount": amount, "reason": reason},
                        "refund",
                    )
                ],
            ),
            AIMessage(content="Done."),
        ]
    )
    return create_agent(
        model, desk.tools, middleware=[desk.fence.middleware()], checkpointer=InMemorySaver()
    )


def run_config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, "agentfence_principal": 'User::"alice"'}}


def clean_env() -> dict[str, str]:
    """This process's environment without AGENTFENCE_* settings, so only the flags count."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENTFENCE_")}


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentfence.cli", *args],
        env=clean_env(),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def inbox_url(desk: Desk, tmp_path: Path) -> Iterator[str]:
    """``agentfence inbox serve`` in a subprocess, with fran added; always stopped."""
    key = write_private_key(tmp_path / "fran.key", demo_approver())
    added = cli(
        "inbox",
        "add-approver",
        "fran",
        "--principal",
        'User::"fran"',
        "--key",
        str(key),
        "--db",
        f"sqlite:///{desk.db}",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert 'added inbox approver fran: answers as User::"fran"' in added.stdout
    port = free_port()
    log = (tmp_path / "inbox.log").open("w")
    server = subprocess.Popen(  # our own CLI, fixed arguments
        [
            sys.executable,
            "-m",
            "agentfence.cli",
            "inbox",
            "serve",
            "--db",
            f"sqlite:///{desk.db}",
            "--policies",
            str(desk.policies),
            "--tools",
            "agentfence.demo.tools:TOOLS",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean_env(),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                log.flush()
                pytest.fail(f"inbox serve exited: {(tmp_path / 'inbox.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/sign-in", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("inbox serve did not answer within 60 seconds")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        log.close()
    assert 'approver fran (User::"fran"): ready' in (tmp_path / "inbox.log").read_text()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("AGENTFENCE_SCREENSHOT_DIR") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def pending_id(desk: Desk, thread: str) -> str:
    [stored] = [s for s in desk.fence.approvals.list(thread=thread) if s.answer is None]
    return stored.request.request_id


def refund_message(result: dict[str, Any]) -> ToolMessage:
    [message] = [
        m for m in result["messages"] if isinstance(m, ToolMessage) and m.tool_call_id == "refund"
    ]
    return message


def test_an_approver_answers_in_a_real_browser_and_the_thread_resumes(
    desk: Desk, inbox_url: str, shots: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=LAPTOP)
            # Signing in: an unauthenticated visit lands on the sign-in form.
            page.goto(f"{inbox_url}/")
            expect(page).to_have_url(f"{inbox_url}/sign-in?next=%2F")
            page.fill("input[name=name]", "fran")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Waiting for you")
            expect(page.locator(".empty")).to_have_text("Nothing waits for you right now.")
            page.evaluate("window.__same_page = true")

            # An agent pauses; its request appears in the open list without a reload.
            big = agent_for(desk, 2500.0, "laptop arrived broken")
            paused = big.invoke({"messages": [("user", "refund")]}, run_config("ticket-T-88"))
            assert "__interrupt__" in paused
            big_id = pending_id(desk, "ticket-T-88")
            expect(page.locator(f"tr[data-request='{big_id}']")).to_be_visible(timeout=15_000)
            other = agent_for(desk, 1200.0, XSS)
            assert "__interrupt__" in other.invoke(
                {"messages": [("user", "refund")]}, run_config("ticket-T-91")
            )
            other_id = pending_id(desk, "ticket-T-91")
            expect(page.locator(f"tr[data-request='{other_id}']")).to_be_visible(timeout=15_000)
            assert page.evaluate("window.__same_page") is True, "the list reloaded the page"
            expect(page).to_have_title("(2) Pending · agentfence inbox")
            page.screenshot(path=str(shots / "inbox-list.png"), full_page=True)
            page.set_viewport_size(PHONE)
            page.screenshot(path=str(shots / "inbox-list-phone.png"), full_page=True)
            page.set_viewport_size(LAPTOP)

            # The request page: the call (customer id masked), why, what the run did before.
            page.click(f"tr[data-request='{big_id}'] a.tool")
            expect(page).to_have_url(f"{inbox_url}/requests/{big_id}")
            call = page.locator("table.args")
            expect(call).to_contain_text("2500.0")
            expect(call).to_contain_text("laptop arrived broken")
            expect(call).to_contain_text("••••••")
            expect(call).not_to_contain_text("c-102")
            expect(page.locator("ul.reasons")).to_have_text(
                "refunds over EUR 100 need a finance approver"
            )
            expect(page.locator("table.compact")).to_contain_text("lookup_customer")
            expect(page.locator("table.compact")).to_contain_text("ALLOW")
            expect(page.locator("table.compact")).to_contain_text("Customer::••••••")
            expect(page.locator("main")).not_to_contain_text("c-102")
            expect(page.locator(".clock .left")).to_have_text(re.compile(r"1[45]m"))
            page.screenshot(path=str(shots / "inbox-request.png"), full_page=True)
            page.set_viewport_size(PHONE)
            page.screenshot(path=str(shots / "inbox-request-phone.png"), full_page=True)
            page.set_viewport_size(LAPTOP)

            # Approve: two clicks from the list.
            page.click("#approve")
            expect(page.locator(".notice")).to_contain_text("Approved.")
            expect(page.locator(".badge.status-answered")).to_be_visible()
            assert desk.runs == []
            resumed = desk.fence.resume(big, run_config("ticket-T-88"))
            assert resumed is not None
            assert refund_message(resumed).content == "refunded EUR 2500.00 to c-102"
            assert desk.runs == [
                {"customer_id": "c-102", "amount": 2500.0, "reason": "laptop arrived broken"}
            ]

            # The second request: its hostile reason renders as text; fran edits the amount.
            page.goto(f"{inbox_url}/requests/{other_id}")
            expect(page.locator("table.args")).to_contain_text(XSS)
            assert page.evaluate("typeof window.__pwned") == "undefined"
            page.click("details summary")
            page.fill("input[name='arg.amount']", "90")
            page.fill("details input[name=message]", "90 is what the policy allows")
            page.click("#edit")
            expect(page.locator(".notice")).to_contain_text("Approved with your edited arguments.")
            resumed = desk.fence.resume(other, run_config("ticket-T-91"))
            assert resumed is not None
            assert refund_message(resumed).content == "refunded EUR 90.00 to c-102"
            assert [run["amount"] for run in desk.runs] == [2500.0, 90.0]
            assert page.evaluate("typeof window.__pwned") == "undefined"

            # History: both answers, by fran, accepted by the fence.
            page.click("nav >> text=History")
            rows = page.locator("table.list tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0)).to_contain_text("edit")
            expect(rows.nth(0)).to_contain_text("amount: 1200.0 → 90")
            expect(rows.nth(1)).to_contain_text("approve")
            expect(rows.nth(0)).to_contain_text('User::"fran"')
            expect(rows.nth(0)).to_contain_text("accepted")
            expect(rows.nth(1)).to_contain_text("accepted")
            page.screenshot(path=str(shots / "inbox-history.png"), full_page=True)

            # Sign out ends the session.
            page.click("text=Sign out")
            expect(page.locator(".notice")).to_have_text("You are signed out.")
            page.goto(f"{inbox_url}/history")
            expect(page).to_have_url(f"{inbox_url}/sign-in?next=%2Fhistory")
        finally:
            browser.close()

    # Nothing runs twice, and the log verifies with only the public key.
    assert desk.fence.resume(big, run_config("ticket-T-88")) is None
    assert len(desk.runs) == 2
    desk.fence.close()
    verified = verify_log(desk.db, [desk.log_key.verifier_key])
    # Two lookups, two held refunds, and the edited refund decided again.
    assert (verified.unsigned_tail, verified.decisions, verified.outcomes) == (0, 5, 4)
    reader = LogBackend(desk.db, create=False, readonly=True)
    try:
        answers = [
            parse_entry(row.body)[1] for row in reader.select(kind="agentfence.approval_answer/v1")
        ]
    finally:
        reader.close()
    assert all(isinstance(a, ApprovalAnswerRecord) for a in answers)
    assert [(a.answer, a.verdict, a.approver) for a in answers] == [  # type: ignore[union-attr]
        ("approve", "accepted", 'User::"fran"'),
        ("edit", "accepted", 'User::"fran"'),
    ]


@pytest.fixture
def laptop_key(desk: Desk) -> Signer:
    """A second key of fran's, declared in approvers.toml, that only her browser holds."""
    key = Signer.generate("fran-laptop")
    approvers = desk.policies / "approvers.toml"
    approvers.write_text(
        approvers.read_text()
        + f'\n[[approver]]\nprincipal = \'User::"fran"\'\nkey = "{key.verifier_key}"\n'
    )
    # The fence reads approvers.toml when it is built: build it again, as a restart would.
    desk.fence.close()
    desk.fence = Fence.from_directory(
        desk.policies,
        tools=desk.tools,
        log=f"sqlite:///{desk.db}",
        signing_key=desk.log_key,
        agent="support-bot",
    )
    return key


def stored_key(desk: Desk, request_id: str) -> str:
    stored = desk.fence.approvals.get(request_id)
    assert stored is not None and stored.answer is not None
    return str(stored.answer["key"])


def test_an_approver_signs_in_the_browser_with_a_key_the_server_never_sees(
    desk: Desk, laptop_key: Signer, inbox_url: str
) -> None:
    from playwright.sync_api import Request, expect, sync_playwright

    secret = laptop_key.private_key()
    seed = secret.rsplit("+", 1)[1]
    laptop = f"fran-laptop+{laptop_key.key_id:08x}"
    server_key = f"fran+{demo_approver().key_id:08x}"
    agents = {}
    for thread, amount in (("ticket-T-88", 2500.0), ("ticket-T-89", 900.0), ("ticket-T-90", 700.0)):
        agents[thread] = agent_for(desk, amount, "laptop arrived broken")
        assert "__interrupt__" in agents[thread].invoke(
            {"messages": [("user", "refund")]}, run_config(thread)
        )
    ids = {thread: pending_id(desk, thread) for thread in agents}
    sent: list[str] = []

    def record(request: Request) -> None:
        sent.append(request.url + "\n" + (request.post_data or ""))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=LAPTOP)
            page.on("request", record)
            page.goto(f"{inbox_url}/sign-in")
            page.fill("input[name=name]", "fran")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page.locator("h1")).to_have_text("Waiting for you")

            # A key that approvers.toml does not declare: the signed answer is refused.
            page.goto(f"{inbox_url}/requests/{ids['ticket-T-90']}")
            state = page.locator("#key-state")
            expect(state).to_have_text(
                "Your answer is signed by the inbox with the key registered for you."
            )
            page.click("#key-import summary")
            page.fill("#key-text", Signer.generate("mallory").private_key())
            page.click("#key-use")
            expect(state).to_contain_text("signed in this browser with your key mallory+")
            page.click("#approve")
            expect(page.locator("#sign-error")).to_contain_text(
                "is not a declared approver's (see approvers.toml)"
            )
            assert desk.fence.approvals.get(ids["ticket-T-90"]).answer is None  # type: ignore[union-attr]
            page.click("#key-forget")
            # Forgotten once the browser's storage says so (before leaving the page).
            expect(state).to_have_text(
                "Your answer is signed by the inbox with the key registered for you."
            )

            # fran's own key, imported into the browser: it signs, the inbox only checks.
            page.goto(f"{inbox_url}/requests/{ids['ticket-T-88']}")
            page.click("#key-import summary")
            page.fill("#key-text", secret)
            page.click("#key-use")
            expect(state).to_have_text(
                f"Your answer is signed in this browser with your key {laptop}; the inbox "
                "never sees it."
            )
            assert page.input_value("#key-text") == ""
            page.click("#approve")
            expect(page.locator(".notice")).to_contain_text("Approved.")
            assert stored_key(desk, ids["ticket-T-88"]) == laptop

            # The key stays in this browser (not extractable) for the next request.
            page.goto(f"{inbox_url}/requests/{ids['ticket-T-89']}")
            expect(state).to_contain_text(f"your key {laptop}")
            page.click("details:has(#edit) summary")
            page.fill("input[name='arg.amount']", "90")
            page.click("#edit")
            expect(page.locator(".notice")).to_contain_text("Approved with your edited arguments.")
            assert stored_key(desk, ids["ticket-T-89"]) == laptop

            # Forgotten: the server-held key is the fallback again.
            page.goto(f"{inbox_url}/requests/{ids['ticket-T-90']}")
            page.click("#key-forget")
            expect(state).to_have_text(
                "Your answer is signed by the inbox with the key registered for you."
            )
            page.click("#approve")
            expect(page.locator(".notice")).to_contain_text("Approved.")
            assert stored_key(desk, ids["ticket-T-90"]) == server_key
        finally:
            browser.close()

    assert not [s for s in sent if seed in s or secret in s], "the private key left the browser"
    for thread, agent in agents.items():
        resumed = desk.fence.resume(agent, run_config(thread))
        assert resumed is not None
        assert refund_message(resumed).status == "success", refund_message(resumed).content
    assert sorted(run["amount"] for run in desk.runs) == [90.0, 700.0, 2500.0]
    desk.fence.close()
    reader = LogBackend(desk.db, create=False, readonly=True)
    try:
        answers = [
            parse_entry(row.body)[1] for row in reader.select(kind="agentfence.approval_answer/v1")
        ]
    finally:
        reader.close()
    assert sorted((a.answer, a.verdict, a.approver) for a in answers) == [  # type: ignore[union-attr]
        ("approve", "accepted", 'User::"fran"'),
        ("approve", "accepted", 'User::"fran"'),
        ("edit", "accepted", 'User::"fran"'),
    ]


def test_an_approver_selects_two_requests_and_approves_both_at_once(
    desk: Desk, inbox_url: str, shots: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    agents = {
        "ticket-T-88": agent_for(desk, 2500.0, "laptop arrived broken"),
        "ticket-T-91": agent_for(desk, 1200.0, "late delivery"),
    }
    for thread, agent in agents.items():
        assert "__interrupt__" in agent.invoke(
            {"messages": [("user", "refund")]}, run_config(thread)
        )
    ids = {thread: pending_id(desk, thread) for thread in agents}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=LAPTOP)
            page.goto(f"{inbox_url}/")
            page.fill("input[name=name]", "fran")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_title("(2) Pending · agentfence inbox")
            for request_id in ids.values():
                page.check(f"tr[data-request='{request_id}'] input[name=request]")
            # The list refreshes itself every two seconds: the selection survives a refresh.
            page.evaluate("document.querySelector('.rows').dataset.stale = '1'")
            expect(page.locator(".rows[data-stale]")).to_have_count(0, timeout=15_000)
            for request_id in ids.values():
                box = page.locator(f"tr[data-request='{request_id}'] input[name=request]")
                expect(box).to_be_checked()
            page.screenshot(path=str(shots / "inbox-select.png"), full_page=True)
            page.click("#approve-selected")
            expect(page.locator("h1")).to_have_text("Approved 2 of 2 selected")
            rows = page.locator("#outcomes tbody tr.answered")
            expect(rows).to_have_count(2)
            expect(page.locator("#outcomes")).to_contain_text('refund for User::"alice"')
        finally:
            browser.close()

    assert desk.runs == []
    for thread, agent in agents.items():
        resumed = desk.fence.resume(agent, run_config(thread))
        assert resumed is not None
        assert refund_message(resumed).status == "success"
        assert desk.fence.resume(agent, run_config(thread)) is None  # and never again
    assert sorted(run["amount"] for run in desk.runs) == [1200.0, 2500.0]  # each ran once
    stored = {t: desk.fence.approvals.get(i) for t, i in ids.items()}
    signed = {t: s.answer["answer"] for t, s in stored.items() if s and s.answer}
    assert {t: a["request_id"] for t, a in signed.items()} == ids
