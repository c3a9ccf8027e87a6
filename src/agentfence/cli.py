"""The ``agentfence`` command: a thin layer over the public API.

Subcommands mirror the API (``policy validate`` loads a :class:`PolicyEngine`, ``policy test``
calls :meth:`Fence.decide`); ``--json`` prints machine-readable output; every error leaves
through one path that prints what went wrong and what to do, with exit code 2.
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from agentfence._schema import generate_schema
from agentfence.config import Settings
from agentfence.errors import AgentfenceError, AgentfenceWarning, ConfigurationError
from agentfence.policy import Effect, PolicyEngine, check_syntax
from agentfence.tools import ToolCatalog

__all__ = ["app", "main"]

app = typer.Typer(
    name="agentfence",
    help="Govern LangGraph agents: Cedar policy on every tool call, recorded before it runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
policy_app = typer.Typer(help="Validate, test and inspect Cedar policies.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

# Wide enough for the decision tables when output goes to a file or a CI log.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

ToolsOption = Annotated[
    str | None,
    typer.Option(
        "--tools",
        help="The governed tools, as module:attribute (a list of tools or a "
        "function returning one), e.g. agentfence.demo.tools:TOOLS.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


class Exit(Exception):
    """A CLI outcome with an exit code (1: checks failed; 2: could not run)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def main() -> None:
    """Entry point of the ``agentfence`` console script."""
    try:
        app(standalone_mode=False)
    except Exit as exc:
        sys.exit(exc.code)
    except AgentfenceError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "show"):
            exc.show()
            sys.exit(code)
        raise


def load_tools(spec: str | None) -> list[Any]:
    """Import ``module:attribute`` and return the tools it names."""
    if not spec:
        raise ConfigurationError(
            "no tools given: pass --tools module:attribute naming your list of tools, e.g. "
            "--tools agentfence.demo.tools:TOOLS"
        )
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--tools {spec!r} must look like module:attribute")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"--tools {spec!r}: cannot import {module_name!r}: {exc}") from exc
    finally:
        sys.path.pop(0)
    try:
        value = getattr(module, attr)
    except AttributeError as exc:
        raise ConfigurationError(f"--tools {spec!r}: {module_name} has no {attr!r}") from exc
    tools = value() if callable(value) and not hasattr(value, "name") else value
    if not isinstance(tools, Iterable):
        raise ConfigurationError(f"--tools {spec!r} is not a list of tools")
    return list(tools)


@policy_app.command("validate")
def policy_validate(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Policy directory (default: $AGENTFENCE_POLICY_DIR or ./policies)."),
    ] = None,
    tools: ToolsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Parse and validate every policy against the schema; list each problem with file:line."""
    directory = directory or Path(Settings.from_env().policy_dir)
    if not tools:
        count = check_syntax(directory)
        note = (
            "parsed only: pass --tools module:attribute to validate attributes against "
            "the schema generated from your tools"
        )
        if as_json:
            out.print_json(
                json.dumps(
                    {"valid": True, "policies": count, "parsed_only": True, "warnings": [note]}
                )
            )
        else:
            err.print(f"warning: {note}")
            out.print(f"{directory}: {count} policies parse")
        return
    catalog = ToolCatalog.from_tools(load_tools(tools))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AgentfenceWarning)
        engine = PolicyEngine.load(directory, catalog)
    notes = [str(w.message) for w in caught if issubclass(w.category, AgentfenceWarning)]
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "valid": True,
                    "policy_hash": engine.policy_hash,
                    "policies": len(engine.policies),
                    "files": engine.files,
                    "warnings": notes,
                    "parsed_only": False,
                }
            )
        )
        return
    for note in notes:
        err.print(f"warning: {note}")
    out.print(
        f"{directory}: {len(engine.policies)} policies are valid against the schema "
        f"(policy set {engine.policy_hash[:16]})"
    )


@policy_app.command("schema")
def policy_schema(
    tools: ToolsOption = None,
    policies: Annotated[
        Path | None, typer.Option(help="Include this directory's *.cedarschema files.")
    ] = None,
) -> None:
    """Print the Cedar schema generated from the tools (plus the directory's schema files)."""
    catalog = ToolCatalog.from_tools(load_tools(tools))
    if policies is not None:
        engine = PolicyEngine.load(policies, catalog)
        out.print(engine.schema_text, markup=False, end="")
    else:
        out.print(generate_schema(catalog), markup=False, end="")


@dataclass(frozen=True)
class _Case:
    name: str
    tool: str
    args: dict[str, Any]
    principal: str
    expect: Effect
    expect_policies: tuple[str, ...] | None
    agent: str | None
    messages: tuple[Any, ...] = ()


def _case_messages(raw: Any, where: str) -> tuple[Any, ...]:
    """The thread before a case's call: ``[[case.messages]]`` with role, content, tool, labels."""
    from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage

    from agentfence.labels import METADATA_KEY, labelled

    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigurationError(f"{where}: 'messages' must be a list of tables")
    messages: list[Any] = []
    for number, item in enumerate(raw, start=1):
        at = f"{where}, message {number}"
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise ConfigurationError(f"{at}: needs role and content (a string)")
        role, content = item.get("role"), item["content"]
        labels = item.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ConfigurationError(f"{at}: labels must be a list of strings")
        if role == "user":
            message: Any = HumanMessage(content)
            if labels:
                labelled(message, labels)
        elif role == "system":
            message = SystemMessage(content)
        elif role == "tool":
            if not isinstance(item.get("tool"), str):
                raise ConfigurationError(f'{at}: a tool message needs tool = "<tool name>"')
            message = ToolMessage(
                content,
                name=item["tool"],
                tool_call_id=f"case-message-{number}",
                response_metadata={METADATA_KEY: {"labels": sorted(set(labels))}},
            )
        else:
            raise ConfigurationError(f"{at}: role = {role!r}; use user, system or tool")
        messages.append(message)
    return tuple(messages)


def _read_cases(path: Path) -> tuple[dict[str, Any], list[_Case]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"cases file {str(path)!r} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
    cases: list[_Case] = []
    for index, raw in enumerate(data.get("case", []), start=1):
        where = f"{path}: case {index} ({raw.get('name', 'unnamed')!r})"
        missing = [k for k in ("tool", "principal", "expect") if k not in raw]
        if missing:
            raise ConfigurationError(f"{where} lacks {', '.join(missing)}")
        expect = str(raw["expect"]).upper()
        if expect not in Effect.__members__:
            raise ConfigurationError(
                f"{where}: expect = {raw['expect']!r}; use allow, deny or require_approval"
            )
        expected_policies = raw.get("policies")
        cases.append(
            _Case(
                name=str(raw.get("name", f"case {index}")),
                tool=str(raw["tool"]),
                args=dict(raw.get("args", {})),
                principal=str(raw["principal"]),
                expect=Effect[expect],
                expect_policies=tuple(expected_policies) if expected_policies is not None else None,
                agent=raw.get("agent"),
                messages=_case_messages(raw.get("messages"), where),
            )
        )
    if not cases:
        raise ConfigurationError(f"{path} has no [[case]] tables; see docs/policy-guide.md")
    return data, cases


@policy_app.command("test")
def policy_test(
    cases_file: Annotated[Path, typer.Argument(help="A TOML file of \\[\\[case]] tables.")],
    policies: Annotated[
        Path | None, typer.Option(help="Policy directory (default: the file's 'policies' key).")
    ] = None,
    tools: ToolsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Decide each case and compare with its expected outcome; exit 1 on any mismatch."""
    data, cases = _read_cases(cases_file)
    base = cases_file.parent
    directory = policies or (base / data["policies"] if "policies" in data else None)
    if directory is None:
        raise ConfigurationError(
            f"no policy directory: pass --policies or set 'policies' in {cases_file}"
        )
    from agentfence.fence import Fence  # LangGraph loads only for the commands that need it

    fence = Fence.from_directory(directory, tools=load_tools(tools or data.get("tools")))
    results = []
    for case in cases:
        decision = fence.decide(
            case.tool,
            case.args,
            principal=case.principal,
            agent=case.agent,
            thread=f"policy-test:{case.name}",
            messages=case.messages,
        )
        problems = []
        if decision.effect is not case.expect:
            problems.append(f"expected {case.expect.value}, got {decision.effect.value}")
        if case.expect_policies is not None and set(case.expect_policies) != set(
            decision.policy_ids
        ):
            problems.append(
                f"expected policies {sorted(case.expect_policies)}, got "
                f"{sorted(decision.policy_ids)}"
            )
        results.append((case, decision, problems))
    failed = [r for r in results if r[2]]
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "passed": len(results) - len(failed),
                    "failed": len(failed),
                    "cases": [
                        {
                            "name": c.name,
                            "expected": c.expect.value,
                            "got": d.effect.value,
                            "policies": list(d.policy_ids),
                            "reasons": list(d.reasons),
                            "problems": p,
                        }
                        for c, d, p in results
                    ],
                }
            )
        )
    else:
        table = Table(title=f"policy test: {cases_file}")
        for column in ("case", "expected", "got", "policies", ""):
            table.add_column(column)
        for case, decision, problems in results:
            table.add_row(
                case.name,
                case.expect.value,
                decision.effect.value,
                ", ".join(decision.policy_ids) or "-",
                "[red]FAIL[/]" if problems else "[green]ok[/]",
            )
        out.print(table)
        for case, decision, problems in failed:
            out.print(f"[red]FAIL[/] {case.name}: " + "; ".join(problems), markup=True)
            out.print(f"     reasons: {'; '.join(decision.reasons)}", markup=False)
        out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise Exit(1)


@app.command("demo")
def demo(
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir", help="Where to write the demo's signed log (default: a temporary directory)."
        ),
    ] = None,
    scripted: Annotated[
        bool,
        typer.Option(
            "--scripted",
            help="Answer approval requests with the scripted approver even in a terminal.",
        ),
    ] = False,
    trace: Annotated[
        bool, typer.Option("--trace", help="Print the run's OpenTelemetry trace as a tree.")
    ] = False,
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="desk: a support desk's refunds and approvals (default); injection: an "
            "inbound email tries to make the agent exfiltrate data and pay an attacker.",
        ),
    ] = "desk",
) -> None:
    """Run an offline demo agent: decisions, an approval, a verified log."""
    import tempfile

    from agentfence import demo as demo_module
    from agentfence.verify import verify_log

    if scenario not in demo_module.SCENARIOS:
        raise ConfigurationError(
            f"--scenario {scenario!r} is not a demo scenario; choose one of "
            + ", ".join(demo_module.SCENARIOS)
        )
    interactive = sys.stdin.isatty() and not scripted
    who = "you, at the terminal" if interactive else "SCRIPTED APPROVER (demo stand-in)"
    if scenario == "desk":
        story = 'a support-desk agent (scripted model, offline) works ticket T-88 as User::"alice"'
    else:
        story = (
            'Alice\'s assistant (scripted model, offline) reads her inbox as User::"alice"; '
            "one email is a prompt injection telling it to send the customer list outside "
            "and to pay an unknown account"
        )
    out.print(
        f"[bold]agentfence demo --scenario {scenario}[/]: {story}; every tool call passes "
        "through the fence and into a signed decision log. Approval requests are answered "
        f"by {who}.\n"
    )
    workdir = directory or Path(tempfile.mkdtemp(prefix="agentfence-demo-"))
    telemetry, exporter = None, None
    if trace:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from agentfence.tracing import Telemetry

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        telemetry = Telemetry(tracer_provider=provider)
    run = demo_module.run(
        workdir,
        answerer=_ask_person if interactive else None,
        who=who,
        telemetry=telemetry,
        scenario=scenario,
    )
    style = {"ALLOW": "green", "DENY": "red", "REQUIRE_APPROVAL": "yellow"}
    flows = scenario != "desk"
    table = Table(title="Decisions, as recorded in the decision log", show_lines=True)
    columns = ["#", "step", "tool", "arguments"]
    columns += ["data flow"] if flows else []
    columns += ["outcome", "policies", "reasons"]
    for column in columns:
        table.add_column(column, overflow="fold")
    for index, record in enumerate(run.decisions, start=1):
        stored = run.blobs.get(record.request_blob or "")
        request = json.loads(stored) if stored else {}
        if isinstance(request, list):  # a call of several resources: one request each
            request = request[0] if request else {}
        context = request.get("context", {})
        args = context.get("args", {})
        shown = ", ".join(f"{k}={_short(v)}" for k, v in args.items())
        row = [str(index), str(record.step), record.tool, shown]
        if flows:
            row.append(_data_flow(context))
        row += [
            f"[{style[record.effect]}]{record.effect}[/]",
            "\n".join(record.policy_ids) or "-",
            "\n".join(record.reasons),
        ]
        table.add_row(*row)
    out.print(table)
    for index, record in enumerate(run.decisions, start=1):
        if record.shadow is not None:
            out.print(
                f"Shadow (not enforced): #{index} {record.tool} would be "
                f"{record.shadow.effect} by {', '.join(record.shadow.policy_ids) or '-'}; "
                f"it was {record.effect}.",
                markup=False,
            )
    tools_by_decision = {d.decision_id: d.tool for d in run.decisions}
    for outcome in run.outcomes:
        if outcome.redactions:
            notes = ", ".join(f"{r.count} {r.kind}" for r in outcome.redactions)
            out.print(
                f"Redacted before the model saw it: {tools_by_decision.get(outcome.decision_id)}"
                f" result ({notes}).",
                markup=False,
            )
    counts = {e: sum(r.effect == e for r in run.decisions) for e in style}
    out.print(
        f"{len(run.decisions)} decisions: {counts['ALLOW']} allowed, {counts['DENY']} denied, "
        f"{counts['REQUIRE_APPROVAL']} held for approval. Policy set "
        f"{run.fence.policy_hash[:16]}…"
    )
    for answer in run.answers:
        out.print(
            f"Approval {answer.request_id[:12]}…: {answer.answer} by {answer.approver} "
            f"({answer.verdict}: {answer.reason}); answered by {who}.",
            markup=False,
        )
    final = run.messages[-1].content if run.messages else ""
    out.print(f"\nThe agent's last word: {final}", markup=False)
    if exporter is not None:
        from agentfence.tracing import render_tree

        out.print(
            "\n[bold]Trace[/] (OpenTelemetry spans; each tool span's log.seq is its "
            "decision's entry in the log, whose trace_id/span_id name the span):"
        )
        for line in render_tree(exporter.get_finished_spans()):
            out.print("  " + line, markup=False, soft_wrap=True)
    verified = verify_log(run.log_path, [run.verifier_key])
    out.print(
        f"\nThe signed log {run.log_path} verifies: {verified.size} entries, root "
        f"{verified.root.hex()[:16]}…, checkpoint signed by {run.verifier_key.split('+')[0]}. "
        f"Check it yourself:\n  agentfence log verify {run.log_path} --key "
        f"{run.verifier_key}",
        markup=False,
    )


def _ask_person(pending: Any) -> Any:
    """Ask the person at the terminal to answer one approval request (as fran)."""
    from agentfence.approvals import ApprovalAnswer

    request = pending.request
    out.print(
        f"\n[bold yellow]Approval needed[/]: {request.tool}({json.dumps(request.args)}) "
        f"for {request.principal}\n  why: {'; '.join(request.reasons)}\n  "
        f"approvers: {', '.join(request.approvers) or 'any allowed'}; you answer as "
        'User::"fran" (demo key)'
    )
    choice = typer.prompt("approve / reject", default="approve").strip().lower()
    decision = "reject" if choice.startswith("r") else "approve"
    message = typer.prompt("message for the agent", default="") if decision == "reject" else None
    import time

    return ApprovalAnswer(
        request_id=request.request_id,
        action_digest=request.action_digest,
        approver='User::"fran"',
        decision=decision,
        message=message or None,
        answered_us=time.time_ns() // 1000,
    )


def _data_flow(context: dict[str, Any]) -> str:
    """The provenance of the resource and the labels seen, for the demo's table."""
    lines = []
    data = context.get("data", {})
    if data.get("labels"):
        lines.append("seen: " + ", ".join(data["labels"]))
    resource = context.get("resource_provenance", {})
    if resource.get("sources"):
        where = ", ".join(resource["sources"])
        labels = resource.get("labels") or []
        lines.append(f"target from: {where}" + (f" ({', '.join(labels)})" if labels else ""))
    if data.get("carried"):
        lines.append("carries: " + ", ".join(data["carried"]))
    return "\n".join(lines) or "-"


def _short(value: Any) -> str:
    if isinstance(value, dict) and "__extn" in value:
        number = str(value["__extn"]["arg"])
        return number.rstrip("0").rstrip(".") if "." in number else number
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# The auditor's commands (log, keys, evidence, replay) live in their own module.
from agentfence._cli_log import register  # noqa: E402  # registered once app is complete

register(app)

# The approver's commands (approvals list, show, approve, reject, edit).
from agentfence._cli_approvals import register as _register_approvals  # noqa: E402

_register_approvals(app)

# The web inbox's commands (inbox serve, add-approver, remove-approver); the web stack is
# imported only by `inbox serve`, so the rest of the CLI works without the inbox extra.
from agentfence.inbox._cli import register as _register_inbox  # noqa: E402

_register_inbox(app)

if __name__ == "__main__":  # pragma: no cover
    main()
