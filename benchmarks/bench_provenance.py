"""Per-call cost of data labels and argument provenance as a run grows.

A thread holds N earlier tool results of about 2 KB each (N = 10, 100, 1,000): prose with
email addresses, IBANs, amounts, URLs and ids, as inbox and CRM tools return. For each N:

- **index**: indexing the whole thread from cold (what a fence does once per thread after a
  restart), in total and per message;
- **call**: one new call as a running agent makes it: one more 2 KB result has arrived since
  the last call, so the thread's index is brought up to date (one message indexed) and the
  provenance of a ``send_email(to, subject, body)`` call and of its recipient resource are
  computed, with the labels seen and the labels its body carries. This is the work the fence
  adds per call for data flow; the Cedar evaluation is measured by ``bench_decide.py``;
- **decide**: ``PolicyEngine.decide`` for the same call with that history, Cedar included.

Run ``.venv/bin/python benchmarks/bench_provenance.py --write docs/performance.md`` to
refresh the marked section of ``docs/performance.md``. Timing is never a test.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage, ToolMessage

from agentfence._provenance import HistoryCache
from agentfence.demo import injection
from agentfence.policy import CallFacts, EntityRef, PolicyEngine
from agentfence.tools import ToolCatalog

START_MARKER = "<!-- bench_provenance:start -->"
END_MARKER = "<!-- bench_provenance:end -->"
SIZES = (10, 100, 1_000)
MESSAGE_BYTES = 2_048
DEFAULT_CALLS = 300
TARGET_MS = 1.0

_WORDS = [
    "invoice",
    "payment",
    "customer",
    "order",
    "refund",
    "account",
    "shipping",
    "delivery",
    "report",
    "summary",
    "meeting",
    "contract",
    "renewal",
    "balance",
    "statement",
    "ticket",
    "request",
    "approval",
    "quarter",
    "budget",
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "for",
    "on",
    "with",
    "from",
    "by",
    "at",
    "as",
    "is",
    "was",
    "be",
    "this",
    "that",
    "please",
    "regards",
]


def _iban(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(18))
    return (
        "DE"
        + f"{rng.randint(10, 99)}"
        + " "
        + " ".join(digits[i : i + 4] for i in (0, 4, 8, 12, 16))
    )


def tool_output(rng: random.Random, index: int) -> str:
    """About 2 KB of realistic tool output text with identifiers sprinkled in."""
    parts: list[str] = []
    size = 0
    while size < MESSAGE_BYTES:
        pick = rng.random()
        if pick < 0.04:
            item = f"user{rng.randint(1, 5000)}@customer{rng.randint(1, 50)}.example"
        elif pick < 0.06:
            item = _iban(rng)
        elif pick < 0.10:
            item = f"EUR {rng.randint(1, 9999):,}.{rng.randint(0, 99):02d}"
        elif pick < 0.12:
            item = f"https://portal{rng.randint(1, 30)}.example/doc/{rng.randint(1, 10**6)}"
        elif pick < 0.15:
            item = f"T-{rng.randint(1000, 9999)}"
        else:
            item = rng.choice(_WORDS)
        parts.append(item)
        size += len(item) + 1
    return f"result {index}: " + " ".join(parts)


def thread(n: int, rng: random.Random) -> list[Any]:
    """A user message and ``n`` labelled tool results, as the fence leaves them in the state."""
    messages: list[Any] = [
        HumanMessage("Summarise my inbox and email the summary to bob@acme.test.", id="user")
    ]
    for i in range(n):
        messages.append(new_result(rng, i))
    return messages


def new_result(rng: random.Random, i: int) -> ToolMessage:
    labels = ["untrusted"] if i % 2 else ["pii"]
    return ToolMessage(
        tool_output(rng, i),
        name="read_inbox" if i % 2 else "export_customers",
        tool_call_id=f"call-{i}",
        id=f"result-{i}",
        response_metadata={"agentfence": {"labels": labels, "decision_id": f"d{i}"}},
    )


@dataclass
class Row:
    outputs: int
    index_ms: float
    index_us_per_message: float
    call_p50_us: float
    call_p99_us: float
    decide_p50_us: float
    decide_p99_us: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(n: int, calls: int, engine: PolicyEngine) -> Row:
    rng = random.Random(n)
    messages = thread(n, rng)
    entry = engine.catalog.get("send_email")
    if entry is None:
        raise SystemExit("the demo tools have no send_email")
    args = {
        "to": "bob@acme.test",
        "subject": "Inbox summary",
        "body": "Two invoices are due (EUR 1,250.00 and EUR 310.00); ticket T-4711 is closed. "
        "Contact user42@customer7.example about the renewal.",
    }
    resource = EntityRef("Recipient", args["to"])

    gc.collect()
    started = time.perf_counter()
    HistoryCache().history("cold", messages)
    index_s = time.perf_counter() - started

    cache = HistoryCache()
    cache.history("t", messages)
    call_times: list[float] = []
    decide_times: list[float] = []
    extra: list[ToolMessage] = [new_result(rng, n + i) for i in range(2 * calls)]
    position = 0

    def one_call(timed: list[float], work: Callable[[Any], Any]) -> None:
        nonlocal position, messages
        messages = [*messages, extra[position]]
        position += 1
        start = time.perf_counter_ns()
        history = cache.history("t", messages)
        work(history)
        timed.append((time.perf_counter_ns() - start) / 1_000)

    def flow(history: Any) -> Any:
        facts = CallFacts(
            "send_email",
            args,
            EntityRef("User", "alice"),
            "bench",
            "t",
            1,
            "c",
            1,
            history=history,
        )
        return engine._flow_context(entry, facts, resource, args.get("to"))

    def decide(history: Any) -> Any:
        facts = CallFacts(
            "send_email",
            args,
            EntityRef("User", "alice"),
            "bench",
            "t",
            1,
            "c",
            1,
            history=history,
        )
        return engine.decide(facts)

    for _ in range(calls):
        one_call(call_times, flow)
    for _ in range(calls):
        one_call(decide_times, decide)
    return Row(
        outputs=n,
        index_ms=index_s * 1_000,
        index_us_per_message=index_s * 1e6 / n,
        call_p50_us=statistics.median(call_times),
        call_p99_us=percentile(call_times, 0.99),
        decide_p50_us=statistics.median(decide_times),
        decide_p99_us=percentile(decide_times, 0.99),
    )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.platform()}"


def markdown(rows: list[Row], calls: int, command: str, policies: int) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "## Data labels and argument provenance",
        "",
        "`benchmarks/bench_provenance.py` measures what the data-flow facts of the labels "
        "issue cost per call as a run grows: a thread of N earlier tool results of 2 KB each "
        "(prose with email addresses, IBANs, amounts, URLs and ticket ids) and a new "
        "`send_email(to, subject, body)` call after each new result.",
        "",
        "- **index from cold**: indexing the whole thread at once, as a fence does for a "
        "thread it has not seen since it started (after a restart), in total and per message;",
        "- **call**: what the fence adds to one call for data flow: indexing the one result "
        "that arrived since the last call, then the provenance of the recipient and the other "
        "arguments, the labels seen and the labels the body carries. The target is a p50 of "
        "at most 1 ms at 1,000 earlier results; the cost does not grow with N because each "
        "message is indexed once and lookups go through an inverted index;",
        "- **decide**: `PolicyEngine.decide` for the same call with that history: the call "
        f"column plus building the request and Cedar, here with the {policies} policies of "
        "the injection demo, one of them `@shadow` (so two evaluations per call).",
        "",
        "Policy sets that name no data-flow attribute pay none of this: threads are not "
        "indexed and the request is `{agent, run, args}` as before "
        '(`docs/policy-guide.md`, "Which attributes a policy set gets").',
        "",
        f"Measured {now} with `{command}`.",
        "",
        f"- Machine: {machine()}; 1-minute load average {load:.2f}",
        f"- Python {platform.python_version()}, cedarpy {importlib.metadata.version('cedarpy')}, "
        f"langchain-core {importlib.metadata.version('langchain-core')}",
        f"- Tool results of {MESSAGE_BYTES:,} bytes each; {calls} timed calls per size, each "
        "after one more result arrived",
        "- Call: `send_email(to, subject, body)` with resource `Recipient`, demo tools "
        "(`agentfence.demo.injection`), its policy directory",
        "",
        "| earlier tool results | index from cold | per message | call p50 µs | call p99 µs "
        "| decide p50 µs | decide p99 µs | target (call p50 ≤ 1 ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        met = "met" if r.call_p50_us <= TARGET_MS * 1000 else "missed"
        lines.append(
            f"| {r.outputs:,} | {r.index_ms:.1f} ms | {r.index_us_per_message:.0f} µs "
            f"| {r.call_p50_us:.0f} | {r.call_p99_us:.0f} | {r.decide_p50_us:.0f} "
            f"| {r.decide_p99_us:.0f} | {met} |"
        )
    return "\n".join(lines)


def write(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8")
    block = f"{START_MARKER}\n{section}\n{END_MARKER}"
    if START_MARKER in text and END_MARKER in text:
        head, rest = text.split(START_MARKER, 1)
        _, tail = rest.split(END_MARKER, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="timed calls per size")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--write", type=Path, help="replace the marked section of this file")
    options = parser.parse_args()
    catalog = ToolCatalog.from_tools(injection.TOOLS)
    engine = PolicyEngine.load(injection.policy_dir(), catalog)
    rows = [measure(n, options.calls, engine) for n in SIZES]
    command = ".venv/bin/python " + shlex.join(["benchmarks/bench_provenance.py", *sys.argv[1:]])
    if options.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(markdown(rows, options.calls, command, len(engine.policies)))
    if options.write is not None:
        write(options.write, markdown(rows, options.calls, command, len(engine.policies)))


if __name__ == "__main__":
    main()
