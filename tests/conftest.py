"""Shared fixtures: a small governed tool set that counts its own runs, and its policies."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.tools import BaseTool, tool

from agentfence import Fence, Resource, govern
from agentfence._signing import Signer
from agentfence.approvals import ApprovalAnswer, ApprovalRequest, sign_answer
from tests.pg import fresh_schema

FIXTURES = Path(__file__).parent / "fixtures"


class Ran:
    """Records every tool that actually ran, with its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def ran() -> Ran:
    return Ran()


@pytest.fixture
def tools(ran: Ran) -> list[BaseTool]:
    """read_record, send_email, pay and wipe: each notes in ``ran`` that it ran."""

    @tool
    def read_record(record_id: str) -> str:
        """Read a record."""
        ran.calls.append(("read_record", {"record_id": record_id}))
        return f"record {record_id}: ok"

    @tool
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        ran.calls.append(("send_email", {"to": to, "body": body}))
        return f"sent to {to}"

    @tool
    def pay(account: str, amount: float, memo: str | None = None) -> str:
        """Pay an amount to an account."""
        ran.calls.append(("pay", {"account": account, "amount": amount}))
        return f"paid {amount} to {account}"

    @tool
    def wipe(path: str) -> str:
        """Delete a path."""
        ran.calls.append(("wipe", {"path": path}))
        return f"wiped {path}"

    govern(read_record, groups=["read"], resource=Resource("Record", arg="record_id"))
    govern(send_email, groups=["external_send"])
    govern(pay, groups=["payments"], resource=Resource("Account", arg="account"))
    govern(wipe, groups=["destructive"])
    return [read_record, send_email, pay, wipe]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A writable copy of tests/fixtures/policies."""
    target = tmp_path / "policies"
    shutil.copytree(FIXTURES / "policies", target)
    return target


@pytest.fixture
def make_fence(
    request: pytest.FixtureRequest, policy_dir: Path, tools: list[BaseTool]
) -> Callable[..., Fence]:
    """Fences over the test's policy directory, each closed when the test ends.

    The close is registered when the fence is made, so it runs before the teardown of any
    fixture set up earlier (a PostgreSQL schema above all): a log left open would go on
    retrying its queued entries against a dropped schema while later tests run.
    """

    def make(**kwargs: Any) -> Fence:
        kwargs.setdefault("tools", tools)
        fence = Fence.from_directory(policy_dir, **kwargs)
        request.node.addfinalizer(lambda: _close_quietly(fence))
        return fence

    return make


def _close_quietly(fence: Fence) -> None:
    with contextlib.suppress(Exception):  # a test may have broken its log on purpose
        fence.close()


def approver_key(name: str) -> Signer:
    """The test approvers' keys (their public halves are in fixtures/policies/approvers.toml)."""
    return Signer.from_seed(
        name, hashlib.sha256(f"agentfence test approver {name}".encode()).digest()
    )


def signed(
    request: ApprovalRequest,
    *,
    approver: str = "fran",
    decision: str = "approve",
    key: str | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """A signed answer to ``request`` by ``approver`` (with ``key``'s signature)."""
    answer = ApprovalAnswer(
        request_id=request.request_id,
        action_digest=request.action_digest,
        approver=f'User::"{approver}"',
        decision=decision,  # type: ignore[arg-type]
        answered_us=changes.pop("answered_us", request.created_us + 1),
        **changes,
    )
    return sign_answer(answer, approver_key(key or approver))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL log URL in a fresh schema (skipped only when PostgreSQL tests are off)."""
    with fresh_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test against a SQLite file and a PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fence.db'}"
        return
    with fresh_schema() as url:
        yield url


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly when the PostgreSQL tests did not run."""
    if not os.environ.get("AGENTFENCE_TEST_POSTGRES_URL"):
        terminalreporter.write_sep(
            "#",
            "the PostgreSQL backend tests did NOT run (no AGENTFENCE_TEST_POSTGRES_URL; "
            "`make test` starts a server)",
            red=True,
        )
