"""``agentfence demo``: the offline demo agents, their decisions table and verified log."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentfence.cli._common import out
from agentfence.errors import ConfigurationError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to the main app."""
    app.command("demo")(demo)


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
        from agentfence._step_spans import render_tree

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
        f"Check it yourself:\n  {_command()} log verify {run.log_path} --key "
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


def _command() -> str:
    """How to run agentfence again from here: ``agentfence`` when that is on PATH and is this
    one, else the path this one was started by (``.venv/bin/agentfence`` after ``make demo``)."""
    started = Path(sys.argv[0])
    found = shutil.which("agentfence")
    if started.name != "agentfence":  # python -m agentfence.cli, or a test runner
        return "agentfence"
    if found is not None and Path(found).resolve() == started.resolve():
        return "agentfence"
    return str(started)
