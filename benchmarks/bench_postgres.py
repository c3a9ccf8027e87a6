"""Benchmark the signed decision log on PostgreSQL: several processes appending to one log.

Measures, in one run on this machine, against the throwaway cluster of
``scripts/postgres.sh`` (or ``AGENTFENCE_BENCH_POSTGRES_URL``), each case in a schema of
its own that is dropped afterwards:

- the target case: 4 processes x 4 threads appending decision records, each with its
  request blob, to one PostgreSQL log (every process opens the same URL with the same
  signing key), then ``verify_log`` of the result;
- floor 1: plain psycopg, the same processes and threads, each row its own autocommit
  ``INSERT`` of a ``bytea`` the size of an entry (what a durable commit costs at minimum);
- floor 2: the same, but each transaction first locks one shared row with
  ``SELECT ... FOR UPDATE`` and updates it, as the log sequences its appends (what
  sequencing costs at minimum);
- SQLite, one process and one writer thread, the same records, for comparison.

Run: ``.venv/bin/python benchmarks/bench_postgres.py --write docs/performance.md``
(``--appends N`` sets the timed appends per thread, default 2,500; ``--target-only`` runs
the target case alone and prints one line, for A/B runs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import secrets
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from bench_log import (  # the same record, percentiles, machine line and section writer
    decision,
    machine,
    pct,
    write_section,
)

from agentfence import Fence
from agentfence._cedar import stored_form
from agentfence._signing import Signer, read_private_key, write_private_key
from agentfence.demo import policy_dir
from agentfence.demo.tools import TOOLS
from agentfence.log import SignedLog
from agentfence.records import Blob, DecisionRecord, canonical_bytes, entry_bytes_from
from agentfence.verify import verify_log

START, END = "<!-- bench_postgres:start -->", "<!-- bench_postgres:end -->"
ROOT = Path(__file__).resolve().parents[1]
TARGET = 5000  # decisions/s, aggregate over the 4 x 4 writers


def request(i: int) -> bytes:
    """The Cedar request the fence stores as a decision's request blob (as ``replay`` reads)."""
    amount = (5.0, 40.0, 99.0)[i % 3]
    return stored_form(
        {
            "principal": {"type": "User", "id": "alice"},
            "action": {"type": "Action", "id": "refund"},
            "resource": {"type": "Customer", "id": "c-102"},
            "context": {
                "agent": {"__entity": {"type": "Agent", "id": "support-bot"}},
                "args": {
                    "customer_id": "c-102",
                    "amount": {"__extn": {"fn": "decimal", "arg": f"{amount:.4f}"}},
                    "reason": "duplicate charge",
                },
                "run": {"seed": 7, "thread": f"bench-{i % 50}", "step": i % 9},
            },
        }
    )


def appended(i: int, policy_hash: str) -> tuple[DecisionRecord, list[Blob]]:
    """One append as a fence makes it: the decision and its request blob."""
    blob = Blob.of(request(i))
    return decision(i, blob.ref, policy_hash), [blob]


# --- PostgreSQL ------------------------------------------------------------------------------


def base_url() -> str:
    """The server: AGENTFENCE_BENCH_POSTGRES_URL, else the throwaway cluster's URL."""
    url = os.environ.get("AGENTFENCE_BENCH_POSTGRES_URL")
    if url:
        return url
    script = ROOT / "scripts" / "postgres.sh"
    return subprocess.run(
        [str(script), "url"], check=True, capture_output=True, text=True
    ).stdout.strip()


def schema_url(base: str, schema: str) -> str:
    """A URL whose tables live in ``schema`` (as tests/pg.py's ``fresh_schema``)."""
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-csearch_path={schema}')}"


def server(base: str) -> dict[str, str]:
    with psycopg.connect(base, autocommit=True) as conn:
        info = {"version": str(conn.execute("SELECT version()").fetchone()[0])}  # type: ignore[index]
        for name in ("fsync", "synchronous_commit", "wal_sync_method", "commit_delay"):
            info[name] = str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
    return info


def settle(base: str) -> bool:
    """Write out the server's dirty buffers (``CHECKPOINT``), so that a case does not pay for
    the previous case's writes; False when the role may not (it needs superuser or
    ``pg_checkpoint``)."""
    try:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def run_processes(
    target: Callable[..., None], processes: int, args: tuple[Any, ...]
) -> list[dict[str, Any]]:
    """Run ``target(k, barrier, queue, *args)`` in ``processes`` spawned processes; their
    reports, after every process has passed the start barrier together."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=target, args=(k, barrier, queue, *args)) for k in range(processes)
    ]
    for w in workers:
        w.start()
    reports: list[dict[str, Any]] = []
    try:
        while len(reports) < processes:
            report = queue.get(timeout=600)
            if "error" in report:
                raise RuntimeError(f"a benchmark process failed:\n{report['error']}")
            reports.append(report)
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.terminate()
    return reports


def threaded(
    threads: int, barrier: Any, warm: Callable[[int], None], timed: Callable[[int], list[float]]
) -> dict[str, Any]:
    """Run ``warm(k)`` then ``timed(k)`` on ``threads`` threads; timed starts in every
    process at once (``barrier``, across processes). Latencies and the timed interval."""
    latencies: list[float] = []
    lock = threading.Lock()
    marks: dict[str, float] = {}

    errors: list[BaseException] = []

    def started() -> None:
        barrier.wait()
        marks["server_cpu"] = server_cpu()
        marks["start"] = time.perf_counter()
        marks["cpu"] = time.process_time()

    local = threading.Barrier(threads, action=started)

    def work(k: int) -> None:
        try:
            warm(k)
            local.wait()
            mine = timed(k)
        except BaseException as exc:  # raised again below, in the process's main thread
            errors.append(exc)
            local.abort()
            barrier.abort()
            return
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    end, cpu = time.perf_counter(), time.process_time()
    if errors:
        raise errors[0]
    # perf_counter is CLOCK_MONOTONIC on Linux: comparable between processes.
    return {
        "latencies": latencies,
        "start": marks["start"],
        "end": end,
        "cpu": cpu - marks["cpu"],
        "server_cpu": (marks["server_cpu"], server_cpu()),
    }


def server_cpu() -> float:
    """CPU seconds used so far by this machine's PostgreSQL processes (0 if none is local)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended, or it is not ours to read
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def failed(barrier: Any, queue: Any) -> None:
    """Report a child's failure to the parent and release the other processes."""
    barrier.abort()
    queue.put({"error": traceback.format_exc()})


def log_worker(
    k: int,
    barrier: Any,
    queue: Any,
    url: str,
    key_file: str,
    policy_hash: str,
    threads: int,
    warmup: int,
    appends: int,
) -> None:
    """One process of the target case: ``threads`` writers appending to the shared log."""
    try:
        log = SignedLog.open(url, signer=read_private_key(key_file))
        first = k * 10_000_000
        built: dict[int, list[tuple[DecisionRecord, list[Blob]]]] = {}

        def warm(t: int) -> None:
            for i in range(warmup):
                log.append(*appended(first + t * 1_000_000 + i, policy_hash))
            # Built before the clock starts: the fence builds records, the log appends them.
            built[t] = [
                appended(first + t * 1_000_000 + warmup + i, policy_hash) for i in range(appends)
            ]

        def timed(t: int) -> list[float]:
            mine = []
            for record, blobs in built[t]:
                at = time.perf_counter()
                log.append(record, blobs)
                mine.append(time.perf_counter() - at)
            return mine

        marks: dict[str, Any] = {}

        def timed_with_stats(t: int) -> list[float]:
            marks.setdefault("batches", log.stats.batches)
            marks.setdefault("commits", log.stats.batches)
            return timed(t)

        result = threaded(threads, barrier, warm, timed_with_stats)
        stats = log.stats
        result["batches"] = stats.batches - marks["batches"]
        # The log keeps the latest commits' durations only: those of this run are its last.
        ran = stats.batches - marks["commits"]
        result["commit_seconds"] = list(stats.commit_seconds)[-ran:] if ran else []
        result["largest_batch"] = stats.largest_batch
        result["checkpoints"] = stats.checkpoints
        log.close()
        queue.put(result)
    except BaseException:  # reported to the parent, which fails the run
        failed(barrier, queue)


def floor_worker(
    k: int,
    barrier: Any,
    queue: Any,
    url: str,
    serialised: bool,
    size: int,
    threads: int,
    warmup: int,
    rows: int,
) -> None:
    """One process of a floor: each thread its own autocommit connection, one row per
    transaction; ``serialised`` locks and updates the shared row first, as the log does."""
    try:
        body = os.urandom(size)
        conns = [psycopg.connect(url, autocommit=True) for _ in range(threads)]

        def one(conn: psycopg.Connection[Any]) -> None:
            if serialised:
                with conn.transaction():
                    row = conn.execute("SELECT n FROM floor_seq WHERE id = 1 FOR UPDATE").fetchone()
                    n = row[0] if row else 0
                    conn.execute("INSERT INTO floor_serial (seq, body) VALUES (%s, %s)", (n, body))
                    conn.execute("UPDATE floor_seq SET n = %s WHERE id = 1", (n + 1,))
            else:
                conn.execute("INSERT INTO floor_rows (body) VALUES (%s)", (body,))

        def warm(t: int) -> None:
            for _ in range(warmup):
                one(conns[t])

        def timed(t: int) -> list[float]:
            mine = []
            for _ in range(rows):
                at = time.perf_counter()
                one(conns[t])
                mine.append(time.perf_counter() - at)
            return mine

        result = threaded(threads, barrier, warm, timed)
        for conn in conns:
            conn.close()
        queue.put(result)
    except BaseException:  # reported to the parent, which fails the run
        failed(barrier, queue)


def merged(reports: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [x for r in reports for x in r["latencies"]]
    elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    client = sum(r["cpu"] for r in reports)
    server = max(r["server_cpu"][1] for r in reports) - min(r["server_cpu"][0] for r in reports)
    return {
        "count": len(latencies),
        "seconds": elapsed,
        "rate": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1e3,
        "p99_ms": pct(latencies, 0.99) * 1e3,
        # CPU per append: in the appending processes, and in the server's processes.
        "client_cpu_us": client / len(latencies) * 1e6,
        "server_cpu_us": server / len(latencies) * 1e6,
        "cores_busy": (client + server) / elapsed,
    }


def floor(
    base: str, serialised: bool, size: int, processes: int, threads: int, rows: int
) -> dict[str, Any]:
    name = f"bench_floor_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    url = schema_url(base, name)
    try:
        settle(base)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE floor_rows (id BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)")
            conn.execute("CREATE TABLE floor_serial (seq BIGINT PRIMARY KEY, body BYTEA NOT NULL)")
            conn.execute("CREATE TABLE floor_seq (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)")
            conn.execute("INSERT INTO floor_seq VALUES (1, 0)")
        reports = run_processes(
            floor_worker, processes, (url, serialised, size, threads, max(20, rows // 20), rows)
        )
        return merged(reports)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def target_case(
    base: str, tmp: Path, processes: int, threads: int, warmup: int, appends: int
) -> dict[str, Any]:
    name = f"bench_log_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    url = schema_url(base, name)
    try:
        signer = Signer.generate("bench")
        key_file = write_private_key(tmp / "bench.key", signer)
        # A real activation (the demo's policies), so the decisions name a policy set the
        # verifier finds activated earlier in the log.
        log = SignedLog.open(url, signer=signer)
        policy_hash = Fence.from_directory(policy_dir(), tools=TOOLS, log=log, seed=1).policy_hash
        log.close()
        settle(base)
        reports = run_processes(
            log_worker,
            processes,
            (url, str(key_file), policy_hash, threads, warmup, appends),
        )
        result = merged(reports)
        commits = [c for r in reports for c in r["commit_seconds"]]
        batches = sum(r["batches"] for r in reports)
        result.update(
            batches=batches,
            mean_batch=result["count"] / max(batches, 1),
            largest_batch=max(r["largest_batch"] for r in reports),
            commits_per_s=batches / result["seconds"],
            # Wall time per commit: the row lock admits one commit at a time, so while it is
            # always wanted this is the time each commit holds it.
            lock_ms=result["seconds"] / max(batches, 1) * 1e3,
            commit_p50_ms=pct(commits, 0.5) * 1e3,
            commit_mean_ms=sum(commits) / max(len(commits), 1) * 1e3,
            checkpoints=sum(r["checkpoints"] for r in reports),
        )
        expected = 1 + processes * threads * (warmup + appends)  # + the activation entry
        started = time.perf_counter()
        verified = verify_log(url, [signer.verifier_key])
        result["verify_s"] = time.perf_counter() - started
        with psycopg.connect(url, autocommit=True) as conn:
            count, distinct, low, high, keys = conn.execute(
                "SELECT count(*), count(DISTINCT seq), min(seq), max(seq), "
                "count(DISTINCT dedupe_key) FROM entries"
            ).fetchone()  # type: ignore[misc]
        result["verify"] = {
            "entries": verified.entries,
            "size": verified.size,
            "unsigned_tail": verified.unsigned_tail,
            "decisions": verified.decisions,
            "checkpoints": verified.checkpoints,
            "expected": expected,
            "no_gaps": count == distinct == high - low + 1 == expected and low == 0,
            "no_duplicates": keys == verified.decisions == expected - 1,
        }
        result["verify"]["passed"] = (
            verified.entries == expected
            and result["verify"]["no_gaps"]
            and result["verify"]["no_duplicates"]
        )
        return result
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


# --- SQLite ----------------------------------------------------------------------------------


def sqlite_single(tmp: Path, warmup: int, n: int) -> dict[str, float]:
    log = SignedLog.open(tmp / "single.db", signer=Signer.generate("bench"))
    for i in range(warmup):
        log.append(*appended(i, "0" * 64))
    built = [appended(warmup + i, "0" * 64) for i in range(n)]
    latencies = []
    started, cpu = time.perf_counter(), time.process_time()
    for record, blobs in built:
        t = time.perf_counter()
        log.append(record, blobs)
        latencies.append(time.perf_counter() - t)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    log.close()
    return {
        "rate": n / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1e3,
        "p99_ms": pct(latencies, 0.99) * 1e3,
        "client_cpu_us": cpu / n * 1e6,
    }


# --- report ----------------------------------------------------------------------------------


def summary(t: dict[str, Any], load: float) -> str:
    """The target case in one line (``--target-only``)."""
    return (
        f"target: {t['rate']:,.0f} decisions/s, p50 {t['p50_ms']:.2f} ms, p99 "
        f"{t['p99_ms']:.2f} ms, CPU {t['client_cpu_us']:.0f} + {t['server_cpu_us']:.0f} us "
        f"per row, mean batch {t['mean_batch']:.2f} (largest {t['largest_batch']}), "
        f"{t['commits_per_s']:,.0f} commits/s, {t['cores_busy']:.2f} cores busy, verify "
        f"{'passed' if t['verify']['passed'] else 'FAILED'}; load average {load:.2f}"
    )


def render(results: dict[str, Any], command: str) -> str:
    t, f1, f2, s = results["target"], results["floor"], results["serial"], results["sqlite"]
    v = t["verify"]
    info = results["server"]
    p, n = results["processes"], results["threads"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

    def cpu(case: dict[str, Any]) -> str:
        return f"{case['client_cpu_us']:.0f} + {case['server_cpu_us']:.0f}"

    rows = [
        (
            "target",
            f"{p} processes x {n} threads append to one PostgreSQL log",
            f"{t['rate']:,.0f} decisions/s",
            f"{t['p50_ms']:.2f}",
            f"{t['p99_ms']:.2f}",
            cpu(t),
            f"mean batch {t['mean_batch']:.2f} (largest {t['largest_batch']}); "
            f"{t['commits_per_s']:,.0f} commits/s, one per {t['lock_ms']:.2f} ms",
            f"≥ {TARGET:,}/s",
            "met" if t["rate"] >= TARGET else "missed",
        ),
        (
            "floor 1",
            f"bare `INSERT`, one row per autocommit transaction, {p} x {n}",
            f"{f1['rate']:,.0f} rows/s",
            f"{f1['p50_ms']:.2f}",
            f"{f1['p99_ms']:.2f}",
            cpu(f1),
            f"{results['row_bytes']}-byte `bytea` rows (an entry's size)",
            "",
            "",
        ),
        (
            "floor 2",
            f"serialised: `SELECT ... FOR UPDATE`, `INSERT`, `UPDATE`, `COMMIT` per row, {p} x {n}",
            f"{f2['rate']:,.0f} rows/s",
            f"{f2['p50_ms']:.2f}",
            f"{f2['p99_ms']:.2f}",
            cpu(f2),
            f"one transaction per {1e3 / f2['rate']:.2f} ms",
            "",
            "",
        ),
        (
            "SQLite",
            "1 process, 1 writer thread, one SQLite log",
            f"{s['rate']:,.0f} decisions/s",
            f"{s['p50_ms']:.2f}",
            f"{s['p99_ms']:.2f}",
            f"{s['client_cpu_us']:.0f}",
            "`synchronous=FULL`, WAL, one commit per decision",
            "",
            "",
        ),
    ]
    verdict = "passed" if v["passed"] else "FAILED"
    yes = {True: "yes", False: "NO"}
    lines = [
        START,
        f"Measured {now} with `{command}`.",
        "",
        f"- Machine: {machine()}, psycopg {psycopg.__version__}",
        f"- Server: {info['version']}; Unix socket; fsync {info['fsync']}, "
        f"synchronous_commit {info['synchronous_commit']}, wal_sync_method "
        f"{info['wal_sync_method']}, commit_delay {info['commit_delay']}; "
        + (
            "`CHECKPOINT` before each case, so none pays for the last one's dirty buffers"
            if results["checkpoint"]
            else "no `CHECKPOINT` between cases (the role may not)"
        ),
        f"- 1-minute load average at the start: {results['load']:.2f}",
        f"- Each writer thread: {results['warmup']} warm-up appends, then "
        f"{results['appends']:,} timed appends of a decision record with its request blob "
        f"({t['count']:,} in all, {t['seconds']:.1f} s); floors: {results['floor_rows']:,} "
        f"and {results['serial_rows']:,} timed rows per thread",
        "",
        "| case | what | result | p50 ms | p99 ms | CPU µs per row (client + server) "
        "| detail | target | |",
        "|---|---|---:|---:|---:|---:|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"The target case reaches {t['rate'] / f2['rate']:.2f}x the serialised floor and "
        f"{t['rate'] / f1['rate']:.2f}x the bare-insert floor, with "
        f"{t['cores_busy']:.2f} of {os.cpu_count()} cores busy. A commit took "
        f"{t['commit_p50_ms']:.2f} ms (p50) in its committing thread, waiting for the row lock "
        f"included. `verify_log` of its log {verdict} in {t['verify_s']:.1f} s: "
        f"{v['entries']:,} entries ({v['decisions']:,} decisions and the activation), "
        f"{v['checkpoints']} signed checkpoints, unsigned tail {v['unsigned_tail']}; seqs 0 to "
        f"{v['expected'] - 1} without gaps ({yes[v['no_gaps']]}), no decision twice "
        f"({yes[v['no_duplicates']]}).",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2500, help="timed appends per thread")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up appends per thread")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--target-only",
        action="store_true",
        help="run the target case alone and print one line (not with --write)",
    )
    args = parser.parse_args()
    if args.write and args.target_only:
        parser.error("--write replaces the whole table: run every case (leave out --target-only)")
    base = base_url()
    if args.target_only:
        with tempfile.TemporaryDirectory(prefix="agentfence-bench-") as name:
            settle(base)
            t = target_case(
                base, Path(name), args.processes, args.threads, args.warmup, args.appends
            )
        print(summary(t, os.getloadavg()[0]))
        if not t["verify"]["passed"]:
            raise SystemExit("the log did not verify as expected: the benchmark is void")
        return
    results: dict[str, Any] = {
        "load": os.getloadavg()[0],
        "server": server(base),
        "checkpoint": settle(base),
        "processes": args.processes,
        "threads": args.threads,
        "warmup": args.warmup,
        "appends": args.appends,
    }
    # The floors' rows are as large as an entry's body (the record and its seq).
    row_bytes = len(entry_bytes_from(0, canonical_bytes(appended(0, "0" * 64)[0])))
    results["row_bytes"] = row_bytes
    # Fewer rows for the serialised floor (one row per transaction): a few seconds each.
    results["floor_rows"] = max(50, args.appends)
    results["serial_rows"] = max(20, args.appends // 5)
    with tempfile.TemporaryDirectory(prefix="agentfence-bench-") as name:
        tmp = Path(name)
        results["floor"] = floor(
            base, False, row_bytes, args.processes, args.threads, results["floor_rows"]
        )
        results["serial"] = floor(
            base, True, row_bytes, args.processes, args.threads, results["serial_rows"]
        )
        results["sqlite"] = sqlite_single(tmp, args.warmup, args.appends * 2)
        results["target"] = target_case(
            base, tmp, args.processes, args.threads, args.warmup, args.appends
        )
    command = (
        "`.venv/bin/python benchmarks/bench_postgres.py"
        + (f" --appends {args.appends}" if args.appends != 2500 else "")
        + (f" --warmup {args.warmup}" if args.warmup != 100 else "")
        + (f" --processes {args.processes}" if args.processes != 4 else "")
        + (f" --threads {args.threads}" if args.threads != 4 else "")
        + (f" --write {args.write}" if args.write else "")
        + "`"
    )
    if args.json:
        print(json.dumps(results, indent=2))
    section = render(results, command.strip("`"))
    print(section)
    if not results["target"]["verify"]["passed"]:
        raise SystemExit("the log did not verify as expected: the benchmark is void")
    if args.write:
        write_section(args.write, START, END, section, "The signed log on PostgreSQL")


if __name__ == "__main__":
    main()
