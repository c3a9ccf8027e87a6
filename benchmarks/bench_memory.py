"""Memory over a long run of governed calls, and decision cost as session usage grows.

Two measurements, each with its own fence over the injection demo's policy set (the starter
pack of ``policies/`` plus the demo's permits), which names ``context.usage``, data labels
and argument provenance, so the usage ledger and the thread indexes are in play on every
call; and each with the durable signed SQLite log in a temporary directory (an in-memory log
keeps every record by design, so its growth would say nothing):

i.  memory: RSS (``/proc/self/statm``) over N governed calls by one principal, sampled every
    10% of the run; the growth after the first 10% (the warm-up) is the result. Target: at
    most 10 MB.
ii. usage scaling: the cost of ``Fence.decide`` for a payment (whose policies read
    ``context.usage``) after 1,000, 10,000 and 100,000 earlier governed calls by the same
    principal. Target: the p50 at 100,000 at most 1.2x the p50 at 1,000.

Every governed call goes through ``Fence.wrap_tool_call`` with a ``ToolCallRequest`` built
here (``ToolNode`` itself is left out, its per-call worker thread would only slow the run):
decided, recorded, run and its outcome recorded, as in a graph. Calls come in threads of
three, ``read_inbox``, ``export_customers`` and ``send_email`` to a colleague, each seeing
the thread's messages so far.

Run ``.venv/bin/python benchmarks/bench_memory.py --write docs/performance.md``
(``--calls N`` sets the length of the memory run). Timing is never a test.
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

from bench_decide import (
    command_line,
    load_average,
    machine,
    output_options,
    percentile,
    write_section,
)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.prebuilt.tool_node import ToolCallRequest, ToolRuntime

from agentfence import Fence
from agentfence._signing import Signer
from agentfence.demo.injection import PROMPT, SUPPLIER_ACCOUNT, TOOLS, policy_dir
from agentfence.log import SignedLog
from agentfence.policy import Effect
from agentfence.testing import tool_call

NAME = "bench_memory"
DEFAULT_CALLS = 100_000
USAGE_POINTS = (1_000, 10_000, 100_000)
USAGE_SAMPLES = 500
SAMPLES = 10  # RSS samples, one every 10% of the run
PRINCIPAL = 'User::"alice"'
AGENT = "assistant"
TOOLS_BY_NAME = {t.name: t for t in TOOLS}
# One thread of the run: the three calls, in order. The recipient is a colleague from the
# trusted directory, so the send is allowed after the inbox and the export were read.
THREAD_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("read_inbox", {}),
    ("export_customers", {}),
    (
        "send_email",
        {"to": "bob@acme.test", "subject": "Inbox summary", "body": "Two emails, both routine."},
    ),
]
PAYMENT = {"iban": SUPPLIER_ACCOUNT, "amount": 1250.0, "reference": "INV-7"}
MB = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Current resident set size (not the peak ``getrusage`` reports)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE


class Caller:
    """Governed calls by one principal through ``fence.wrap_tool_call``, thread after thread."""

    def __init__(self, fence: Fence) -> None:
        self._fence = fence
        self.calls = 0
        self.ran = 0
        self._thread = ""
        self._messages: list[Any] = []

    def _execute(self, request: ToolCallRequest) -> ToolMessage:
        call = request.tool_call
        self.ran += 1
        content = TOOLS_BY_NAME[call["name"]].invoke(call["args"])
        return ToolMessage(content=content, tool_call_id=call["id"], name=call["name"])

    def call(self) -> None:
        """One governed call; fail loudly unless it was allowed and its tool ran."""
        i = self.calls
        position = i % len(THREAD_CALLS)
        if position == 0:
            self._thread = f"t-{i // len(THREAD_CALLS)}"
            self._messages = [HumanMessage(content=PROMPT, id=f"{self._thread}-user")]
        name, args = THREAD_CALLS[position]
        call_id = f"call-{i}"
        self._messages.append(
            AIMessage(content="", tool_calls=[tool_call(name, args, call_id)], id=f"ai-{i}")
        )
        config = {
            "configurable": {"thread_id": self._thread, "agentfence_principal": PRINCIPAL},
            "metadata": {"langgraph_step": 2 * position + 1},
        }
        state = {"messages": list(self._messages)}
        request = ToolCallRequest(
            tool_call=tool_call(name, args, call_id),
            tool=TOOLS_BY_NAME[name],
            state=state,
            runtime=ToolRuntime(
                state=state,
                context=None,
                config=config,  # type: ignore[arg-type]
                stream_writer=lambda _: None,
                tool_call_id=call_id,
                store=None,
            ),
        )
        ran = self.ran
        result = self._fence.wrap_tool_call(request, self._execute)
        if not isinstance(result, ToolMessage) or result.status == "error" or self.ran != ran + 1:
            raise SystemExit(f"call {i} ({name}) was not allowed to run: {result!r}")
        self._messages.append(result)
        self.calls += 1


def open_fence(path: Path) -> Fence:
    log = SignedLog.open(path, signer=Signer.generate("bench"))
    return Fence.from_directory(policy_dir(), tools=TOOLS, log=log, agent=AGENT, seed=1)


def decide_cost(fence: Fence, point: int, prior: int) -> dict[str, Any]:
    """(ii) at one point: ``Fence.decide`` for a payment, timed, after ``prior`` calls.

    A decision alone records nothing, so timing it leaves the usage it reads unchanged.
    """
    clock = time.perf_counter_ns
    timed: list[int] = []
    usage_calls = -1
    for j in range(USAGE_SAMPLES):
        start = clock()
        decision = fence.decide(
            "pay",
            PAYMENT,
            principal=PRINCIPAL,
            thread=f"measure-{point}",
            step=1,
            tool_call_id=f"measure-{point}-{j}",
            messages=[HumanMessage(content=PROMPT, id=f"measure-{point}-user")],
        )
        timed.append(clock() - start)
        if decision.effect is not Effect.ALLOW:
            raise SystemExit(f"the measured payment should be allowed: {decision.explain()}")
        usage = decision.facts.usage
        usage_calls = usage.day.calls if usage is not None else -1
    # The ledger must have counted every earlier call, or the measurement is void.
    if usage_calls != prior:
        raise SystemExit(f"after {prior:,} calls the payment saw usage.day.calls = {usage_calls}")
    timed.sort()
    return {
        "prior_calls": prior,
        "usage_day_calls": usage_calls,
        "decide_p50_us": percentile(timed, 0.5),
        "decide_p99_us": percentile(timed, 0.99),
        "decide_mean_us": sum(timed) / len(timed) / 1000,
    }


def run(
    tmp: Path, calls: int, points: Sequence[int], progress: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One run of ``calls`` governed calls: RSS every 10% (i), decide cost at ``points`` (ii)."""
    fence = open_fence(tmp / "bench.db")
    caller = Caller(fence)
    policies = len(fence.engine.policies)
    marks = [calls * k // SAMPLES for k in range(1, SAMPLES + 1)]
    stops = sorted({*marks, *(p for p in points if p <= calls)})
    gc.collect()
    samples = [{"calls": 0, "rss_mb": rss_bytes() / MB, "seconds": 0.0}]
    rows: list[dict[str, Any]] = []
    stretch: list[int] = []
    clock = time.perf_counter_ns
    started = time.perf_counter()
    paused = 0.0  # time spent timing decisions, left out of the calls' rate
    for stop in stops:
        while caller.calls < stop:
            t = clock()
            caller.call()
            stretch.append(clock() - t)
        # Collected first, so a sample shows what is held, not garbage not yet reclaimed.
        gc.collect()
        if stop in marks:
            elapsed = time.perf_counter() - started - paused
            samples.append({"calls": stop, "rss_mb": rss_bytes() / MB, "seconds": elapsed})
            progress(f"memory: {stop:,} calls, RSS {samples[-1]['rss_mb']:.1f} MB, {elapsed:.0f} s")
        if stop in points:
            pause = time.perf_counter()
            row = decide_cost(fence, stop, caller.calls)
            last = sorted(stretch[-1000:])
            row["governed_p50_us"] = percentile(last, 0.5)
            row["governed_p99_us"] = percentile(last, 0.99)
            rows.append(row)
            paused += time.perf_counter() - pause
            progress(
                f"usage: after {stop:,} calls decide p50 {row['decide_p50_us']:.0f} us, "
                f"governed call p50 {row['governed_p50_us']:.0f} us"
            )
        stretch = stretch[-1000:]
    elapsed = time.perf_counter() - started - paused
    fence.close()
    log_mb = sum(p.stat().st_size for p in tmp.glob("bench.db*")) / MB
    after_warmup = samples[1]["rss_mb"]
    peak_growth = max(s["rss_mb"] for s in samples[1:]) - after_warmup
    memory = {
        "calls": calls,
        "ran": caller.ran,
        "policies": policies,
        "seconds": elapsed,
        "calls_per_s": calls / elapsed,
        "samples": samples,
        "rss_start_mb": samples[0]["rss_mb"],
        "rss_after_warmup_mb": after_warmup,
        "rss_end_mb": samples[-1]["rss_mb"],
        "growth_mb": samples[-1]["rss_mb"] - after_warmup,
        "peak_growth_mb": peak_growth,
        "log_mb": log_mb,
        "target_mb": 10.0,
        "met": peak_growth <= 10.0,
    }
    ratio = rows[-1]["decide_p50_us"] / rows[0]["decide_p50_us"]
    usage = {
        "rows": rows,
        "skipped_points": [p for p in points if p > calls],
        "samples_per_point": USAGE_SAMPLES,
        "ratio_p50": ratio,
        "target_ratio": 1.2,
        "met": ratio <= 1.2,
    }
    return memory, usage


def _verdict(met: bool, *, bold: str = "") -> str:
    return "met" if met else f"{bold}missed{bold}"


def markdown(result: dict[str, Any]) -> str:
    m, mem, use = result["machine"], result["memory"], result["usage"]
    load = result["load_average"]
    first, last = use["rows"][0], use["rows"][-1]
    lines = [
        f"Measured {result['date']} with `{result['command']}`.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; 1-minute load "
        f"average {load['start']} at the start and {load['end']} at the end",
        f"- Python {m['python']}, cedarpy {m['cedarpy']}, langgraph {m['langgraph']}, "
        f"SQLite {m['sqlite']}",
        f"- {result['policies']} policies (the injection demo's: the starter pack and its "
        "permits); one principal; signed SQLite log; calls in threads of three "
        "(`read_inbox`, `export_customers`, `send_email`), every one allowed and run",
        "",
        f"**(i) Memory**: {mem['calls']:,} governed calls in {mem['seconds']:.0f} s "
        f"({mem['calls_per_s']:,.0f} calls/s); the log grew to {mem['log_mb']:.0f} MB on disk.",
        "",
        "| calls | RSS MB |",
        "|---:|---:|",
        *(f"| {s['calls']:,} | {s['rss_mb']:.1f} |" for s in mem["samples"]),
        "",
        "| measure | value | target | |",
        "|---|---:|---:|---|",
        f"| RSS growth after warm-up (10% to 100% of the run) | {mem['growth_mb']:+.1f} MB | | |",
        f"| largest RSS above the warm-up sample | {mem['peak_growth_mb']:+.1f} MB | ≤ 10 MB | "
        f"{_verdict(mem['met'], bold='**')} |",
        "",
        f"**(ii) Usage scaling**: `Fence.decide` for `pay` (which the usage policies read), "
        f"{use['samples_per_point']} timed decisions after each number of earlier governed "
        "calls by the same principal; the governed call columns are the last 1,000 earlier "
        "calls.",
        "",
        "| earlier calls | usage.day.calls seen | decide p50 µs | decide p99 µs | "
        "governed call p50 µs | governed call p99 µs |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['prior_calls']:,} | {r['usage_day_calls']:,} | {r['decide_p50_us']:.0f} | "
            f"{r['decide_p99_us']:.0f} | {r['governed_p50_us']:.0f} | "
            f"{r['governed_p99_us']:.0f} |"
            for r in use["rows"]
        ),
        "",
        "| ratio (p50) | value | target | |",
        "|---|---:|---:|---|",
        f"| decide after {last['prior_calls']:,} / after {first['prior_calls']:,} | "
        f"{use['ratio_p50']:.2f}x | ≤ 1.2x | {_verdict(use['met'], bold='**')} |",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls",
        type=int,
        default=DEFAULT_CALLS,
        metavar="N",
        help=f"governed calls in the memory run (default {DEFAULT_CALLS:,})",
    )
    parser.add_argument(
        "--usage-points",
        default=",".join(str(p) for p in USAGE_POINTS),
        metavar="N,N,...",
        help="earlier calls at which decide is timed (default "
        + ",".join(f"{p}" for p in USAGE_POINTS)
        + ")",
    )
    output_options(parser, NAME)
    args = parser.parse_args(argv)
    points = sorted(int(p) for p in args.usage_points.split(","))
    if (
        args.calls < 10 * SAMPLES
        or points[0] < 1
        or len([p for p in points if p <= args.calls]) < 2
    ):
        parser.error(
            "--calls must be at least 100 and --usage-points needs two or more counts up to --calls"
        )

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="agentfence-bench-") as name:
        tmp = Path(name)
        memory, usage = run(tmp, args.calls, points, progress)
    result = {
        "format": "agentfence.bench_memory/v1",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "machine": {**asdict(machine()), "sqlite": sqlite3.sqlite_version},
        "load_average": {"start": load_before, "end": load_average()},
        "policies": memory["policies"],
        "memory": memory,
        "usage": usage,
    }
    if args.write is not None:
        write_section(args.write, markdown(result), NAME)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(markdown(result))
    print(
        f"\nmemory: {memory['peak_growth_mb']:+.1f} MB after warm-up (target <= 10 MB: "
        f"{_verdict(memory['met'])}); usage: {usage['ratio_p50']:.2f}x (target <= 1.2: "
        f"{_verdict(usage['met'])})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
