"""``agentfence approvals``, run as an approver runs it: a subprocess against a real paused run.

Each test pauses the support-desk demo agent (demo tools and policies, a signed SQLite log,
principal alice) on its EUR 2,500 refund, answers through the CLI as fran with the demo
approver key, and where it matters resumes the run to see what the fence made of the answer.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import typing
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from agentfence import Fence
from agentfence._signing import Signer, write_private_key
from agentfence.approvals import (
    ApprovalRefused,
    ApprovalRequest,
    ApprovalStore,
    ApproverRegistry,
    check_answer,
)
from agentfence.cli._approvals import approvals_app
from agentfence.demo import demo_approver, policy_dir, script
from agentfence.demo.tools import TOOLS
from agentfence.testing import ScriptedChatModel

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "approver-guide.md"
DEMO_TOOLS = "agentfence.demo.tools:TOOLS"
CONFIG = {"configurable": {"thread_id": "ticket-T-88", "agentfence_principal": 'User::"alice"'}}
ALICE_SAYS = 'User::"alice" requested this call and cannot approve it'


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m agentfence.cli ARGS`` with no AGENTFENCE_* settings but those in ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFENCE_")}
    return subprocess.run(
        [sys.executable, "-m", "agentfence.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, "COLUMNS": "160", **(env or {})},
        timeout=120,
    )


def clis(*calls: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Several independent ``cli`` runs at once (each is a new Python process)."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda args: cli(*args), calls))


def now_us() -> int:
    return time.time_ns() // 1000


def key_for(name: str) -> Signer:
    return Signer.from_seed(name, hashlib.sha256(f"cli approvals test {name}".encode()).digest())


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo policies plus two declared approvers: alice (the requester) and bob."""
    target = tmp_path_factory.mktemp("policies") / "policies"
    shutil.copytree(policy_dir(), target)
    with (target / "approvers.toml").open("a") as toml:
        for name in ("alice", "bob"):
            toml.write(
                f"\n[[approver]]\nprincipal = 'User::\"{name}\"'\n"
                f'key = "{key_for(name).verifier_key}"\n'
            )
    return target


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Private key files: fran's demo key, and alice's and bob's test keys."""
    folder = tmp_path_factory.mktemp("keys")
    signers = {"fran": demo_approver(), "alice": key_for("alice"), "bob": key_for("bob")}
    return {name: write_private_key(folder / f"{name}.key", s) for name, s in signers.items()}


@dataclass
class Paused:
    """A demo run paused on its large refund, with the fence still open to resume it."""

    fence: Fence
    agent: Any
    db: Path
    request: ApprovalRequest

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def resume(self) -> dict[str, ToolMessage]:
        out = self.fence.run(self.agent, None, CONFIG, timeout=0)
        return {m.tool_call_id: m for m in out["messages"] if isinstance(m, ToolMessage)}


@pytest.fixture
def pause(tmp_path: Path) -> Iterator[Callable[..., Paused]]:
    fences: list[Fence] = []

    def make(policies: Path | None = None, hours_ago: float = 0) -> Paused:
        db = tmp_path / f"log-{len(fences)}.db"
        shift = int(hours_ago * 3600 * 1_000_000)
        fence = Fence.from_directory(
            policies or policy_dir(),
            tools=TOOLS,
            log=f"sqlite:///{db}",
            signing_key=Signer.generate("desk-log"),
            agent="support-bot",
            clock=lambda: time.time_ns() // 1000 - shift,
        )
        fences.append(fence)
        agent = create_agent(
            ScriptedChatModel(responses=script()),
            TOOLS,
            middleware=[fence.middleware()],
            checkpointer=InMemorySaver(),
        )
        result = fence.run(agent, {"messages": [("user", "refund c-102")]}, CONFIG, timeout=0)
        assert "__interrupt__" in result
        [stored] = fence.approvals.list()
        return Paused(fence, agent, db, stored.request)

    yield make
    for fence in fences:
        fence.close()


def answer_args(paused: Paused, keys: dict[str, Path], who: str = "fran") -> list[str]:
    return ["--db", paused.url, "--as", who, "--key", str(keys[who])]


def early_check(policies: Path) -> list[str]:
    return ["--policies", str(policies), "--tools", DEMO_TOOLS]


# --- list and show --------------------------------------------------------------------------


def test_list_shows_the_pending_request(pause: Callable[..., Paused]) -> None:
    paused = pause()
    result = cli("approvals", "list", "--db", paused.url)
    assert result.returncode == 0, result.stderr
    row = next(
        line for line in result.stdout.splitlines() if paused.request.request_id[:12] in line
    )
    for cell in ("refund", 'User::"alice"', "refunds over EUR 100 need a finance approver", "high"):
        assert cell in row
    # Age then time left: seconds old, about 15 minutes left.
    assert re.search(r"│ \d+s +│ 1[0-5]m\d\ds", row), row


def test_list_json_and_all(pause: Callable[..., Paused], keys: dict[str, Path]) -> None:
    paused = pause()
    env = {"AGENTFENCE_LOG": paused.url}  # --db defaults to AGENTFENCE_LOG
    [item] = json.loads(cli("approvals", "list", "--json", env=env).stdout)["requests"]
    assert item["request_id"] == paused.request.request_id
    assert (item["status"], item["approvers"], item["risk"]) == ("pending", ["finance"], "high")
    assert 600 < item["seconds_left"] <= 900  # 15 minutes, less the time the test took
    assert (
        cli(
            "approvals", "approve", paused.request.request_id, *answer_args(paused, keys)
        ).returncode
        == 0
    )
    db = ("--db", paused.url)
    pending, everything, table = clis(
        ("approvals", "list", "--json", *db),
        ("approvals", "list", "--all", "--json", *db),
        ("approvals", "list", "--all", *db),
    )
    assert json.loads(pending.stdout) == {"requests": []}
    [done] = json.loads(everything.stdout)["requests"]
    assert done["status"] == "answered"
    assert re.search(r"│ 1[45]m\d\ds +│ answered │", table.stdout), table.stdout


def test_show_has_what_the_approver_needs(pause: Callable[..., Paused]) -> None:
    paused = pause()
    short = paused.request.request_id[:8]
    result = cli("approvals", "show", short, "--db", paused.url)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for expected in (
        paused.request.request_id,
        '"amount": 2500.0',
        '"reason": "laptop arrived broken"',
        'User::"alice"',
        "support-bot",
        "ticket-T-88",
        "refunds over EUR 100 need a finance approver",
        "refund-needs-finance",
        "finance",
        "pending",
        "left)",
    ):
        assert expected in text, expected
    # What the run did so far: the lookup ran; the rest of the refund's turn waits with it.
    assert re.search(r"lookup_customer +│ ALLOW +│ Customer::\"c-102\" +│ success", text), text
    data = json.loads(cli("approvals", "show", short, "--db", paused.url, "--json").stdout)
    assert data["args"] == {
        "customer_id": "c-102",
        "amount": 2500.0,
        "reason": "laptop arrived broken",
    }
    assert data["policy_ids"] == ["refund-needs-finance"] and data["approvers"] == ["finance"]
    assert data["status"] == "pending" and data["answer"] is None
    tools = [(d["tool"], d["effect"], d["resource"]) for d in data["thread_decisions"]]
    assert ("lookup_customer", "ALLOW", 'Customer::"c-102"') in tools
    assert all(d["tool"] not in ("refund", "send_email") for d in data["thread_decisions"])


# --- answering ------------------------------------------------------------------------------


def test_approve_with_the_early_check_then_the_call_runs(
    pause: Callable[..., Paused], keys: dict[str, Path]
) -> None:
    paused = pause()
    result = cli(
        "approvals",
        "approve",
        paused.request.request_id[:10],
        *answer_args(paused, keys),
        *early_check(policy_dir()),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["decision"], data["approver"], data["checked"]) == (
        "approve",
        'User::"fran"',
        True,
    )
    assert data["envelope"]["format"] == "agentfence.signed_answer/v1"
    assert data["envelope"]["key"].startswith("fran+")
    assert abs(data["answered_us"] - now_us()) < 60_000_000  # answered now
    stored = paused.fence.approvals.get(paused.request.request_id)
    assert stored is not None and stored.answer == data["envelope"]
    results = paused.resume()
    assert results["call-refund-large"].content == "refunded EUR 2500.00 to c-102"
    shown = json.loads(
        cli("approvals", "show", data["request_id"], "--db", paused.url, "--json").stdout
    )
    assert shown["status"] == "used" and shown["answer"]["approver"] == 'User::"fran"'


def test_approve_without_policies_says_it_was_not_checked(
    pause: Callable[..., Paused], keys: dict[str, Path]
) -> None:
    paused = pause()
    result = cli("approvals", "approve", paused.request.request_id, *answer_args(paused, keys))
    assert result.returncode == 0, result.stderr
    assert (
        f'approved request {paused.request.request_id[:12]} (refund for User::"alice")'
        in result.stdout
    )
    assert "not checked against policy here" in result.stderr
    stored = paused.fence.approvals.get(paused.request.request_id)
    assert stored is not None
    # The stored answer is one the fence accepts.
    fence = paused.fence
    registry = ApproverRegistry.from_engine(fence.engine)
    verified = check_answer(
        stored.answer, paused.request, engine=fence.engine, registry=registry, now_us=now_us()
    )
    assert str(verified.approver) == 'User::"fran"'


def test_reject_tells_the_model(pause: Callable[..., Paused], keys: dict[str, Path]) -> None:
    paused = pause()
    result = cli(
        "approvals",
        "reject",
        paused.request.request_id,
        "--message",
        "duplicate of ticket T-77",
        *answer_args(paused, keys),
    )
    assert result.returncode == 0, result.stderr
    assert "rejected request" in result.stdout
    message = paused.resume()["call-refund-large"]
    assert message.status == "error"
    assert "rejected the call to 'refund': duplicate of ticket T-77" in str(message.content)


def test_edit_runs_the_edited_call(pause: Callable[..., Paused], keys: dict[str, Path]) -> None:
    paused = pause()
    edited = {"customer_id": "c-102", "amount": 250.0, "reason": "laptop arrived broken"}
    result = cli(
        "approvals",
        "edit",
        paused.request.request_id,
        "--args",
        json.dumps(edited),
        *answer_args(paused, keys),
        *early_check(policy_dir()),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["envelope"]["answer"]["edited_args"] == edited
    assert paused.resume()["call-refund-large"].content == "refunded EUR 250.00 to c-102"


def test_respond_answers_in_the_tools_place(
    pause: Callable[..., Paused], keys: dict[str, Path]
) -> None:
    paused = pause()
    text = "Refund already issued by bank transfer on 3 May; tell the customer."
    result = cli(
        "approvals",
        "respond",
        paused.request.request_id,
        "--message",
        text,
        *answer_args(paused, keys),
    )
    assert result.returncode == 0, result.stderr
    assert "responded to request" in result.stdout
    message = paused.resume()["call-refund-large"]
    assert (message.content, message.status) == (text, "success")
    shown = cli("log", "show", paused.url, "--kind", "approval_answer")
    assert "responded" in shown.stdout and "Refund already issued" in _flat(shown.stdout)


def test_json_answer_is_a_langchain_decision_to_resume_with(
    pause: Callable[..., Paused], keys: dict[str, Path]
) -> None:
    from langgraph.types import Command

    paused = pause()
    result = cli(
        "approvals",
        "reject",
        paused.request.request_id,
        "--message",
        "duplicate of ticket T-77",
        *answer_args(paused, keys),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)["langchain_decision"]
    assert decision["type"] == "reject" and decision["message"] == "duplicate of ticket T-77"
    out = paused.agent.invoke(Command(resume={"decisions": [decision]}), CONFIG)
    [message] = [
        m for m in out["messages"] if getattr(m, "tool_call_id", "") == "call-refund-large"
    ]
    assert "rejected the call to 'refund': duplicate of ticket T-77" in str(message.content)


# --- refusals: each exits 2 with a message that says what to do ----------------------------


def test_self_approval_is_refused(
    pause: Callable[..., Paused], keys: dict[str, Path], policies: Path
) -> None:
    paused = pause(policies)
    request_id = paused.request.request_id
    checked = cli(
        "approvals",
        "approve",
        request_id,
        *answer_args(paused, keys, "alice"),
        *early_check(policies),
    )
    assert checked.returncode == 2
    assert ALICE_SAYS in checked.stderr
    unchecked = cli("approvals", "approve", request_id, *answer_args(paused, keys, "alice"))
    assert unchecked.returncode == 2
    assert ALICE_SAYS in unchecked.stderr
    assert paused.fence.approvals.get(request_id).answer is None  # type: ignore[union-attr]


def test_approver_the_policy_does_not_allow_is_refused(
    pause: Callable[..., Paused], keys: dict[str, Path], policies: Path
) -> None:
    paused = pause(policies)
    result = cli(
        "approvals",
        "approve",
        paused.request.request_id,
        *answer_args(paused, keys, "bob"),
        *early_check(policies),
    )
    assert result.returncode == 2
    assert 'User::"bob" may not approve this request' in result.stderr
    assert paused.fence.approvals.get(paused.request.request_id).answer is None  # type: ignore[union-attr]
    # Unchecked, the answer is stored, and the fence refuses it when the thread resumes.
    stored = cli(
        "approvals", "approve", paused.request.request_id, *answer_args(paused, keys, "bob")
    )
    assert stored.returncode == 0, stored.stderr
    message = paused.resume()["call-refund-large"]
    assert message.status == "error"
    assert "the approval for 'refund' was refused: User::\"bob\" may not approve" in str(
        message.content
    )


def test_a_key_that_is_not_the_claimed_approvers_is_refused(
    pause: Callable[..., Paused], keys: dict[str, Path], policies: Path
) -> None:
    paused = pause(policies)
    result = cli(
        "approvals",
        "approve",
        paused.request.request_id,
        "--db",
        paused.url,
        "--as",
        "fran",
        "--key",
        str(keys["bob"]),
        *early_check(policies),
    )
    assert result.returncode == 2
    assert (
        'forged answer: signed by User::"bob"\'s key but claims to be User::"fran"' in result.stderr
    )


def test_expired_request_cannot_be_answered(
    pause: Callable[..., Paused], keys: dict[str, Path]
) -> None:
    paused = pause(hours_ago=1)  # requested an hour ago: expired 45 minutes ago
    result, listed, table = clis(
        ("approvals", "approve", paused.request.request_id, *answer_args(paused, keys)),
        ("approvals", "list", "--all", "--json", "--db", paused.url),
        ("approvals", "list", "--all", "--db", paused.url),
    )
    assert result.returncode == 2
    assert f"request {paused.request.request_id} expired at" in result.stderr
    assert "can no longer be answered" in result.stderr
    assert json.loads(listed.stdout)["requests"][0]["status"] == "expired"
    assert re.search(r"│ expired +│ expired │", table.stdout), table.stdout
    assert json.loads(cli("approvals", "list", "--json", "--db", paused.url).stdout) == {
        "requests": []
    }


def test_a_request_takes_one_answer(pause: Callable[..., Paused], keys: dict[str, Path]) -> None:
    paused = pause()
    request_id = paused.request.request_id
    assert cli("approvals", "approve", request_id, *answer_args(paused, keys)).returncode == 0
    again = cli("approvals", "reject", request_id, "--message", "no", *answer_args(paused, keys))
    assert again.returncode == 2
    assert f"request {request_id} is already answered" in again.stderr


BAD_EDITS = {
    '{"amount": NaN}': "--args is not valid JSON (NaN is not a JSON number",
    '[{"amount": 90}]': "--args must be a JSON object of the tool's arguments, got list",
    '{"amount": 90}': "--args do not fit 'refund''s arguments: argument 'customer_id'",
    '{"customer_id": "c-102", "amount": 20000, "reason": "x"}': (
        "the call as edited is denied by policy: refunds over EUR 10,000 are never made"
    ),
}


def test_bad_edits_are_refused(pause: Callable[..., Paused], keys: dict[str, Path]) -> None:
    paused = pause()
    answer = (*answer_args(paused, keys), *early_check(policy_dir()))
    results = clis(
        *(("approvals", "edit", paused.request.request_id, "--args", a, *answer) for a in BAD_EDITS)
    )
    for result, message in zip(results, BAD_EDITS.values(), strict=True):
        assert result.returncode == 2
        assert message in result.stderr
    assert paused.fence.approvals.get(paused.request.request_id).answer is None  # type: ignore[union-attr]


def test_unknown_and_ambiguous_ids(pause: Callable[..., Paused], keys: dict[str, Path]) -> None:
    paused = pause()
    store = ApprovalStore(paused.db)
    for suffix in ("0", "1"):
        store.create(paused.request.model_copy(update={"request_id": "deadbeef" + suffix * 24}))
    unknown, short, ambiguous = clis(
        ("approvals", "show", "0123456789abcdef", "--db", paused.url),
        ("approvals", "show", "dead", "--db", paused.url),
        ("approvals", "approve", "deadbeef", *answer_args(paused, keys)),
    )
    assert unknown.returncode == 2
    assert "no approval request '0123456789abcdef' in this log" in unknown.stderr
    assert short.returncode == 2
    assert "at least 8 of its first characters" in short.stderr
    assert ambiguous.returncode == 2
    assert "'deadbeef' names 2 requests" in ambiguous.stderr


def test_missing_key_db_and_approver(pause: Callable[..., Paused], tmp_path: Path) -> None:
    paused = pause()
    request_id = paused.request.request_id
    db = ("--db", paused.url)
    no_key_file, no_key, no_who, no_db, wrong_db = clis(
        ("approvals", "approve", request_id, *db, "--as", "fran", "--key", str(tmp_path / "k")),
        ("approvals", "approve", request_id, *db, "--as", "fran"),
        ("approvals", "approve", request_id, *db, "--key", "x.key"),
        ("approvals", "list"),
        ("approvals", "list", "--db", str(tmp_path / "missing.db")),
    )
    assert no_key_file.returncode == 2
    assert f"approver key: signing key file {tmp_path / 'k'} does not exist" in no_key_file.stderr
    assert no_key.returncode == 2
    assert "no approver key: pass --key FILE" in no_key.stderr
    assert no_who.returncode == 2
    assert "pass --as PRINCIPAL" in no_who.stderr
    assert no_db.returncode == 2
    assert "no decision log given: pass --db sqlite:///PATH" in no_db.stderr
    assert wrong_db.returncode == 2
    assert "no decision log at" in wrong_db.stderr


def test_approver_and_key_from_the_environment(
    pause: Callable[..., Paused], keys: dict[str, Path]
) -> None:
    paused = pause()
    env = {
        "AGENTFENCE_LOG": paused.url,
        "AGENTFENCE_APPROVER": 'User::"fran"',
        "AGENTFENCE_APPROVER_KEY": str(keys["fran"]),
    }
    result = cli("approvals", "approve", paused.request.request_id, "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["approver"] == 'User::"fran"'


# --- the guide quotes the help ----------------------------------------------------------------


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_approver_guide_quotes_the_help_text() -> None:
    guide = _flat(GUIDE.read_text(encoding="utf-8"))
    for command in approvals_app.registered_commands:
        callback = command.callback
        assert callback is not None
        summary = inspect.getdoc(callback).splitlines()[0]  # type: ignore[union-attr]
        assert _flat(summary) in guide, f"{command.name}: {summary!r} is not in {GUIDE.name}"
        hints = typing.get_type_hints(callback, include_extras=True)
        for name, hint in hints.items():
            for text in (getattr(m, "help", None) for m in getattr(hint, "__metadata__", ())):
                assert text, f"{command.name}: {name} has no help"
                assert _flat(text) in guide, f"{command.name}: help {text!r} is not quoted"


# --- batch answers ----------------------------------------------------------------------------


@dataclass
class Three:
    """Three of alice's refunds held in one log, on threads T-1, T-2 and T-3 (expired)."""

    fence: Fence
    agents: dict[str, Any]  # by thread: each has its own scripted model
    db: Path
    requests: dict[str, ApprovalRequest]  # by thread

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def ids(self, *threads: str) -> list[str]:
        return [self.requests[t].request_id for t in threads]

    def resume(self, thread: str) -> dict[str, ToolMessage]:
        out = self.fence.run(self.agents[thread], None, _config(thread), timeout=0)
        return {m.tool_call_id: m for m in out["messages"] if isinstance(m, ToolMessage)}


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, "agentfence_principal": 'User::"alice"'}}


@pytest.fixture
def three(tmp_path: Path) -> Iterator[Three]:
    db = tmp_path / "three.db"
    fence = Fence.from_directory(
        policy_dir(),
        tools=TOOLS,
        log=f"sqlite:///{db}",
        signing_key=Signer.generate("desk-log"),
        agent="support-bot",
    )
    agents = {}
    for thread in ("T-1", "T-2", "T-3"):
        agents[thread] = create_agent(
            ScriptedChatModel(responses=script()),
            TOOLS,
            middleware=[fence.middleware()],
            checkpointer=InMemorySaver(),
        )
        result = fence.run(
            agents[thread], {"messages": [("user", "refund c-102")]}, _config(thread), timeout=0
        )
        assert "__interrupt__" in result
    requests = {s.request.thread: s.request for s in fence.approvals.list()}
    assert sorted(requests) == ["T-1", "T-2", "T-3"]
    fence.approvals.mark_expired(requests["T-3"].request_id, now_us=now_us())
    yield Three(fence, agents, db, requests)
    fence.close()


def _as_fran(three: Three, keys: dict[str, Path]) -> list[str]:
    return ["--db", three.url, "--as", "fran", "--key", str(keys["fran"])]


def test_batch_approve_answers_each_and_reports_the_refused_one(
    three: Three, keys: dict[str, Path]
) -> None:
    ids = three.ids("T-1", "T-2", "T-3")  # T-3 expired: it can no longer be answered
    result = cli("approvals", "approve", *ids, *_as_fran(three, keys))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f'approved request {ids[0][:12]} (refund for User::"alice")')
    assert lines[1].startswith(f'approved request {ids[1][:12]} (refund for User::"alice")')
    assert lines[2].startswith(f"refused {ids[2][:12]}: request {ids[2]} expired at ")
    assert lines[2].endswith(
        "can no longer be answered; the call will not run (the agent is told it expired)"
    )
    assert "2 of 3 answered; 1 refused" in result.stderr
    stored = {t: three.fence.approvals.get(r.request_id) for t, r in three.requests.items()}
    assert stored["T-3"] is not None and stored["T-3"].answer is None
    # Each thread resumes on its own answer; each refund runs once.
    for thread in ("T-1", "T-2"):
        out = three.fence.run(three.agents[thread], None, _config(thread), timeout=0)
        ran = [
            m.content
            for m in out["messages"]
            if isinstance(m, ToolMessage) and m.tool_call_id == "call-refund-large"
        ]
        assert ran == ["refunded EUR 2500.00 to c-102"]


def test_each_batch_answer_is_signed_for_its_own_request_and_digest(
    three: Three, keys: dict[str, Path]
) -> None:
    ids = three.ids("T-1", "T-2")
    result = cli("approvals", "approve", *ids, *_as_fran(three, keys), "--json")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [a["request_id"] for a in answers] == ids
    assert all(a["status"] == "answered" for a in answers)
    fence = three.fence
    registry = ApproverRegistry.from_engine(fence.engine)
    signatures = set()
    for thread, answer in zip(("T-1", "T-2"), answers, strict=True):
        request = three.requests[thread]
        stored = fence.approvals.get(request.request_id)
        assert stored is not None and stored.answer == answer["envelope"]
        signed = answer["envelope"]["answer"]
        assert (signed["request_id"], signed["action_digest"]) == (
            request.request_id,
            request.action_digest,
        )
        verified = check_answer(
            stored.answer, request, engine=fence.engine, registry=registry, now_us=now_us()
        )
        assert str(verified.approver) == 'User::"fran"'
        signatures.add(answer["envelope"]["signature"])
    assert len(signatures) == 2  # one signature per answer


def test_batch_answer_moved_to_another_request_is_refused(
    three: Three, keys: dict[str, Path]
) -> None:
    first, second = three.ids("T-1", "T-2")
    assert cli("approvals", "approve", first, *_as_fran(three, keys)).returncode == 0
    moved = three.fence.approvals.get(first).answer  # type: ignore[union-attr]
    registry = ApproverRegistry.from_engine(three.fence.engine)
    with pytest.raises(ApprovalRefused, match=f"the answer is for request {first}, not {second}"):
        check_answer(
            moved,
            three.requests["T-2"],
            engine=three.fence.engine,
            registry=registry,
            now_us=now_us(),
        )
    # Copied into the other request's row, it is refused when that thread resumes.
    with sqlite3.connect(three.db) as db:
        db.execute(
            "UPDATE approvals SET answer = ?, answered_us = ? WHERE request_id = ?",
            (json.dumps(moved), now_us(), second),
        )
    message = three.resume("T-2")["call-refund-large"]
    assert message.status == "error"
    assert f"the answer is for request {first}, not {second}" in str(message.content)


def test_batch_reject_and_unknown_id(three: Three, keys: dict[str, Path]) -> None:
    ids = [*three.ids("T-1"), "0123456789abcdef", *three.ids("T-2")]
    result = cli(
        "approvals", "reject", *ids, "--message", "duplicate", *_as_fran(three, keys), "--json"
    )
    assert result.returncode == 1, result.stderr
    outcomes = json.loads(result.stdout)
    assert [o["status"] for o in outcomes] == ["answered", "refused", "answered"]
    assert outcomes[1]["code"] == "unknown"
    assert "no approval request '0123456789abcdef' in this log" in outcomes[1]["message"]
    for thread in ("T-1", "T-2"):
        message = three.resume(thread)["call-refund-large"]
        assert "rejected the call to 'refund': duplicate" in str(message.content)


def test_all_pending_approve_asks_first(three: Three, keys: dict[str, Path]) -> None:
    asked = cli("approvals", "approve", "--all-pending", *_as_fran(three, keys))
    assert asked.returncode == 2
    assert "--all-pending would approve 2 request(s):" in asked.stderr
    assert "pass --yes to approve the 2 request(s) listed above" in asked.stderr
    assert all(s.answer is None for s in three.fence.approvals.list())
    filtered = cli(
        "approvals", "approve", "--all-pending", "--thread", "T-2", "--yes", *_as_fran(three, keys)
    )
    assert filtered.returncode == 0, filtered.stderr
    answered = {s.request.thread for s in three.fence.approvals.list() if s.answer is not None}
    assert answered == {"T-2"}
    rest = cli("approvals", "approve", "--all-pending", "--yes", *_as_fran(three, keys))
    assert rest.returncode == 0, rest.stderr
    answered = {s.request.thread for s in three.fence.approvals.list() if s.answer is not None}
    assert answered == {"T-1", "T-2"}
    none_left = cli(
        "approvals", "approve", "--all-pending", "--tool", "refund", "--yes", *_as_fran(three, keys)
    )
    assert none_left.returncode == 2
    assert "--all-pending selects no pending request" in none_left.stderr


def test_batch_options_are_checked(three: Three, keys: dict[str, Path]) -> None:
    no_ids, both, filter_alone = clis(
        ("approvals", "approve", *_as_fran(three, keys)),
        ("approvals", "approve", *three.ids("T-1"), "--all-pending", *_as_fran(three, keys)),
        ("approvals", "approve", *three.ids("T-1"), "--tool", "refund", *_as_fran(three, keys)),
    )
    assert no_ids.returncode == 2
    assert "which requests? name one or more ids" in no_ids.stderr
    assert both.returncode == 2
    assert "name request ids or pass --all-pending, not both" in both.stderr
    assert filter_alone.returncode == 2
    assert "--tool, --thread and --yes go with --all-pending" in filter_alone.stderr
    assert all(s.answer is None for s in three.fence.approvals.list())
