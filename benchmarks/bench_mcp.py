"""What ``agentfence mcp serve`` adds to one MCP tool call, next to the direct call.

One run, one upstream MCP server (``tests/mcp_server.py``, the official SDK's FastMCP over
stdio), one allowed read-only call (``read_note``), three cases, each through the SDK's own
client session over stdio:

a. direct: the client speaks to the upstream server;
b. through ``agentfence mcp serve`` with the in-memory log;
c. through ``agentfence mcp serve`` with the durable signed SQLite log.

All three sessions are open at once and timed call by call in interleaved rounds, so a noisy
spell on a shared machine lands on every case alike. The added latency per call is
``p50(b) - p50(a)`` and ``p50(c) - p50(a)``. Afterwards the signed log is verified with its
public key (``agentfence log verify``) and holds a decision and an outcome for every call.

Run ``.venv/bin/python benchmarks/bench_mcp.py --write docs/performance.md`` to refresh the
``bench_mcp`` section of ``docs/performance.md``. Timing is never a test.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
from bench_decide import (
    command_line,
    load_average,
    machine,
    output_options,
    summarize,
    write_section,
)
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "mcp_server.py"
POLICIES = ROOT / "tests" / "fixtures" / "mcp_policies"
ROUND = 50
CASES = (
    ("a", "direct to the upstream (SDK client, stdio)"),
    ("b", "through agentfence mcp serve, in-memory log"),
    ("c", "through agentfence mcp serve, signed SQLite log"),
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def _proxy_config(folder: Path, durable: bool) -> Path:
    lines = ["[fence]", f'policies = "{POLICIES}"', """principal = 'User::"alice"'"""]
    if durable:
        lines += [f'log = "sqlite:///{folder / "fence.db"}"', 'signing_key = "keys/bench.key"']
    lines += [
        "[servers.notes]",
        f'command = "{sys.executable}"',
        f'args = ["{SERVER}"]',
    ]
    path = folder / ("durable.toml" if durable else "memory.toml")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def _session(params: StdioServerParameters) -> AsyncIterator[ClientSession]:
    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


async def _measure(folder: Path, iterations: int) -> dict[str, list[int]]:
    direct = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=_env())

    def proxy(durable: bool) -> StdioServerParameters:
        config = _proxy_config(folder, durable)
        args = ["-m", "agentfence.cli", "mcp", "serve", "--config", str(config)]
        return StdioServerParameters(command=sys.executable, args=args, env=_env())

    samples: dict[str, list[int]] = {case: [] for case, _ in CASES}
    async with (
        _session(direct) as a,
        _session(proxy(False)) as b,
        _session(proxy(True)) as c,
    ):
        sessions = {"a": a, "b": b, "c": c}
        for session in sessions.values():  # warm-up
            for _ in range(20):
                await _call(session)
        done = 0
        while done < iterations:
            for case, session in sessions.items():
                for _ in range(min(ROUND, iterations - done)):
                    started = time.perf_counter_ns()
                    await _call(session)
                    samples[case].append(time.perf_counter_ns() - started)
            done += ROUND
    return samples


async def _call(session: ClientSession) -> None:
    result = await session.call_tool("read_note", {"name": "todo"})
    text = result.content[0] if result.content else None
    if result.isError or not isinstance(text, types.TextContent) or text.text != "buy milk":
        raise SystemExit(f"the call did not run as expected: {result}")


def run(iterations: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="agentfence-bench-mcp-") as tmp:
        folder = Path(tmp)
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentfence.cli",
                "keys",
                "generate",
                "--name",
                "bench",
                "--out",
                str(folder / "keys"),
            ],
            capture_output=True,
            text=True,
            env=_env(),
        )
        if made.returncode:
            raise SystemExit(made.stderr)
        load_before = load_average()
        samples = anyio.run(_measure, folder, iterations)
        load_after = load_average()
        verified = subprocess.run(
            [
                sys.executable,
                "-m",
                "agentfence.cli",
                "log",
                "verify",
                str(folder / "fence.db"),
                "--key",
                str(folder / "keys" / "bench.pub"),
                "--json",
            ],
            capture_output=True,
            text=True,
            env=_env(),
        )
        if verified.returncode:
            raise SystemExit(f"the signed log does not verify: {verified.stdout}{verified.stderr}")
        report = json.loads(verified.stdout)
    stats = [summarize(case, label, samples[case]) for case, label in CASES]
    return {
        "command": command_line(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": asdict(machine()),
        "load": [load_before, load_after],
        "iterations": iterations,
        "cases": [asdict(s) for s in stats],
        "added_p50_us": {
            "memory": stats[1].p50_us - stats[0].p50_us,
            "signed": stats[2].p50_us - stats[0].p50_us,
        },
        "verified_entries": report.get("entries", report.get("size")),
    }


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    rows = [
        "| case | what | p50 µs | p99 µs | mean µs | calls/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for s in result["cases"]:
        rows.append(
            f"| {s['case']} | {s['label']} | {s['p50_us']:,.0f} | {s['p99_us']:,.0f} | "
            f"{s['mean_us']:,.0f} | {s['calls_per_s']:,.0f} |"
        )
    added = result["added_p50_us"]
    return "\n".join(
        [
            f"Measured {result['date']} on {m['cpu']} ({m['cores']} cores), Python "
            f"{m['python']}, {result['iterations']:,} timed calls per case, load average "
            f"{result['load'][0]} → {result['load'][1]}:",
            "",
            "```sh",
            result["command"],
            "```",
            "",
            *rows,
            "",
            f"The proxy adds {added['memory']:,.0f} µs per call at p50 with the in-memory log "
            f"and {added['signed']:,.0f} µs with the signed SQLite log (one durable commit per "
            f"decision). The signed log verified with its public key afterwards "
            f"({result['verified_entries']} entries).",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000, help="timed calls per case")
    output_options(parser, "bench_mcp")
    args = parser.parse_args(argv)
    result = run(args.iterations)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(markdown(result))
    if args.write is not None:
        write_section(args.write, markdown(result), "bench_mcp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
