"""Per-call latency of deciding a tool call, from raw cedarpy up to a fenced ``ToolNode``.

One run, one set of 20 policies (the demo desk's own, topped up with more over the same
tools), one representative request, five cases:

a. ``cedarpy.is_authorized`` with policy, entity and schema *text* on every call: what an
   integration that does not keep pre-parsed handles pays.
b. ``cedarpy.is_authorized`` with the pre-parsed handles the fence keeps.
c. ``Fence.decide``: argument conversion, the Cedar call and the ``Decision`` value.
d. One tool call through ``ToolNode.invoke``, without and with ``wrap_tool_call=fence...``.

Run ``make bench`` (or ``.venv/bin/python benchmarks/bench_decide.py --write
docs/performance.md``) to refresh the numbers in ``docs/performance.md``. Timing is never a
test: these numbers inform, they do not gate.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cedarpy
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.table import Table

from agentfence import Fence
from agentfence.demo import policy_dir
from agentfence.demo.tools import TOOLS
from agentfence.log import MemoryLog
from agentfence.policy import Effect
from agentfence.testing import tool_call
from agentfence.tracing import Telemetry

DEFAULT_ITERATIONS = 10_000
# Every case runs its iterations in this many interleaved rounds, so that a slow spell on a
# shared machine lands on all cases alike instead of on whichever case ran during it.
ROUNDS = 5
WARMUP = 500

PRINCIPAL = 'User::"alice"'
AGENT = "support-bot"
TOOL = "refund"
ARGS: dict[str, Any] = {"customer_id": "c-102", "amount": 40.0, "reason": "duplicate charge"}
EXPECTED_POLICY = "refund-small"
POLICY_COUNT = 20

# Policies a support desk would plausibly add to the demo's own: input checks, secret
# filters, a runaway-loop brake and a second group's permissions, as (file, policy) pairs.
# The first ones are used, as many as it takes to bring the demo's policies to
# POLICY_COUNT. None of them decides the benchmark request, but Cedar evaluates every one
# whose scope matches. The two that speak of every tool name the tools' action groups,
# because other actions (such as an approver's "approve") have no agent or run in context.
_ANY_TOOL = (
    'action in [Action::"read", Action::"external_send", Action::"payments", Action::"destructive"]'
)
EXTRA_POLICIES: list[tuple[str, str]] = [
    (
        "bench_agents.cedar",
        f"""\
// Only the desk's own agents act here.
@id("known-agents-only")
@reason("only the desk's registered agents may call tools")
forbid (principal, {_ANY_TOOL}, resource)
unless {{ [Agent::"support-bot", Agent::"triage-bot"].contains(context.agent) }};
""",
    ),
    (
        "bench_agents.cedar",
        f"""\
// A run past 500 steps is looping; stop it rather than let it keep acting.
@id("runaway-step-brake")
@reason("a run past 500 steps is stopped")
forbid (principal, {_ANY_TOOL}, resource)
when {{ context.run.step > 500 }};
""",
    ),
    (
        "bench_payments.cedar",
        """\
// Finance staff make refunds up to the agent ceiling without a second approver.
@id("finance-refunds")
@reason("finance staff may refund up to EUR 10,000")
permit (principal in Group::"finance", action == Action::"refund", resource)
when { context.args.amount.lessThanOrEqual(decimal("10000.0")) };
""",
    ),
    (
        "bench_payments.cedar",
        """\
@id("refund-needs-reason")
@reason("every refund needs a reason for the ledger")
forbid (principal, action == Action::"refund", resource)
when { context.args.reason == "" };
""",
    ),
    (
        "bench_payments.cedar",
        """\
@id("refund-frozen-accounts")
@reason("accounts under a fraud review get no refunds")
forbid (principal, action in Action::"payments", resource)
when { [Customer::"c-666", Customer::"c-999"].contains(resource) };
""",
    ),
    (
        "bench_reads.cedar",
        """\
// Finance staff may read customer records too.
@id("finance-reads-customers")
@reason("finance staff may look up customer records")
permit (principal in Group::"finance", action in Action::"read", resource);
""",
    ),
    (
        "bench_reads.cedar",
        """\
// Customer ids have one shape; anything else is a model inventing ids.
@id("lookup-well-formed-ids")
@reason("customer ids start with c-")
forbid (principal, action == Action::"lookup_customer", resource)
unless { context.args.customer_id like "c-*" };
""",
    ),
    (
        "bench_email.cedar",
        """\
@id("email-needs-subject")
@reason("email must have a subject")
forbid (principal, action == Action::"send_email", resource)
when { context.args.subject == "" };
""",
    ),
    (
        "bench_email.cedar",
        """\
@id("email-no-disposable-domains")
@reason("email to disposable mailboxes is never sent")
forbid (principal, action in Action::"external_send", resource)
when { context.args.to like "*@mailinator.com" || context.args.to like "*@guerrillamail.com" };
""",
    ),
    (
        "bench_email.cedar",
        """\
@id("email-no-keys-in-body")
@reason("email must never carry API keys or private keys")
forbid (principal, action in Action::"external_send", resource)
when { context.args.body like "*api_key*" || context.args.body like "*PRIVATE KEY*" };
""",
    ),
    (
        "bench_email.cedar",
        """\
@id("email-no-credentials-in-subject")
@reason("a subject line must never carry passwords")
forbid (principal, action in Action::"external_send", resource)
when { context.args.subject like "*password*" };
""",
    ),
    (
        "bench_destructive.cedar",
        """\
@id("no-path-traversal")
@reason("paths with '..' are refused")
forbid (principal, action in Action::"destructive", resource)
when { context.args.path like "*..*" };
""",
    ),
]


@dataclass(frozen=True)
class Case:
    """One timed case: ``prepare`` makes the input outside the clock, ``call`` is timed."""

    case: str
    label: str
    prepare: Callable[[str], Any]
    call: Callable[[Any], object]


@dataclass(frozen=True)
class Stats:
    """Latency of one case, in microseconds per call."""

    case: str
    label: str
    iterations: int
    p50_us: float
    p99_us: float
    mean_us: float
    calls_per_s: float


@dataclass(frozen=True)
class Machine:
    """Where the numbers were taken."""

    cpu: str
    cores: int
    python: str
    cedarpy: str
    langgraph: str
    platform: str


def build_policy_dir(target: Path) -> tuple[int, int]:
    """Copy the demo desk's policy directory into ``target`` and top it up to POLICY_COUNT.

    Returns how many policies came from the demo and how many were added.
    """
    for path in sorted(policy_dir().iterdir()):
        if path.is_file():
            shutil.copyfile(path, target / path.name)
    demo = len(load_fence(target).engine.policies)
    added = POLICY_COUNT - demo
    if not 0 <= added <= len(EXTRA_POLICIES):
        raise SystemExit(
            f"the demo has {demo} policies, but this benchmark can only top up a demo of "
            f"{POLICY_COUNT - len(EXTRA_POLICIES)} to {POLICY_COUNT} policies; add entries to "
            "EXTRA_POLICIES in benchmarks/bench_decide.py or change POLICY_COUNT"
        )
    for name, text in EXTRA_POLICIES[:added]:
        with (target / name).open("a", encoding="utf-8") as out:
            out.write(text + "\n")
    return demo, added


def load_fence(directory: Path) -> Fence:
    # The log is named so that AGENTFENCE_LOG in the environment cannot swap in a signed
    # SQLite log: this benchmark measures the in-memory default.
    return Fence.from_directory(directory, tools=TOOLS, log=MemoryLog(), agent=AGENT, seed=1)


def percentile(sorted_ns: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile of sorted samples, so p99 is a latency that really occurred."""
    rank = max(1, math.ceil(fraction * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1000


def summarize(case: str, label: str, samples_ns: list[int]) -> Stats:
    ordered = sorted(samples_ns)
    mean_us = statistics.fmean(ordered) / 1000
    return Stats(
        case=case,
        label=label,
        iterations=len(ordered),
        p50_us=percentile(ordered, 0.50),
        p99_us=percentile(ordered, 0.99),
        mean_us=mean_us,
        calls_per_s=1e6 / mean_us,
    )


def machine() -> Machine:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # Not Linux: platform's answer is the best there is.
    return Machine(
        cpu=cpu,
        cores=os.cpu_count() or 1,
        python=platform.python_version(),
        cedarpy=importlib.metadata.version("cedarpy"),
        langgraph=importlib.metadata.version("langgraph"),
        platform=platform.platform(terse=True),
    )


def load_average() -> float | None:
    """The 1-minute load average, or ``None`` where the platform has none.

    Other work on the machine shows up in p99 first, most of all in the ToolNode cases,
    which hand every call to a new worker thread that must wait for a free core.
    """
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def command_line() -> str:
    """The command as typed from the repository root, for the docs to quote."""
    python = Path(sys.executable)
    try:
        shown = python.relative_to(Path.cwd()).as_posix()
    except ValueError:
        shown = "python"
    return shlex.join([shown, *sys.argv])


def tool_input(call_id: str) -> dict[str, Any]:
    return {"messages": [AIMessage(content="", tool_calls=[tool_call(TOOL, ARGS, call_id)])]}


def run(iterations: int, progress: Callable[[str], None]) -> dict[str, Any]:
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="agentfence-bench-") as tmp:
        directory = Path(tmp)
        demo_count, added_count = build_policy_dir(directory)
        fence = load_fence(directory)
        policies_text = "\n".join(
            p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.cedar"))
        )
        entities_text = (directory / "entities.json").read_text(encoding="utf-8")
    engine = fence.engine
    if len(engine.policies) != POLICY_COUNT:
        raise SystemExit(f"expected {POLICY_COUNT} policies, loaded {len(engine.policies)}")
    # Case (b) must use the very handles the fence evaluates with, and only the engine's
    # internals hold them; reading them here is why this is a benchmark and not an example.
    compiled = engine._compiled
    schema_text = engine.schema_text

    def decide(call_id: str = "c1") -> Any:
        return fence.decide(
            TOOL, ARGS, principal=PRINCIPAL, thread="bench", step=1, tool_call_id=call_id
        )

    # The request the fence builds is the one every case evaluates, so (a), (b) and (c) do
    # the same Cedar work and differ only in what is parsed per call and what wraps it.
    reference = decide()
    if reference.effect is not Effect.ALLOW or reference.policy_ids != (EXPECTED_POLICY,):
        raise SystemExit(f"the benchmark request should be allowed: {reference.explain()}")
    request = dict(reference.request or {})
    for policies, entities, schema in (
        (policies_text, entities_text, schema_text),
        (compiled.policy_set, compiled.entities, compiled.schema),
    ):
        answer = cedarpy.is_authorized(request, policies, entities, schema=schema)
        if answer.decision.value != "Allow" or answer.diagnostics.errors:
            raise SystemExit(f"cedarpy did not allow the benchmark request: {answer}")

    config = {"configurable": {"thread_id": "bench", "agentfence_principal": PRINCIPAL}}
    # ToolNode.invoke outside a graph needs the Runtime a graph would inject; an empty one
    # (no store, no context) is what a one-node graph would hand it here.
    runtime = Runtime()
    bare = ToolNode(TOOLS)
    fenced = ToolNode(TOOLS, wrap_tool_call=fence.wrap_tool_call)
    # (d2): the same fence with an SDK tracer that records every span (exported to memory
    # and dropped), to price the spans: d2 - d1 is the tracing overhead per tool call.
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with tempfile.TemporaryDirectory(prefix="agentfence-bench-") as tmp:
        build_policy_dir(Path(tmp))
        traced_fence = Fence.from_directory(
            tmp,
            tools=TOOLS,
            log=MemoryLog(),
            agent=AGENT,
            seed=1,
            telemetry=Telemetry(tracer_provider=provider),
        )
    traced = ToolNode(TOOLS, wrap_tool_call=traced_fence.wrap_tool_call)
    for node in (bare, fenced, traced):
        out = node.invoke(tool_input("check"), config, runtime=runtime)
        message = out["messages"][0]
        if not isinstance(message, ToolMessage) or message.status == "error":
            raise SystemExit(f"ToolNode did not run the tool: {message}")

    # Each call gets a fresh tool_call_id, as calls do in a real run, so every fenced call
    # records a new decision and outcome rather than hitting the log's idempotent path. The
    # inputs are made just before each timed call, not all at once, so that thousands of
    # waiting messages do not swell the heap every garbage collection has to walk.
    def node_call(node: ToolNode) -> Callable[[Any], object]:
        return lambda message: node.invoke(message, config, runtime=runtime)

    def traced_call(message: Any) -> object:
        out = traced.invoke(message, config, runtime=runtime)
        exporter.clear()
        return out

    cases = [
        Case(
            "a",
            "cedarpy, text inputs",
            lambda call_id: None,
            lambda _: cedarpy.is_authorized(
                request, policies_text, entities_text, schema=schema_text
            ),
        ),
        Case(
            "b",
            "cedarpy, pre-parsed handles",
            lambda call_id: None,
            lambda _: cedarpy.is_authorized(
                request, compiled.policy_set, compiled.entities, schema=compiled.schema
            ),
        ),
        Case("c", "Fence.decide", lambda call_id: call_id, decide),
        Case("d0", "ToolNode, no fence", tool_input, node_call(bare)),
        Case("d1", "ToolNode, fenced", tool_input, node_call(fenced)),
        Case("d2", "ToolNode, fenced, recording tracer", tool_input, traced_call),
    ]
    samples: dict[str, list[int]] = {case.case: [] for case in cases}
    clock = time.perf_counter_ns
    for case in cases:
        progress(f"warming up ({case.case}) {case.label}")
        for i in range(WARMUP):
            case.call(case.prepare(f"warmup-{i}"))
    bounds = [iterations * r // ROUNDS for r in range(ROUNDS + 1)]
    for r in range(ROUNDS):
        for case in cases:
            progress(f"round {r + 1}/{ROUNDS}: ({case.case}) {case.label}")
            out = samples[case.case]
            # Each stretch starts from a clean heap, so no case inherits the garbage of the
            # one before it; the collector stays on while timing, as it is in production.
            gc.collect()
            for i in range(bounds[r], bounds[r + 1]):
                arg = case.prepare(f"call-{i}")
                start = clock()
                case.call(arg)
                out.append(clock() - start)

    stats = {c.case: summarize(c.case, c.label, samples[c.case]) for c in cases}
    a, b, c, d0, d1, d2 = (stats[k] for k in ("a", "b", "c", "d0", "d1", "d2"))
    ratios = {
        "c_over_b_p50": c.p50_us / b.p50_us,
        "c_over_b_p99": c.p99_us / b.p99_us,
        "a_over_c_p50": a.p50_us / c.p50_us,
        "a_over_c_p99": a.p99_us / c.p99_us,
        "fence_overhead_p50_us": d1.p50_us - d0.p50_us,
        "fence_overhead_p99_us": d1.p99_us - d0.p99_us,
        "fence_overhead_p50_pct": 100 * (d1.p50_us / d0.p50_us - 1),
        "tracing_overhead_p50_us": d2.p50_us - d1.p50_us,
        "tracing_overhead_p99_us": d2.p99_us - d1.p99_us,
    }
    targets = {
        "c_over_b_p50_max": 1.5,
        "a_over_c_p50_min": 5.0,
        "c_over_b_met": ratios["c_over_b_p50"] <= 1.5,
        "a_over_c_met": ratios["a_over_c_p50"] >= 5.0,
    }
    return {
        "format": "agentfence.bench_decide/v1",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "machine": asdict(machine()),
        "load_average": {"start": load_before, "end": load_average()},
        "iterations": iterations,
        "warmup": WARMUP,
        "rounds": ROUNDS,
        "policies": len(engine.policies),
        "policies_from_demo": demo_count,
        "policies_added": added_count,
        "request": {
            "tool": TOOL,
            "args": ARGS,
            "principal": PRINCIPAL,
            "agent": AGENT,
            "effect": reference.effect.value,
            "policy_ids": list(reference.policy_ids),
            "cedar": request,
        },
        "cases": [asdict(s) for s in stats.values()],
        "ratios": ratios,
        "targets": targets,
    }


def _verdict(met: bool, *, bold: str = "") -> str:
    return "met" if met else f"{bold}missed{bold}"


def markdown(result: dict[str, Any]) -> str:
    """The section of docs/performance.md between the markers."""
    m = result["machine"]
    r = result["ratios"]
    t = result["targets"]
    req = result["request"]
    load = result["load_average"]
    lines = [
        f"Measured {result['date']} with `{result['command']}`.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; 1-minute load "
        f"average {load['start']} at the start and {load['end']} at the end",
        f"- Python {m['python']}, cedarpy {m['cedarpy']}, langgraph {m['langgraph']}",
        f"- {result['policies']} policies ({result['policies_from_demo']} from the demo, "
        f"{result['policies_added']} added); {result['iterations']:,} timed calls per case in "
        f"{result['rounds']} interleaved rounds after {result['warmup']} warm-up calls",
        f"- Request: `{req['tool']}({json.dumps(req['args'])})` by `{req['principal']}` "
        f"through agent `{req['agent']}`: {req['effect']} by `{', '.join(req['policy_ids'])}`",
        "",
        "| case | what | p50 µs | p99 µs | mean µs | calls/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in result["cases"]:
        lines.append(
            f"| {s['case']} | {s['label']} | {s['p50_us']:.1f} | {s['p99_us']:.1f} | "
            f"{s['mean_us']:.1f} | {s['calls_per_s']:,.0f} |"
        )
    lines += [
        "",
        "| ratio (p50) | value | target | |",
        "|---|---:|---:|---|",
        f"| c / b (fence over pre-parsed cedarpy) | {r['c_over_b_p50']:.2f}x | ≤ 1.5x | "
        f"{_verdict(t['c_over_b_met'], bold='**')} |",
        f"| a / c (text-input cedarpy over fence) | {r['a_over_c_p50']:.1f}x | ≥ 5x | "
        f"{_verdict(t['a_over_c_met'], bold='**')} |",
        f"| d1 - d0 (fence inside ToolNode) | {r['fence_overhead_p50_us']:+.0f} µs "
        f"({r['fence_overhead_p50_pct']:+.0f}%) | | |",
        f"| d2 - d1 (spans and metrics, recording tracer) | "
        f"{r['tracing_overhead_p50_us']:+.0f} µs | | |",
    ]
    return "\n".join(lines)


def output_options(parser: argparse.ArgumentParser, name: str) -> None:
    """The ``--write FILE`` and ``--json`` options every benchmark takes."""
    parser.add_argument(
        "--write",
        type=Path,
        metavar="FILE",
        help=f"rewrite the {name} section of FILE (docs/performance.md) with the results",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def write_section(path: Path, section: str, name: str = "bench_decide") -> None:
    """Replace what lies between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8")
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise SystemExit(
            f"{path} has no {start} ... {end} section; add the two markers where the "
            "results belong and run again"
        )
    path.write_text(f"{text[: i + len(start)]}\n{section}\n{text[j:]}", encoding="utf-8")


def table(result: dict[str, Any]) -> Table:
    out = Table(title=f"agentfence decide latency ({result['policies']} policies)")
    out.add_column("case")
    out.add_column("what", no_wrap=True)
    for name in ("p50 µs", "p99 µs", "mean µs", "calls/s"):
        out.add_column(name, justify="right")
    for s in result["cases"]:
        out.add_row(
            s["case"],
            s["label"],
            f"{s['p50_us']:.1f}",
            f"{s['p99_us']:.1f}",
            f"{s['mean_us']:.1f}",
            f"{s['calls_per_s']:,.0f}",
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_ITERATIONS,
        metavar="N",
        help=f"timed calls per case (default {DEFAULT_ITERATIONS:,})",
    )
    output_options(parser, "bench_decide")
    args = parser.parse_args(argv)
    if args.iterations < 100:
        parser.error("--iterations must be at least 100 for a meaningful p99")

    # Progress goes to stderr as plain lines: a spinner would redraw from a thread of its
    # own, and that thread contending for the GIL shows up as milliseconds in the ToolNode
    # cases' p99, which hand each call to a worker thread.
    console = Console(stderr=True)
    result = run(args.iterations, lambda text: console.print(text, style="dim", markup=False))
    if args.write is not None:
        write_section(args.write, markdown(result))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    out = Console(soft_wrap=True)
    out.print(table(result))
    r, t = result["ratios"], result["targets"]
    out.print(
        f"request: {TOOL}({json.dumps(ARGS)}) by {PRINCIPAL} -> {result['request']['effect']}"
    )
    out.print(
        f"c/b = {r['c_over_b_p50']:.2f}x (target <= 1.5: {_verdict(t['c_over_b_met'])}); "
        f"a/c = {r['a_over_c_p50']:.1f}x (target >= 5: {_verdict(t['a_over_c_met'])}); "
        f"fence in ToolNode: {r['fence_overhead_p50_us']:+.0f} us p50 "
        f"({r['fence_overhead_p50_pct']:+.0f}%)",
        markup=False,
    )
    if args.write is not None:
        out.print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
