"""Instructions per governed call: the fence's cost as a count that machine load does not move.

Timings on a shared or throttled machine move with its spell (every case in
``docs/performance.md`` has run 1.5 times slower from one hour to the next), so an A/B of a
change to the hot path is judged here by instructions, counted by ``valgrind --tool=callgrind``:
``Fence.wrap_tool_call`` of the demo desk's allowed EUR 40 refund, with a tool that returns at
once, after 300 warm-up calls. The script runs the loop twice under callgrind (``--calls`` and
twice as many) and prints the difference divided by ``--calls``, so start-up and warm-up cancel
out. The Cedar call's share is printed beside it (``cedarpy._internal``, inclusive).

Run (valgrind must be installed; each variant takes a few minutes)::

    .venv/bin/python benchmarks/count_fence.py                  # in-memory log
    .venv/bin/python benchmarks/count_fence.py --log signed     # signed SQLite log on tmpfs

For an A/B, run it with ``PYTHONPATH=<other checkout>/src`` for the other side.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence

WARMUP = 300


def loop(calls: int, log_kind: str) -> None:
    """The measured program: warm-up calls, then ``calls`` governed calls."""
    from bench_decide import AGENT, PRINCIPAL, tool_input
    from langchain_core.messages import ToolMessage
    from langgraph.prebuilt import ToolNode
    from langgraph.runtime import Runtime

    from agentfence import Fence
    from agentfence._signing import Signer
    from agentfence.demo import policy_dir
    from agentfence.demo.tools import TOOLS
    from agentfence.log import MemoryLog, SignedLog

    where = "/dev/shm" if os.path.isdir("/dev/shm") else None
    log = (
        MemoryLog()
        if log_kind == "memory"
        else SignedLog.open(tempfile.mkdtemp(dir=where) + "/count.db", signer=Signer.generate("c"))
    )
    fence = Fence.from_directory(policy_dir(), tools=TOOLS, log=log, agent=AGENT, seed=1)
    captured = []
    node = ToolNode(TOOLS, wrap_tool_call=lambda req, run: captured.append(req) or run(req))
    config = {"configurable": {"thread_id": "count", "agentfence_principal": PRINCIPAL}}
    out = node.invoke(tool_input("first"), config, runtime=Runtime())
    message = out["messages"][0] if isinstance(out, dict) else out[0]

    def execute(request: object) -> ToolMessage:
        return ToolMessage(
            content=message.content, name=message.name, tool_call_id=message.tool_call_id
        )

    request = captured[0]
    for i in range(WARMUP + calls):
        call = request.override(tool_call={**request.tool_call, "id": f"call-{i}"})
        result = fence.wrap_tool_call(call, execute)
        if result.status != "success":
            raise SystemExit(f"the call should run: {result.content}")
    fence.close()


def count(calls: int, log_kind: str) -> tuple[int, int]:
    """Total and Cedar instructions of one run of :func:`loop` under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--inner",
                str(calls),
                "--log",
                log_kind,
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        annotated = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", out],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    total = re.search(r"^\s*([\d,]+) .*PROGRAM TOTALS", annotated, re.M)
    # cedarpy's entry point (pyo3's trampoline around is_authorized_batch), inclusive.
    cedar = re.search(r"^\s*([\d,]+) .*trampoline.*cedarpy::is_authorized_batch", annotated, re.M)
    if total is None:
        raise SystemExit("callgrind_annotate printed no program total")
    return (
        int(total.group(1).replace(",", "")),
        int(cedar.group(1).replace(",", "")) if cedar else 0,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per counted run")
    parser.add_argument("--log", choices=("memory", "signed"), default="memory")
    parser.add_argument("--inner", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner is not None:
        loop(args.inner, args.log)
        return 0
    one, cedar_one = count(args.calls, args.log)
    two, cedar_two = count(2 * args.calls, args.log)
    per_call = (two - one) // args.calls
    cedar = (cedar_two - cedar_one) // args.calls
    print(
        f"{per_call:,} instructions per governed call ({args.log} log), of which Cedar "
        f"{cedar:,} and the rest {per_call - cedar:,}"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    raise SystemExit(main())
