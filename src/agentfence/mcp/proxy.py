"""``agentfence mcp serve``: an MCP server that fences the tools of upstream MCP servers.

Each upstream is started over stdio and kept open by a task of its own (the SDK's stdio
client and session are entered and left in that task). Its tools are listed once, turned into
LangChain tools by langchain-mcp-adapters, and given to :meth:`Fence.from_directory
<agentfence.fence.Fence.from_directory>`, so the proxy's catalog, Cedar schema, action groups
and argument checks are the same as for MCP tools used inside LangGraph.

A ``tools/call`` becomes a tool-call request built outside a graph
(:func:`agentfence.langgraph.outside_request`) and goes through
:meth:`Fence.awrap_tool_call <agentfence.fence.Fence.awrap_tool_call>`: decided, recorded,
then forwarded (allowed), answered with the refusal (denied), or answered "held" with the
request in the approvals queue (``on_hold="queue"``). The same call made again, once
answered, runs (or hears the refusal).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import sys
import tomllib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
from anyio.abc import TaskGroup, TaskStatus
from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.server.lowlevel import Server
from pydantic import TypeAdapter, ValidationError

from agentfence.config import CONFIG_AGENT, CONFIG_ON_HOLD, CONFIG_PRINCIPAL, CONFIG_THREAD
from agentfence.decision import PrincipalResolver
from agentfence.errors import ConfigurationError, ToolSpecError
from agentfence.fence import Fence
from agentfence.langgraph import (
    ToolCallRequest,
    ToolResult,
    outside_request,
    result_messages,
    tool_result,
)
from agentfence.records import canonical_or_repr

__all__ = ["McpProxy", "ProxyConfig", "Upstream"]

_BLOCK: TypeAdapter[types.ContentBlock] = TypeAdapter(types.ContentBlock)


@dataclass(frozen=True)
class Upstream:
    """One MCP server the proxy fronts: started as ``command args...`` and spoken to over
    stdio. With ``prefix``, its tools are offered as ``<name>_<tool>``."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    prefix: bool = False

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """``NAME=COMMAND ARG...`` (the ``--upstream`` option), split as a shell would."""
        import shlex

        name, sep, command = text.partition("=")
        words = shlex.split(command)
        if not sep or not name.strip() or not words:
            raise ConfigurationError(
                f"--upstream {text!r} is not NAME=COMMAND; write for example "
                "--upstream 'notes=python notes_server.py'"
            )
        return cls(name=name.strip(), command=words[0], args=tuple(words[1:]))


TOKEN_ENV = "AGENTFENCE_TOKEN"  # noqa: S105 - the variable's name, not a secret
"""Where ``agentfence mcp serve`` reads the client's bearer token (with ``[identity]``)."""


@dataclass(frozen=True)
class ProxyConfig:
    """What ``agentfence mcp serve`` runs: the upstreams, and the fence they sit behind.

    ``principal`` is who every call acts for (``User::"alice"``); without one, every call is
    denied, as for a LangGraph run without a principal. With ``identity`` (the options of
    :class:`~agentfence.identity.BearerTokenResolver`) instead, every call acts for whom the
    bearer token in the environment variable ``token_env`` names, verified on each call.
    """

    upstreams: tuple[Upstream, ...]
    policies: str | None = None
    log: str | None = None
    signing_key: str | None = None
    principal: str | None = None
    agent: str = "mcp-proxy"
    thread: str = "mcp"
    identity: Mapping[str, Any] | None = None
    token_env: str = TOKEN_ENV

    @classmethod
    def load(cls, path: str | Path) -> ProxyConfig:
        """Read a TOML (or ``.json``) file: a ``[fence]`` table and ``[servers.NAME]`` tables
        with ``command``, ``args``, ``env``, ``cwd`` and ``prefix`` (``docs/mcp-guide.md``).
        Relative paths are taken from the file's folder."""
        where = Path(path)
        try:
            text = where.read_text(encoding="utf-8")
            raw = json.loads(text) if where.suffix == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot read the proxy configuration {where}: {exc}") from exc
        unknown = set(raw) - {"fence", "servers", "identity"}
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown table(s) {sorted(unknown)}; the tables are [fence], "
                "[servers.NAME] and [identity]"
            )
        fence = dict(raw.get("fence") or {})
        base = where.parent

        def local(value: Any, key: str) -> str | None:
            if value is None:
                return None
            if not isinstance(value, str):
                raise ConfigurationError(f"{where}: [fence] {key} must be a string")
            if key == "log" and "://" in value:
                return value
            return str(base / value)

        upstreams: list[Upstream] = []
        for name, spec in (raw.get("servers") or {}).items():
            if not isinstance(spec, Mapping) or not isinstance(spec.get("command"), str):
                raise ConfigurationError(
                    f'{where}: [servers.{name}] needs command = "..." (and optionally args, '
                    "env, cwd, prefix)"
                )
            extra = set(spec) - {"command", "args", "env", "cwd", "prefix"}
            if extra:
                raise ConfigurationError(
                    f"{where}: [servers.{name}] has unknown key(s) {sorted(extra)}; the keys "
                    "are command, args, env, cwd, prefix"
                )
            upstreams.append(
                Upstream(
                    name=name,
                    command=spec["command"],
                    args=tuple(str(a) for a in spec.get("args", ())),
                    env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
                    cwd=str(base / spec["cwd"]) if spec.get("cwd") else None,
                    prefix=bool(spec.get("prefix", False)),
                )
            )
        known = {"policies", "log", "signing_key", "principal", "agent", "thread"}
        if set(fence) - known:
            raise ConfigurationError(
                f"{where}: [fence] has unknown key(s) {sorted(set(fence) - known)}; the keys "
                f"are {', '.join(sorted(known))}"
            )
        if "identity" in raw and not isinstance(raw["identity"], Mapping):
            raise ConfigurationError(
                f"{where}: [identity] must be a table of BearerTokenResolver's options "
                "(issuer, audience, jwks_file or jwks_url, ...); see docs/identity.md"
            )
        identity = dict(raw["identity"]) if "identity" in raw else None
        token_env = TOKEN_ENV
        if identity is not None:
            token_env = str(identity.pop("token_env", token_env))
            if "jwks_file" in identity:
                identity["jwks_file"] = local(identity["jwks_file"], "jwks_file")
        return cls(
            identity=identity,
            token_env=token_env,
            upstreams=tuple(upstreams),
            policies=local(fence.get("policies"), "policies"),
            log=local(fence.get("log"), "log"),
            signing_key=local(fence.get("signing_key"), "signing_key"),
            principal=fence.get("principal"),
            agent=str(fence.get("agent") or "mcp-proxy"),
            thread=str(fence.get("thread") or "mcp"),
        )


class _Connection:
    """One upstream's stdio session, owned by a task of its own for the proxy's lifetime."""

    def __init__(self, upstream: Upstream, errlog: TextIO) -> None:
        self.upstream = upstream
        self.tools: list[types.Tool] = []
        self.session: ClientSession | None = None
        self.failure: str | None = None
        self._errlog = errlog
        self._stop = anyio.Event()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        up = self.upstream
        params = StdioServerParameters(
            command=up.command, args=list(up.args), env=dict(up.env) or None, cwd=up.cwd
        )
        async with (
            stdio_client(params, errlog=self._errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            self.tools = await _all_tools(session)
            self.session = session
            task_status.started()
            await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()

    async def call(self, tool: str, args: Mapping[str, Any]) -> types.CallToolResult:
        if self.session is None or self.failure is not None:
            raise ConnectionError(
                f"upstream {self.upstream.name!r} is down ({self.failure or 'not started'}); "
                "restart agentfence mcp serve to start it again"
            )
        try:
            return await self.session.call_tool(tool, dict(args))
        except Exception as exc:
            if _is_closed(exc):
                self.failure = f"it stopped while running {tool!r}: {exc}"
            raise


def _resolver(config: ProxyConfig) -> PrincipalResolver | None:
    """With ``[identity]``: every call acts for whom the bearer token in ``token_env`` names,
    verified on each call (so an expired token stops working); without, the configured
    principal (``None``)."""
    if config.identity is None:
        return None
    if config.principal is not None:
        raise ConfigurationError(
            "give either a fixed principal or an [identity] that verifies a bearer token, not both"
        )
    if not os.environ.get(config.token_env):
        raise ConfigurationError(
            f"[identity] is set, so every call acts for whom a bearer token names, but "
            f"${config.token_env} is empty; set it to the client's access token (a JWT)"
        )
    from agentfence.identity import BearerTokenResolver

    try:
        return BearerTokenResolver(
            **config.identity, token=lambda _config: os.environ.get(config.token_env)
        )
    except TypeError as exc:
        raise ConfigurationError(
            f"[identity] has a key BearerTokenResolver does not take ({exc}); see "
            "docs/identity.md for its options"
        ) from None


def _is_closed(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | EOFError) or (
        "connection closed" in text
    )


async def _all_tools(session: ClientSession) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.nextCursor
        if not cursor:
            return tools


@dataclass(frozen=True)
class _Route:
    connection: _Connection
    tool: str  # the name the upstream knows it by


class McpProxy:
    """A fence in front of MCP servers: every ``tools/call`` is decided, recorded, then
    forwarded, refused or held. Build it with :meth:`open`."""

    def __init__(
        self, fence: Fence, connections: Sequence[_Connection], config: ProxyConfig
    ) -> None:
        self.fence = fence
        self._config = config
        self._connections = list(connections)
        self._routes: dict[str, _Route] = {}
        self._listed: list[types.Tool] = []
        for conn in self._connections:
            for tool in conn.tools:
                name = _exposed(conn.upstream, tool.name)
                self._routes[name] = _Route(conn, tool.name)
                # Structured content is not forwarded (the fence records, and may redact,
                # the content blocks), so the output schema that would demand it is dropped.
                self._listed.append(tool.model_copy(update={"name": name, "outputSchema": None}))
        # Call ids are unique to this process, so two runs of the proxy never share a
        # decision id; a held call made again reuses its first id (see call()).
        self._nonce = os.urandom(6).hex()
        self._counter = itertools.count(1)
        self._held: dict[str, str] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, config: ProxyConfig, *, errlog: TextIO | None = None
    ) -> AsyncIterator[McpProxy]:
        """Start the upstreams, list their tools and load the fence; stop them on exit.

        Raises :class:`~agentfence.errors.ConfigurationError` naming an upstream that does not
        start, and :class:`~agentfence.errors.ToolSpecError` naming a tool whose schema is
        malformed: the proxy then serves nothing, so nothing runs unchecked.
        """
        if not config.upstreams:
            raise ConfigurationError(
                "no upstream MCP servers: give --upstream NAME=COMMAND or a --config file with "
                "[servers.NAME] tables"
            )
        names = [u.name for u in config.upstreams]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"two upstreams share a name: {names}; name each once")
        try:
            async with anyio.create_task_group() as group:
                connections = [_Connection(u, errlog or sys.stderr) for u in config.upstreams]
                try:
                    for conn in connections:
                        await _start(group, conn)
                    proxy = cls(cls._fence(config, connections), connections, config)
                except BaseException:
                    group.cancel_scope.cancel()
                    raise
                try:
                    yield proxy
                finally:
                    proxy.fence.close()
                    for conn in connections:
                        conn.stop()
        except BaseExceptionGroup as grouped:
            # The task group wraps what its tasks (or the body) raised: one error is raised
            # as itself, so the CLI prints its message.
            leaves = _leaves(grouped)
            if len(leaves) == 1:
                raise leaves[0] from None
            raise

    @staticmethod
    def _fence(config: ProxyConfig, connections: Sequence[_Connection]) -> Fence:
        tools: list[Any] = []
        seen: dict[str, str] = {}
        for conn in connections:
            for tool in conn.tools:
                name = _exposed(conn.upstream, tool.name)
                if name in seen:
                    raise ConfigurationError(
                        f"upstreams {seen[name]!r} and {conn.upstream.name!r} both offer a tool "
                        f"named {name!r}; set prefix = true for one of them"
                    )
                seen[name] = conn.upstream.name
                converted = convert_mcp_tool_to_langchain_tool(conn.session, tool)
                converted.name = name
                tools.append(converted)
        try:
            return Fence.from_directory(
                config.policies,
                tools=tools,
                log=config.log,
                signing_key=config.signing_key,
                agent=config.agent,
                on_hold="queue",
                principal_resolver=_resolver(config),
            )
        except ToolSpecError as exc:
            owner = next((seen[n] for n in seen if repr(n) in str(exc)), None)
            where = f"upstream {owner!r}: " if owner else ""
            raise ToolSpecError(f"{where}{exc}; agentfence mcp serve did not start") from None

    def tools(self) -> list[types.Tool]:
        """The tools offered to clients: every upstream's, as listed (prefixed if asked)."""
        return list(self._listed)

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        principal: str | None = None,
    ) -> types.CallToolResult:
        """Decide, record and (if allowed) forward one ``tools/call``; never raises.

        ``principal`` is who this call acts for, when the caller verified it (a bearer
        token); the configured ``principal`` otherwise.
        """
        config = self._config
        who = principal if principal is not None else config.principal
        if config.identity is not None:  # the bearer token decides who; its digest keys holds
            token = os.environ.get(config.token_env, "").encode()
            who = "token:" + hashlib.sha256(token).hexdigest()
        args = dict(arguments or {})
        key = hashlib.sha256(canonical_or_repr([who, name, args])).hexdigest()
        call_id = self._held.get(key) or f"mcp-{self._nonce}-{next(self._counter)}"
        configurable: dict[str, Any] = {
            CONFIG_THREAD: config.thread,
            CONFIG_AGENT: config.agent,
            CONFIG_ON_HOLD: "queue",
        }
        if who is not None:
            configurable[CONFIG_PRINCIPAL] = who
        request = outside_request(name, args, call_id, configurable)
        try:
            result = await self.fence.awrap_tool_call(request, self._forward)
        except Exception as exc:  # the upstream failed: the fence recorded it; it stays up
            self._held.pop(key, None)
            route = self._routes.get(name)
            upstream = route.connection.upstream.name if route else "?"
            return _error(
                f"upstream {upstream!r} failed while running {name!r} ({type(exc).__name__}: "
                f"{exc}). The call may not have taken effect; check before retrying. "
                "agentfence is still serving the other tools"
            )
        messages = result_messages(result, call_id)
        if not messages:
            return _error(f"the call to {name!r} returned no tool result")
        result = messages[0]
        fenced = result.artifact.get("agentfence", {}) if isinstance(result.artifact, dict) else {}
        if fenced.get("held"):
            self._held[key] = call_id
        else:
            self._held.pop(key, None)
        return types.CallToolResult(
            content=_blocks(result.content), isError=result.status == "error"
        )

    async def _forward(self, request: ToolCallRequest) -> ToolResult:
        """Run an allowed call on its upstream with the arguments the fence bound."""
        call = request.tool_call
        name = str(call["name"])
        route = self._routes.get(name)
        if route is None:  # the fence knows only the upstreams' tools: cannot happen
            raise LookupError(f"no upstream offers {name!r}")
        found = await route.connection.call(route.tool, call["args"])
        content = [
            block.model_dump(mode="json", by_alias=True, exclude_none=True)
            for block in found.content
        ]
        return tool_result(content, name=name, call_id=call.get("id") or "", error=found.isError)

    def server(self) -> Server[Any, Any]:
        """The MCP server (the SDK's low-level ``Server``) answering clients."""
        server: Server[Any, Any] = Server("agentfence")

        @server.list_tools()  # type: ignore[no-untyped-call,untyped-decorator]
        async def list_tools() -> list[types.Tool]:
            return self.tools()

        # Arguments are checked by the fence, against the schema it decided on.
        @server.call_tool(validate_input=False)  # type: ignore[untyped-decorator]
        async def call_tool(name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
            return await self.call(name, arguments)

        return server

    async def serve_stdio(self) -> None:
        """Serve MCP clients on stdin/stdout until the client goes away."""
        from mcp.server.stdio import stdio_server

        server = self.server()
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())


async def _start(group: TaskGroup, conn: _Connection) -> None:
    try:
        await group.start(conn.run)
    except Exception as exc:
        up = conn.upstream
        raise ConfigurationError(
            f"upstream {up.name!r} ({up.command} {' '.join(up.args)}) did not start as an MCP "
            f"server: {type(exc).__name__}: {exc}; check its command and run it by hand"
        ) from exc


def _leaves(grouped: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in grouped.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _exposed(upstream: Upstream, tool: str) -> str:
    return f"{upstream.name}_{tool}" if upstream.prefix else tool


def _blocks(content: Any) -> list[types.ContentBlock]:
    """A fenced result's content as MCP content blocks (text for anything else)."""
    items = content if isinstance(content, list) else [content]
    blocks: list[types.ContentBlock] = []
    for item in items:
        if isinstance(item, Mapping):
            try:
                blocks.append(_BLOCK.validate_python(dict(item)))
                continue
            except ValidationError:
                item = json.dumps(item, sort_keys=True, default=str)
        blocks.append(types.TextContent(type="text", text=str(item)))
    return blocks


def _error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)
