"""Benchmark the signed decision log: appends, group commit, verification, replay.

Measures, in one run on this machine, each next to its floor:

- (a) one writer, one durable commit per decision (floor: a bare SQLite insert + commit
  with the same ``synchronous=FULL`` WAL setting);
- (b) 8 writer threads sharing group commits (floor: bare SQLite commits of 8 rows), and
  2 writers beside it (never slower than case a's one);
- (c) ``verify_log`` of a large log (floor: SHA-256 over the same entry bytes);
- (d) ``replay`` of recorded decisions, per core (CPU time of one process; floor: cedarpy
  with pre-parsed handles on the same requests, one call each and in batches of 512).

Run: ``.venv/bin/python benchmarks/bench_log.py --write docs/performance.md``
(``--entries N`` sets the size of the verified log, default 1,000,000).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cedarpy

from agentfence import Fence
from agentfence._cedar import stored_form
from agentfence._log_api import Pending
from agentfence._signing import Signer
from agentfence.demo import policy_dir
from agentfence.demo.tools import TOOLS
from agentfence.log import SignedLog
from agentfence.records import Blob, DecisionRecord, canonical_bytes
from agentfence.verify import replay

START, END = "<!-- bench_log:start -->", "<!-- bench_log:end -->"


def decision(
    i: int, request_blob: str | None = None, policy_hash: str = "0" * 64
) -> DecisionRecord:
    """A realistic decision record (the size of the demo's refund decisions)."""
    return DecisionRecord(
        decision_id=hashlib.sha256(str(i).encode()).hexdigest()[:32],
        seed=7,
        thread=f"bench-{i % 50}",
        step=i % 9,
        tool_call_id=f"call-{i}",
        tool="refund",
        principal='User::"alice"',
        agent="support-bot",
        action='Action::"refund"',
        resource='Customer::"c-102"',
        request_blob=request_blob,
        effect="ALLOW",
        policy_ids=["refund-small"],
        reasons=["refunds up to EUR 100 are routine"],
        errors=[],
        approvers=[],
        policy_hash=policy_hash,
        engine="cedarpy/4.12.2",
        time_us=1_800_000_000_000_000 + i,
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def single_writer(tmp: Path, n: int) -> dict[str, float]:
    log = SignedLog.open(tmp / "single.db", signer=Signer.generate("bench"))
    latencies = []
    started, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        t = time.perf_counter()
        log.append(decision(i))
        latencies.append(time.perf_counter() - t)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    log.close()
    return {
        "rate": n / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1e3,
        "p99_ms": pct(latencies, 0.99) * 1e3,
        "cpu_us": cpu / n * 1e6,
    }


def bare_commits(tmp: Path, n: int, rows_per_commit: int) -> float:
    body = canonical_bytes(decision(0))
    conn = sqlite3.connect(tmp / f"bare-{rows_per_commit}.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body BLOB)")
    started = time.perf_counter()
    for _ in range(n // rows_per_commit):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO t (body) VALUES (?)", [(body,)] * rows_per_commit)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return (n // rows_per_commit) * rows_per_commit / elapsed


def group_commit(tmp: Path, per_thread: int, threads: int) -> dict[str, float]:
    log = SignedLog.open(tmp / f"group-{threads}.db", signer=Signer.generate("bench"))
    latencies: list[float] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        mine = []
        for i in range(per_thread):
            t = time.perf_counter()
            log.append(decision(k * 1_000_000 + i))
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    started, cpu = time.perf_counter(), time.process_time()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    batches = log.stats.batches
    log.close()
    total = per_thread * threads
    return {
        "rate": total / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1e3,
        "p99_ms": pct(latencies, 0.99) * 1e3,
        "mean_batch": total / max(batches, 1),
        "cpu_us": cpu / total * 1e6,
    }


def build_large(path: Path, n: int, signer: Signer) -> None:
    """Append ``n`` decisions in large batches (group commit's own path, without threads)."""
    log = SignedLog.open(path, signer=signer, checkpoint_interval=3600)
    # A real activation (the demo's policies), so the decisions name a policy set the
    # verifier can rebuild from the log.
    fence = Fence.from_directory(policy_dir(), tools=TOOLS, log=log, seed=1)
    policy_hash = fence.policy_hash
    n -= 1
    batch_size = 20_000
    for start in range(0, n, batch_size):
        batch = []
        for i in range(start, min(n, start + batch_size)):
            record = decision(i).model_copy(update={"policy_hash": policy_hash})
            batch.append(Pending(record, (), canonical_bytes(record)))
        log._commit(batch)  # bulk load for the benchmark only
    log.close()


_VERIFY = """
import json, sys, time
from agentfence.verify import verify_log
started = time.perf_counter()
verified = verify_log(sys.argv[1], [sys.argv[2]], workers=None)
print(json.dumps({"seconds": time.perf_counter() - started, "size": verified.size}))
"""


def verify_large(tmp: Path, n: int) -> dict[str, float]:
    signer = Signer.generate("bench")
    path = tmp / "large.db"
    started = time.perf_counter()
    build_large(path, n, signer)
    build = time.perf_counter() - started
    # verify_log runs in a process of its own started with `python -c`: its worker processes
    # are spawned, and a spawned process first imports the main module of the program that
    # started it. This benchmark's own module imports the whole fence stack (about 1.5 s of
    # CPU), which would be charged to every worker; a script that only verifies, and the
    # `agentfence log verify` command, import little.
    verified = json.loads(
        subprocess.run(
            [sys.executable, "-c", _VERIFY, str(path), signer.verifier_key],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    elapsed = verified["seconds"]
    assert verified["size"] == n  # a benchmark that verified nothing is void
    conn = sqlite3.connect(path)
    bodies = [bytes(r[0]) for r in conn.execute("SELECT body FROM entries ORDER BY seq")]
    conn.close()
    started = time.perf_counter()
    for body in bodies:
        hashlib.sha256(b"\x00" + body).digest()
    floor = time.perf_counter() - started
    return {
        "entries": n,
        "build_s": build,
        "rate": n / elapsed,
        "floor_rate": n / floor,
        "seconds": elapsed,
    }


def replay_bench(tmp: Path, n: int) -> dict[str, float]:
    """Record ``n`` decisions through a real fence (demo policies), then replay them.

    Per core means CPU time: replay in one process (``workers=1``) and both floors are timed
    with ``time.process_time``, so other work on a shared machine does not count against
    them. The floors evaluate the same requests with the fence's pre-parsed handles: one
    ``cedarpy.is_authorized`` call each, and ``cedarpy.is_authorized_batch`` in batches of
    512 (what replay calls). Every request is distinct (its step and tool call id differ),
    so nothing here can be answered from a cache of earlier answers.
    """
    signer = Signer.generate("bench")
    path = tmp / "replay.db"
    fence = Fence.from_directory(
        policy_dir(), tools=TOOLS, log=f"sqlite:///{path}", signing_key=signer, seed=1
    )
    requests = []
    amounts = [5.0, 40.0, 99.0, 150.0, 2500.0, 20000.0]
    log = fence.log
    batch = []
    for i in range(n):
        d = fence.decide(
            "refund",
            {"customer_id": f"c-{i % 40}", "amount": amounts[i % 6], "reason": "bench"},
            principal='User::"alice"',
            thread=f"t-{i % 30}",
            step=i,
            tool_call_id=f"c{i}",
        )
        blob = Blob.of(stored_form(d.request or {}))
        requests.append(d.request)
        record, _ = fence._decision_record(d, None, None)  # the fence's own record
        record = record.model_copy(update={"request_blob": blob.ref})
        batch.append(Pending(record, [blob], canonical_bytes(record)))
        if len(batch) == 5000:
            log._commit(batch)  # type: ignore[attr-defined]
            batch = []
    if batch:
        log._commit(batch)  # type: ignore[attr-defined]
    fence.close()
    distinct = len({stored_form(r or {}) for r in requests})
    started, cpu = time.perf_counter(), time.process_time()
    one = replay(path, workers=1)
    one_wall, one_cpu = time.perf_counter() - started, time.process_time() - cpu
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    many = replay(path, workers=cores)
    many_wall = time.perf_counter() - started
    compiled = fence.engine.compiled
    handles = (compiled.policy_set, compiled.entities)
    cpu = time.process_time()
    for request in requests:
        cedarpy.is_authorized(dict(request or {}), *handles, schema=compiled.schema)
    single = time.process_time() - cpu
    dicts = [dict(r or {}) for r in requests]
    cpu = time.process_time()
    for i in range(0, n, 512):
        cedarpy.is_authorized_batch(dicts[i : i + 512], *handles, schema=compiled.schema)
    batched = time.process_time() - cpu
    if one.replayed != n or many.replayed != n or one.changes or many.changes:
        raise SystemExit(f"replay did not reproduce the {n} decisions: {one.to_json()}")
    return {
        "decisions": n,
        "distinct_requests": distinct,
        "rate": n / one_cpu,
        "wall_rate": n / one_wall,
        "workers": cores,
        "workers_rate": n / many_wall,
        "floor_rate": n / single,
        "batch_floor_rate": n / batched,
        "changed": len(one.changes),
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"model name\s*:\s*(.+)", text)
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def write_section(path: Path, start: str, end: str, section: str, heading: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers in ``path`` with
    ``section`` (which carries the markers), or append it under ``heading``."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + section + "\n"
    path.write_text(text)


def render(results: dict[str, Any], command: str) -> str:
    a, b = results.get("single"), results.get("group")
    c, d = results.get("verify"), results.get("replay")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows: list[tuple[str, ...]] = []
    if a is not None:
        rows.append(
            (
                "a",
                "1 writer, 1 durable commit per decision",
                f"{a['rate']:,.0f}/s",
                f"p50 {a['p50_ms']:.3f} ms, p99 {a['p99_ms']:.3f} ms, "
                f"CPU {a['cpu_us']:.0f} µs per append",
                f"bare commit {results['bare1']:,.0f}/s",
                f"{a['rate'] / results['bare1']:.2f}",
                "≥ 3,000/s, p99 ≤ 1 ms",
                "met" if a["rate"] >= 3000 and a["p99_ms"] <= 1 else "missed",
            )
        )
    if b is not None:
        rows.append(
            (
                "b",
                "8 writers, group commit",
                f"{b['rate']:,.0f}/s",
                f"p50 {b['p50_ms']:.3f} ms, p99 {b['p99_ms']:.3f} ms, "
                f"mean batch {b['mean_batch']:.1f}, CPU {b['cpu_us']:.0f} µs per record; "
                f"2 writers {results['pair']['rate']:,.0f}/s",
                f"bare 8-row commits {results['bare8']:,.0f}/s",
                f"{b['rate'] / results['bare8']:.2f}",
                "≥ 10,000/s",
                "met" if b["rate"] >= 10000 else "missed",
            )
        )
    if c is not None:
        rows.append(
            (
                "c",
                f"verify_log, {c['entries']:,} entries",
                f"{c['rate']:,.0f} entries/s",
                f"{c['seconds']:.1f} s",
                f"SHA-256 of entries {c['floor_rate']:,.0f}/s",
                f"{c['rate'] / c['floor_rate']:.2f}",
                "≥ 250,000/s",
                "met" if c["rate"] >= 250000 else "missed",
            )
        )
    if d is not None:
        rows.append(
            (
                "d",
                f"replay, {d['decisions']:,} decisions ({d['distinct_requests']:,} distinct)",
                f"{d['rate']:,.0f} decisions/s per core",
                f"CPU time, 1 process; wall {d['wall_rate']:,.0f}/s; {d['workers']} worker "
                f"processes {d['workers_rate']:,.0f}/s in all; {d['changed']} changed",
                f"cedarpy pre-parsed, per core: single calls {d['floor_rate']:,.0f}/s, "
                f"batches of 512 {d['batch_floor_rate']:,.0f}/s",
                f"{d['rate'] / d['floor_rate']:.2f} / {d['rate'] / d['batch_floor_rate']:.2f}",
                "≥ 10,000/s per core",
                "met" if d["rate"] >= 10000 else "missed",
            )
        )
    lines = [
        START,
        f"Measured {now} with `{command}`.",
        "",
        f"- Machine: {machine()}",
        f"- 1-minute load average at the start: {results['load']:.2f}",
        "",
        "| case | what | result | detail | floor (same run) | result / floor | target | |",
        "|---|---|---:|---|---|---:|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=5000)
    parser.add_argument("--replay", type=int, default=50_000)
    parser.add_argument(
        "--cases",
        default="abcd",
        help="which cases to run, as letters (default abcd); --write needs all four",
    )
    parser.add_argument("--write", type=Path)
    parser.add_argument(
        "--dir",
        type=Path,
        help="where the logs are written (default: the system's temporary directory); "
        "/dev/shm (tmpfs) takes the disk out of cases a and b, leaving their CPU cost",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cases = set(args.cases)
    if not cases or not cases <= set("abcd"):
        parser.error(f"--cases takes letters from abcd, not {args.cases!r}")
    if args.write and cases != set("abcd"):
        parser.error("--write replaces the whole table: run every case (leave out --cases)")
    results: dict[str, Any] = {"load": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="agentfence-bench-", dir=args.dir) as name:
        tmp = Path(name)
        if "a" in cases:
            results["bare1"] = bare_commits(tmp, args.appends, 1)
            results["single"] = single_writer(tmp, args.appends)
        if "b" in cases:
            results["bare8"] = bare_commits(tmp, args.appends * 2, 8)
            results["group"] = group_commit(tmp, args.appends // 4, 8)
            # The other bound: two writers are never slower than one (case a).
            results["pair"] = group_commit(tmp, args.appends // 2, 2)
        if "c" in cases:
            results["verify"] = verify_large(tmp, args.entries)
        if "d" in cases:
            results["replay"] = replay_bench(tmp, args.replay)
    command = (
        "`.venv/bin/python benchmarks/bench_log.py"
        + (f" --entries {args.entries}" if args.entries != 1_000_000 else "")
        + (f" --dir {args.dir}" if args.dir else "")
        + (f" --write {args.write}" if args.write else "")
        + "`"
    )
    if args.json:
        print(json.dumps(results, indent=2))
    section = render(results, command.strip("`"))
    print(section)
    if args.write:
        write_section(args.write, START, END, section, "The signed log")
    _ = statistics  # kept for readers extending the percentiles


if __name__ == "__main__":
    main()
