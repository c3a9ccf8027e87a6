"""End-to-end cost of one governed tool call through ``ToolNode``, next to the alternatives.

One run, the demo desk's policies, one allowed request (a EUR 40 refund), six cases, each a
real ``langgraph.prebuilt.ToolNode`` invoked outside a graph:

a. no governance: ``ToolNode(tools)``;
b. a naive wrapper written here: ``cedarpy.is_authorized`` with policy, entity and schema
   *text* on every call, then one JSON line appended to a file and ``os.fsync``-ed, then the
   tool (no outcome is written);
c. agentfence with the in-memory log;
d. agentfence with the durable signed SQLite log (``SignedLog``);
e. (d) with a recording OpenTelemetry tracer (SDK ``TracerProvider``, in-memory exporter);
f. the floor for a governed call: one pre-parsed cedarpy evaluation and one SQLite
   insert+commit (WAL, ``synchronous=FULL``) in a ``wrap_tool_call`` written here.

Targets: the cost agentfence adds with its durable log is at most 0.6 of what the naive
wrapper adds, ``(d - a) <= 0.6 * (b - a)``, and ``p50(d) <= 1.5 * p50(f)``.

Run ``.venv/bin/python benchmarks/bench_agent.py --write docs/performance.md`` to refresh
the ``bench_agent`` section of ``docs/performance.md``. Timing is never a test: these numbers
inform, they do not gate.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cedarpy
from bench_decide import (
    AGENT,
    ARGS,
    EXPECTED_POLICY,
    PRINCIPAL,
    TOOL,
    Case,
    command_line,
    load_average,
    machine,
    output_options,
    summarize,
    tool_input,
    write_section,
)
from langchain_core.messages import ToolMessage
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from rich.table import Table

from agentfence import Fence
from agentfence._signing import Signer
from agentfence.demo import policy_dir
from agentfence.demo.tools import TOOLS
from agentfence.log import MemoryLog, SignedLog
from agentfence.policy import Effect
from agentfence.tracing import Telemetry
from agentfence.verify import verify_log

NAME = "bench_agent"
DEFAULT_ITERATIONS = 2_000
# As in bench_decide: every case runs its iterations in interleaved rounds, so that a slow
# spell on a shared machine lands on all cases alike.
ROUNDS = 5
WARMUP = 200
THREAD = "bench"
# What the demo's refund tool returns for ARGS: the proof, call by call, that the tool ran.
EXPECTED_RESULT = "refunded EUR 40.00 to c-102"
# The naive wrapper's one piece of per-tool knowledge: which argument names the resource.
NAIVE_RESOURCES = {"refund": ("Customer", "customer_id")}
# A decision record of the size the fence writes (about 700 bytes), for the floor's insert.
FLOOR_BODY = json.dumps({"pad": "x" * 680}).encode()


def _cedar_value(value: Any) -> Any:
    """What a hand-written integration does to arguments: floats become Cedar decimals."""
    if isinstance(value, float):
        return {"__extn": {"fn": "decimal", "arg": f"{value:.4f}"}}
    return value


def _entity(text: str) -> dict[str, str]:
    kind, _, rest = text.partition("::")
    return {"type": kind, "id": json.loads(rest)}


def naive_wrapper(
    policies_text: str, entities_text: str, schema_text: str, journal: Path
) -> tuple[Callable[..., Any], Callable[[], None]]:
    """Case (b): what an integration written in an afternoon does on every call.

    It builds the Cedar request from the tool call, asks cedarpy with the policy, entity and
    schema *text* (parsed again on every call), appends one JSON line per decision to a
    journal and fsyncs it, then runs the tool. No outcome is written, nothing is signed.
    """
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def naive(request: Any, execute: Callable[[Any], Any]) -> Any:
        call = request.tool_call
        configurable = request.runtime.config.get("configurable", {})
        principal = configurable["agentfence_principal"]
        kind, arg = NAIVE_RESOURCES[call["name"]]
        args = call["args"]
        cedar_request = {
            "principal": _entity(principal),
            "action": {"type": "Action", "id": call["name"]},
            "resource": {"type": kind, "id": args[arg]},
            "context": {
                "agent": {"__entity": {"type": "Agent", "id": AGENT}},
                "run": {
                    "thread": configurable["thread_id"],
                    "step": 1,
                    "tool_call_id": call["id"],
                    "seed": 1,
                },
                "args": {k: _cedar_value(v) for k, v in args.items()},
            },
        }
        answer = cedarpy.is_authorized(
            cedar_request, policies_text, entities_text, schema=schema_text
        )
        allowed = answer.decision == cedarpy.Decision.Allow
        line = {
            "time": time.time(),
            "tool": call["name"],
            "args": args,
            "tool_call_id": call["id"],
            "principal": principal,
            "decision": "allow" if allowed else "deny",
            "policies": list(answer.diagnostics.reasons),
        }
        os.write(fd, json.dumps(line).encode() + b"\n")
        os.fsync(fd)
        if not allowed:
            return ToolMessage(content="denied", tool_call_id=call["id"], status="error")
        return execute(request)

    return naive, lambda: os.close(fd)


def floor_wrapper(
    request_json: dict[str, Any], compiled: Any, database: Path
) -> tuple[Callable[..., Any], Callable[[], int]]:
    """Case (f): the least a governed call can do here, one pre-parsed Cedar evaluation and
    one durable SQLite commit (the settings of the signed log), then the tool."""
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body BLOB)")

    def floor(request: Any, execute: Callable[[Any], Any]) -> Any:
        answer = cedarpy.is_authorized(
            request_json, compiled.policy_set, compiled.entities, schema=compiled.schema
        )
        if answer.decision != cedarpy.Decision.Allow:
            raise SystemExit(f"the floor's request was not allowed: {answer}")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (body) VALUES (?)", (FLOOR_BODY,))
        conn.execute("COMMIT")
        return execute(request)

    def close() -> int:
        rows = int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
        conn.close()
        return rows

    return floor, close


def check_result(case: str, out: Any) -> None:
    """Fail loudly unless the call's one result is the tool's own success message."""
    message = out["messages"][0]
    if (
        not isinstance(message, ToolMessage)
        or message.status == "error"
        or message.content != EXPECTED_RESULT
    ):
        raise SystemExit(f"case ({case}): the tool did not run: {message!r}")


def run(iterations: int, progress: Callable[[str], None]) -> dict[str, Any]:
    load_before = load_average()
    directory = policy_dir()
    policies_text = "\n".join(
        p.read_text(encoding="utf-8") for p in sorted(directory.glob("*.cedar"))
    )
    entities_text = (directory / "entities.json").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="agentfence-bench-") as tmp_name:
        tmp = Path(tmp_name)
        signer = Signer.generate("bench")
        memory_fence = Fence.from_directory(
            directory, tools=TOOLS, log=MemoryLog(), agent=AGENT, seed=1
        )
        durable_log = SignedLog.open(tmp / "durable.db", signer=signer)
        durable_fence = Fence.from_directory(
            directory, tools=TOOLS, log=durable_log, agent=AGENT, seed=1
        )
        provider = TracerProvider()
        exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        traced_log = SignedLog.open(tmp / "traced.db", signer=signer)
        traced_fence = Fence.from_directory(
            directory,
            tools=TOOLS,
            log=traced_log,
            agent=AGENT,
            seed=1,
            telemetry=Telemetry(tracer_provider=provider),
        )
        engine = memory_fence.engine
        reference = memory_fence.decide(
            TOOL, ARGS, principal=PRINCIPAL, thread=THREAD, step=1, tool_call_id="check"
        )
        if reference.effect is not Effect.ALLOW or reference.policy_ids != (EXPECTED_POLICY,):
            raise SystemExit(f"the benchmark request should be allowed: {reference.explain()}")
        request_json = dict(reference.request or {})
        naive, close_naive = naive_wrapper(
            policies_text, entities_text, engine.schema_text, tmp / "journal.jsonl"
        )
        floor, close_floor = floor_wrapper(request_json, engine._compiled, tmp / "floor.db")

        config = {"configurable": {"thread_id": THREAD, "agentfence_principal": PRINCIPAL}}
        # ToolNode.invoke outside a graph needs the Runtime a graph would inject.
        runtime = Runtime()
        nodes = {
            "a": ToolNode(TOOLS),
            "b": ToolNode(TOOLS, wrap_tool_call=naive),
            "c": ToolNode(TOOLS, wrap_tool_call=memory_fence.wrap_tool_call),
            "d": ToolNode(TOOLS, wrap_tool_call=durable_fence.wrap_tool_call),
            "e": ToolNode(TOOLS, wrap_tool_call=traced_fence.wrap_tool_call),
            "f": ToolNode(TOOLS, wrap_tool_call=floor),
        }
        labels = {
            "a": "ToolNode, no governance",
            "b": "naive wrapper: cedarpy text inputs + fsynced JSON line",
            "c": "agentfence, in-memory log",
            "d": "agentfence, signed SQLite log",
            "e": "agentfence, signed SQLite log, recording tracer",
            "f": "floor: pre-parsed cedarpy + one SQLite commit",
        }

        def node_call(key: str) -> Callable[[Any], object]:
            node = nodes[key]
            if key == "e":

                def traced(message: Any) -> object:
                    out = node.invoke(message, config, runtime=runtime)
                    exporter.clear()
                    return out

                return traced
            return lambda message: node.invoke(message, config, runtime=runtime)

        # Each call gets a fresh tool call id, so every fenced call records a new decision and
        # outcome instead of taking the log's idempotent path.
        cases = [Case(key, labels[key], tool_input, node_call(key)) for key in nodes]
        for case in cases:
            check_result(case.case, case.call(tool_input(f"check-{case.case}")))
        samples: dict[str, list[int]] = {case.case: [] for case in cases}
        clock = time.perf_counter_ns
        for case in cases:
            progress(f"warming up ({case.case}) {case.label}")
            for i in range(WARMUP):
                check_result(case.case, case.call(case.prepare(f"warmup-{case.case}-{i}")))
        bounds = [iterations * r // ROUNDS for r in range(ROUNDS + 1)]
        for r in range(ROUNDS):
            for case in cases:
                progress(f"round {r + 1}/{ROUNDS}: ({case.case}) {case.label}")
                out = samples[case.case]
                gc.collect()
                for i in range(bounds[r], bounds[r + 1]):
                    arg = case.prepare(f"call-{case.case}-{i}")
                    start = clock()
                    result = case.call(arg)
                    out.append(clock() - start)
                    check_result(case.case, result)

        # Every call was recorded where its case writes: the journal has a line per call, the
        # floor a row, and each signed log verifies with an activation, a decision and an
        # outcome per call (a deferred outcome is committed by close()).
        calls = 1 + WARMUP + iterations
        close_naive()
        journal_lines = (tmp / "journal.jsonl").read_bytes().count(b"\n")
        floor_rows = close_floor()
        memory_fence.close()
        durable_fence.close()
        traced_fence.close()
        provider.shutdown()
        verified = {
            key: verify_log(tmp / f"{key}.db", [signer.verifier_key]).size
            for key in ("durable", "traced")
        }
    expected_entries = 1 + 2 * calls
    if journal_lines != calls or floor_rows != calls:
        raise SystemExit(
            f"expected {calls} journal lines and floor rows, found {journal_lines} and {floor_rows}"
        )
    if any(size != expected_entries for size in verified.values()):
        raise SystemExit(f"expected {expected_entries} entries in each signed log: {verified}")

    stats = {c.case: summarize(c.case, c.label, samples[c.case]) for c in cases}
    a, d, f = stats["a"], stats["d"], stats["f"]
    added = {key: s.p50_us - a.p50_us for key, s in stats.items() if key != "a"}
    added_mean = {key: s.mean_us - a.mean_us for key, s in stats.items() if key != "a"}
    ratios = {
        "added_d_over_added_b_p50": added["d"] / added["b"],
        "d_over_f_p50": d.p50_us / f.p50_us,
        "tracing_p50_us": stats["e"].p50_us - d.p50_us,
        "durable_log_p50_us": d.p50_us - stats["c"].p50_us,
    }
    targets = {
        "added_d_over_added_b_max": 0.6,
        "d_over_f_max": 1.5,
        "added_met": ratios["added_d_over_added_b_p50"] <= 0.6,
        "floor_met": ratios["d_over_f_p50"] <= 1.5,
    }
    return {
        "format": "agentfence.bench_agent/v1",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "machine": {**asdict(machine()), "sqlite": sqlite3.sqlite_version},
        "load_average": {"start": load_before, "end": load_average()},
        "iterations": iterations,
        "warmup": WARMUP,
        "rounds": ROUNDS,
        "policies": len(engine.policies),
        "request": {
            "tool": TOOL,
            "args": ARGS,
            "principal": PRINCIPAL,
            "agent": AGENT,
            "effect": reference.effect.value,
            "policy_ids": list(reference.policy_ids),
        },
        "recorded": {
            "calls_per_case": calls,
            "journal_lines": journal_lines,
            "floor_rows": floor_rows,
            "signed_log_entries": verified,
        },
        "cases": [asdict(s) for s in stats.values()],
        "added_p50_us": added,
        "added_mean_us": added_mean,
        "ratios": ratios,
        "targets": targets,
    }


def _verdict(met: bool, *, bold: str = "") -> str:
    return "met" if met else f"{bold}missed{bold}"


def markdown(result: dict[str, Any]) -> str:
    """The section of docs/performance.md between the markers."""
    m = result["machine"]
    r, t = result["ratios"], result["targets"]
    added, added_mean = result["added_p50_us"], result["added_mean_us"]
    req, load, rec = result["request"], result["load_average"], result["recorded"]
    lines = [
        f"Measured {result['date']} with `{result['command']}`.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; 1-minute load "
        f"average {load['start']} at the start and {load['end']} at the end",
        f"- Python {m['python']}, cedarpy {m['cedarpy']}, langgraph {m['langgraph']}, "
        f"SQLite {m['sqlite']}",
        f"- {result['policies']} policies (the demo desk's); {result['iterations']:,} timed "
        f"calls per case in {result['rounds']} interleaved rounds after {result['warmup']} "
        "warm-up calls",
        f"- Request: `{req['tool']}({json.dumps(req['args'])})` by `{req['principal']}` "
        f"through agent `{req['agent']}`: {req['effect']} by `{', '.join(req['policy_ids'])}`; "
        f"every call's result checked. Afterwards each signed log verified with "
        f"{rec['signed_log_entries']['durable']:,} entries (the activation, and a decision "
        "and an outcome per call); the journal and the floor's table held a line or row per "
        "call",
        "",
        "| case | what | p50 µs | p99 µs | mean µs | added p50 µs (- a) | added mean µs |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in result["cases"]:
        key = s["case"]
        extra = ("", "") if key == "a" else (f"{added[key]:+.0f}", f"{added_mean[key]:+.0f}")
        lines.append(
            f"| {key} | {s['label']} | {s['p50_us']:.1f} | {s['p99_us']:.1f} | "
            f"{s['mean_us']:.1f} | {extra[0]} | {extra[1]} |"
        )
    lines += [
        "",
        "| ratio (p50) | value | target | |",
        "|---|---:|---:|---|",
        f"| (d - a) / (b - a): agentfence's added cost over the naive wrapper's | "
        f"{r['added_d_over_added_b_p50']:.2f} | ≤ 0.6 | "
        f"{_verdict(t['added_met'], bold='**')} |",
        f"| d / f: agentfence with its durable log over the floor | {r['d_over_f_p50']:.2f}x | "
        f"≤ 1.5x | {_verdict(t['floor_met'], bold='**')} |",
        f"| d - c: the durable signed log over the in-memory one | "
        f"{r['durable_log_p50_us']:+.0f} µs | | |",
        f"| e - d: spans and metrics, recording tracer | {r['tracing_p50_us']:+.0f} µs | | |",
    ]
    return "\n".join(lines)


def table(result: dict[str, Any]) -> Table:
    out = Table(title=f"agentfence per tool call through ToolNode ({result['policies']} policies)")
    out.add_column("case")
    out.add_column("what", no_wrap=True)
    for name in ("p50 µs", "p99 µs", "mean µs", "added p50 µs"):
        out.add_column(name, justify="right")
    for s in result["cases"]:
        key = s["case"]
        out.add_row(
            key,
            s["label"],
            f"{s['p50_us']:.1f}",
            f"{s['p99_us']:.1f}",
            f"{s['mean_us']:.1f}",
            "" if key == "a" else f"{result['added_p50_us'][key]:+.0f}",
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
    output_options(parser, NAME)
    args = parser.parse_args(argv)
    if args.iterations < 100:
        parser.error("--iterations must be at least 100 for a meaningful p99")

    # Plain progress lines on stderr: a spinner's thread would contend for the GIL with the
    # ToolNode worker threads and show up in p99 (see bench_decide.py).
    console = Console(stderr=True)
    result = run(args.iterations, lambda text: console.print(text, style="dim", markup=False))
    if args.write is not None:
        write_section(args.write, markdown(result), NAME)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    out.print(table(result))
    r, t = result["ratios"], result["targets"]
    out.print(
        f"(d-a)/(b-a) = {r['added_d_over_added_b_p50']:.2f} (target <= 0.6: "
        f"{_verdict(t['added_met'])}); d/f = {r['d_over_f_p50']:.2f}x (target <= 1.5: "
        f"{_verdict(t['floor_met'])}); durable log {r['durable_log_p50_us']:+.0f} us, "
        f"tracing {r['tracing_p50_us']:+.0f} us (p50)",
        markup=False,
    )
    if args.write is not None:
        out.print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
