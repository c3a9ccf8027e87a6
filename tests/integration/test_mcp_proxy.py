"""``agentfence mcp serve`` as an MCP client sees it: the SDK's client speaks stdio to the
proxy, which fronts tests/mcp_server.py (a real FastMCP server recording every call it gets)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

from agentfence._log_reader import parse_entry
from agentfence.approvals import ApprovalStore
from agentfence.inbox.views import now_us
from agentfence.records import DecisionRecord
from tests.conftest import signed
from tests.tokens import AUDIENCE, ISSUER, Provider

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "mcp_server.py"
POLICIES = ROOT / "tests" / "fixtures" / "mcp_policies"


def keys(folder: Path) -> tuple[Path, Path]:
    """A log signing key made with the CLI: (private key file, public key file)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentfence.cli",
            "keys",
            "generate",
            "--name",
            "mcp-log",
            "--out",
            str(folder),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return folder / "mcp-log.key", folder / "mcp-log.pub"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "160"}


def write_config(
    tmp: Path, calls: Path, *, mode: str = "", backup: bool = False, jwks: Path | None = None
) -> Path:
    """A proxy config: the test server as upstream "notes" (and "backup", prefixed); the
    principal is alice, or, with ``jwks``, whom a bearer token verified against it names."""
    key, _ = keys(tmp / "keys")
    servers = [("notes", False)] + ([("backup", True)] if backup else [])
    lines = [
        "[fence]",
        f'policies = "{POLICIES}"',
        f'log = "sqlite:///{tmp / "fence.db"}"',
        f'signing_key = "{key}"',
    ]
    if jwks is None:
        lines.append("""principal = 'User::"alice"'""")
    else:
        lines += [
            "[identity]",
            f'issuer = "{ISSUER}"',
            f'audience = "{AUDIENCE}"',
            f'jwks_file = "{jwks}"',
        ]
    for name, prefix in servers:
        lines += [
            f"[servers.{name}]",
            f'command = "{sys.executable}"',
            f'args = ["{SERVER}"]',
            f"prefix = {'true' if prefix else 'false'}",
            f'env = {{ AGENTFENCE_TEST_MCP_CALLS = "{calls}", '
            f'AGENTFENCE_TEST_MCP_MODE = "{mode}" }}',
        ]
    path = tmp / "proxy.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def with_proxy(
    config: Path, body: Callable[[ClientSession], Awaitable[Any]], token: str | None = None
) -> Any:
    """Start ``agentfence mcp serve --config`` and run ``body`` with a client session to it
    (``token``: the bearer token the client starts it with)."""
    env = _env() if token is None else {**_env(), "AGENTFENCE_TOKEN": token}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agentfence.cli", "mcp", "serve", "--config", str(config)],
        env=env,
    )

    async def main() -> Any:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)

    return asyncio.run(main())


def text_of(result: types.CallToolResult) -> str:
    return " ".join(b.text for b in result.content if isinstance(b, types.TextContent))


def received(calls: Path) -> list[dict[str, Any]]:
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


def test_client_sees_allowed_denied_and_held_calls_and_the_log_verifies(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    config = write_config(tmp_path, calls)
    url = f"sqlite:///{tmp_path / 'fence.db'}"

    async def body(session: ClientSession) -> dict[str, Any]:
        listed = {t.name: t for t in (await session.list_tools()).tools}
        seen: dict[str, Any] = {"listed": listed}
        seen["read"] = await session.call_tool("read_note", {"name": "todo"})
        seen["delete"] = await session.call_tool("delete_note", {"name": "todo"})
        seen["smuggle"] = await session.call_tool(
            "transfer", {"account": "acc-9", "amount": 5, "to": "evil"}
        )
        seen["held"] = await session.call_tool("transfer", {"account": "acc-9", "amount": 5000})
        seen["calls_while_held"] = received(calls)
        store = ApprovalStore(url)
        try:
            [waiting] = store.list()
            seen["waiting"] = waiting
            store.submit(waiting.request.request_id, signed(waiting.request), now_us=now_us())
        finally:
            store.close()
        seen["approved"] = await session.call_tool("transfer", {"account": "acc-9", "amount": 5000})
        seen["again"] = await session.call_tool("transfer", {"account": "acc-9", "amount": 5000})
        return seen

    seen = with_proxy(config, body)
    assert {"read_note", "delete_note", "transfer", "crash"} <= set(seen["listed"])
    assert seen["listed"]["read_note"].annotations.readOnlyHint is True
    assert not seen["read"].isError and text_of(seen["read"]) == "buy milk"
    assert seen["delete"].isError
    assert "tools the server marks destructive never run" in text_of(seen["delete"])
    assert seen["smuggle"].isError and "'to' was unexpected" in text_of(seen["smuggle"])
    held = text_of(seen["held"])
    assert seen["held"].isError
    assert held.startswith("held, waiting for an approver (request id ")
    assert seen["waiting"].request.request_id in held
    assert "transfers over 100 need finance" in held
    # Neither the denied, the smuggled nor the held call reached the server.
    assert seen["calls_while_held"] == [{"tool": "read_note", "args": {"name": "todo"}}]
    assert not seen["approved"].isError and text_of(seen["approved"]) == "sent 5000.0 to acc-9"
    # The approval ran the call once; the same call again is a new call, held again.
    assert seen["again"].isError and "held, waiting for an approver" in text_of(seen["again"])
    assert [c["tool"] for c in received(calls)] == ["read_note", "transfer"]
    pub = tmp_path / "keys" / "mcp-log.pub"
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentfence.cli",
            "log",
            "verify",
            str(tmp_path / "fence.db"),
            "--key",
            str(pub),
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "verified: 11 entries" in verified.stdout, verified.stdout
    # The read and the approved transfer ran; the other decisions have no outcome.
    assert "2 outcomes follow their allowed or approved decisions" in verified.stdout


def test_upstream_that_crashes_gives_a_clear_error_and_the_fence_stays_up(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    config = write_config(tmp_path, calls, backup=True)

    async def body(session: ClientSession) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        seen["crash"] = await session.call_tool("crash", {})
        seen["after"] = await session.call_tool("read_note", {"name": "todo"})
        seen["other"] = await session.call_tool("backup_read_note", {"name": "plan"})
        seen["listed"] = [t.name for t in (await session.list_tools()).tools]
        return seen

    seen = with_proxy(config, body)
    assert seen["crash"].isError
    crashed = text_of(seen["crash"])
    assert "upstream 'notes' failed while running 'crash'" in crashed
    assert "agentfence is still serving the other tools" in crashed
    assert seen["after"].isError
    assert "upstream 'notes' is down (it stopped while running 'crash'" in text_of(seen["after"])
    assert not seen["other"].isError and text_of(seen["other"]) == "ship the fence"
    assert "backup_read_note" in seen["listed"]


def test_malformed_upstream_schema_stops_the_proxy_naming_the_tool(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    config = write_config(tmp_path, calls, mode="malformed")
    result = subprocess.run(
        [sys.executable, "-m", "agentfence.cli", "mcp", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=_env(),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "upstream 'notes': tool 'delete_note': its input schema is not a valid JSON Schema" in (
        message
    )
    assert "agentfence mcp serve did not start" in message
    assert received(calls) == []


def test_proxy_without_a_principal_denies_every_call(tmp_path: Path) -> None:
    from agentfence.mcp import McpProxy, ProxyConfig, Upstream

    calls = tmp_path / "calls.jsonl"
    upstream = Upstream(
        "notes", sys.executable, (str(SERVER),), {"AGENTFENCE_TEST_MCP_CALLS": str(calls)}
    )
    config = ProxyConfig(upstreams=(upstream,), policies=str(POLICIES))

    async def main() -> tuple[types.CallToolResult, types.CallToolResult]:
        with open(os.devnull, "w") as quiet:
            async with McpProxy.open(config, errlog=quiet) as proxy:
                nobody = await proxy.call("read_note", {"name": "todo"})
                alice = await proxy.call("read_note", {"name": "todo"}, principal='User::"alice"')
                return nobody, alice

    nobody, alice = asyncio.run(main())
    assert nobody.isError and "no principal" in text_of(nobody).lower(), text_of(nobody)
    assert not alice.isError and text_of(alice) == "buy milk"
    assert received(calls) == [{"tool": "read_note", "args": {"name": "todo"}}]


def test_bearer_token_decides_who_calls_and_a_bad_token_is_a_denial_that_says_why(
    tmp_path: Path,
) -> None:
    """With [identity], no fixed principal: the token the client starts the proxy with is
    verified on every call, and its subject is who the call acts for."""
    calls = tmp_path / "calls.jsonl"
    provider = Provider()
    config = write_config(tmp_path, calls, jwks=provider.write_jwks(tmp_path / "jwks.json"))

    async def read(session: ClientSession) -> types.CallToolResult:
        return await session.call_tool("read_note", {"name": "todo"})

    good = with_proxy(config, read, token=provider.token(sub="carol", groups=[]))
    assert not good.isError and text_of(good) == "buy milk"
    expired = with_proxy(config, read, token=provider.token(sub="carol", exp=1))
    assert expired.isError and "the bearer token has expired" in text_of(expired)
    forged = provider.token(sub="carol")[:-4] + "AAAA"
    tampered = with_proxy(config, read, token=forged)
    assert tampered.isError
    # Only the call with the good token reached the server.
    assert received(calls) == [{"tool": "read_note", "args": {"name": "todo"}}]
    with sqlite3.connect(tmp_path / "fence.db") as conn:
        bodies = [bytes(b) for (b,) in conn.execute("SELECT body FROM entries ORDER BY seq")]
    records = [parse_entry(body)[1] for body in bodies]
    decisions = [r for r in records if isinstance(r, DecisionRecord)]
    assert [(d.principal, d.effect) for d in decisions] == [
        ('User::"carol"', "ALLOW"),
        (None, "DENY"),
        (None, "DENY"),
    ]


def test_identity_without_a_token_stops_the_proxy_saying_what_to_set(tmp_path: Path) -> None:
    calls = tmp_path / "calls.jsonl"
    jwks = Provider().write_jwks(tmp_path / "jwks.json")
    config = write_config(tmp_path, calls, jwks=jwks)
    env = {k: v for k, v in _env().items() if k != "AGENTFENCE_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "agentfence.cli", "mcp", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "$AGENTFENCE_TOKEN is empty; set it to the client's access token" in result.stderr
    assert received(calls) == []
