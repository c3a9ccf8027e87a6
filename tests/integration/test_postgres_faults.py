"""PostgreSQL faults: killed writers, a server that stops and restarts, dropped connections.

Whatever the database does, two things must hold: every append that was acknowledged is in
the log (with the seq and leaf hash it was acknowledged with), and no tool runs unless its
decision was durably recorded first. A call made while the log cannot be written is refused
with an error result that says why.

Safety with other tests on the shared cluster (``make test`` runs the suite with
pytest-xdist in the cluster scripts/postgres.sh starts): the killed-writer test uses its own
schema; the dropped-connection test terminates only the sessions of the fence under test,
found by an ``application_name`` unique to the test; the restart test never touches the
shared server: it starts a private throwaway cluster of its own (initdb into a temporary
directory, its own socket directory), which it stops and restarts at will.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, tool

from agentfence import Fence
from agentfence._policy_files import policy_hash as _policy_hash
from agentfence._signing import Signer, write_private_key
from agentfence._storage.tables import LogBackend
from agentfence.log import SignedLog, parse_entry
from agentfence.records import DecisionRecord, LogRecord, OutcomeRecord
from agentfence.testing import tool_call
from agentfence.verify import VerifiedLog, verify_log
from tests.conformance.test_backends import decision
from tests.conftest import Ran
from tests.graphs import batch, config, graph_for, tool_messages
from tests.pg import ROOT, base_url, sessions_after

pytestmark = pytest.mark.postgres

# What the fence tells the model when a call's decision could not be recorded.
FAIL_CLOSED = (
    "agentfence did not run this call: it could not be decided and recorded (fail closed). "
    "The cause is in the decision log and the trace"
)
# What PostgreSQL says to a session it ends (pg_terminate_backend, or a fast shutdown);
# psycopg reports it on the session's next statement.
# What it tells the model when the tool ran but its outcome could not be recorded.
UNRECORDED = "the tool 'read_record' ran, but agentfence could not record its outcome;"


# --- reading the log back ----------------------------------------------------------------


def stored_entries(url: str) -> list[tuple[int, str, LogRecord]]:
    """Every stored entry as (seq, leaf hash hex, record), read without writing anything."""
    backend = LogBackend(url, readonly=True)
    try:
        return [
            (row.seq, row.leaf_hash.hex(), parse_entry(row.body)[1]) for row in backend.entries()
        ]
    finally:
        backend.close()


def reopen_and_sign(url: str, signer: Signer) -> None:
    """Open the log again (its tail check must pass) and close it, signing every entry."""
    log = SignedLog.open(url, signer=signer)
    log.close()


def check_fenced_log(
    url: str, signer: Signer, ran: Ran, messages: dict[str, ToolMessage]
) -> tuple[VerifiedLog, dict[str, DecisionRecord], dict[str, OutcomeRecord]]:
    """Verify the log and check it against what the model saw and what actually ran.

    Every result the model saw is one of three: the tool's (it ran, and its outcome is on
    the log), a fail-closed refusal (it did not run), or "ran, but the outcome could not be
    recorded" (it ran; its outcome may or may not have reached the log). Returns the
    verification, the decisions (by tool call id) and the outcomes (by decision id).
    """
    verified = verify_log(url, [signer.verifier_key])
    assert verified.unsigned_tail == 0
    entries = stored_entries(url)
    assert [seq for seq, _, _ in entries] == list(range(verified.entries))
    decisions: dict[str, DecisionRecord] = {}
    outcomes: dict[str, OutcomeRecord] = {}
    for _, _, record in entries:
        if isinstance(record, DecisionRecord):
            assert record.tool_call_id not in decisions, f"{record.tool_call_id} decided twice"
            decisions[record.tool_call_id] = record
        elif isinstance(record, OutcomeRecord):
            outcomes[record.decision_id] = record
    succeeded = sorted(k for k, m in messages.items() if m.status == "success")
    refused = sorted(k for k, m in messages.items() if str(m.content).startswith(FAIL_CLOSED))
    unrecorded = sorted(k for k, m in messages.items() if str(m.content).startswith(UNRECORDED))
    assert sorted(succeeded + refused + unrecorded) == sorted(messages), {
        k: m.content for k, m in messages.items()
    }
    # Fail closed: the tools that ran are exactly those calls whose result said so; each of
    # them read its own ALLOW decision from the log as it ran (see durable_tools).
    assert sorted(args["record_id"] for _, args in ran.calls) == sorted(succeeded + unrecorded)
    assert [args["on_record"] for _, args in ran.calls] == [["ALLOW"]] * len(ran.calls)
    for call_id in succeeded:
        decision_id = messages[call_id].response_metadata["agentfence"]["decision_id"]
        assert decisions[call_id].decision_id == decision_id
        assert decisions[call_id].effect == "ALLOW"
        assert outcomes[decision_id].status == "success"
    for call_id in unrecorded:
        assert decisions[call_id].effect == "ALLOW"
    # A refused call never ran: no outcome, whatever decision (if any) reached the log.
    for call_id in refused:
        decision = decisions.get(call_id)
        assert decision is None or decision.decision_id not in outcomes
    assert len(succeeded) <= verified.outcomes <= len(succeeded) + len(unrecorded)
    return verified, decisions, outcomes


def durable_tools(tools: list[BaseTool], url: str, ran: Ran) -> list[BaseTool]:
    """The tool set with read_record replaced by one that checks the fence's promise.

    As it runs, it reads its own decision from the log on a connection of its own (no
    fault touches it) and notes the effects it found in ``ran``: a decision recorded before
    the tool runs is there, committed.
    """
    import psycopg

    @tool
    def read_record(record_id: str) -> str:
        """Read a record."""
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT effect FROM entries WHERE kind = 'agentfence.decision/v1' "
                "AND position(%s in convert_from(body, 'UTF8')) > 0",
                (f'"tool_call_id":"{record_id}"',),
            ).fetchall()
        on_record = [str(row[0]) for row in rows]
        ran.calls.append(("read_record", {"record_id": record_id, "on_record": on_record}))
        return f"record {record_id}: ok"

    original = next(t for t in tools if t.name == "read_record")
    read_record.metadata = original.metadata  # the same governance
    return [read_record if t is original else t for t in tools]


# --- driving a real graph ----------------------------------------------------------------


def call_sync(fence: Fence, tools: list[BaseTool], call_id: str) -> ToolMessage:
    """One read_record call through a real StateGraph + ToolNode, invoked synchronously.

    LangGraph runs each ToolNode step on a new worker thread: the fence appends from a
    thread that has no database connection yet.
    """
    graph = graph_for(
        fence, tools, batch(tool_call("read_record", {"record_id": call_id}, call_id))
    )
    return tool_messages(graph.invoke({"messages": [("user", "go")]}, config(call_id)))[call_id]


async def call_async(fence: Fence, tools: list[BaseTool], call_id: str) -> ToolMessage:
    """The same call through ``ainvoke``: the fence appends from the loop's worker thread."""
    graph = graph_for(
        fence, tools, batch(tool_call("read_record", {"record_id": call_id}, call_id))
    )
    result = await graph.ainvoke({"messages": [("user", "go")]}, config(call_id))
    return tool_messages(result)[call_id]


def run_on_one_worker(main: Callable[[], Any]) -> Any:
    """Run a coroutine function in an event loop whose default executor has ONE thread.

    The fence's ``awrap_tool_call`` decides and records in ``asyncio.to_thread``, so every
    call of the run appends from that one long-lived thread, with the one connection it
    opened: as in a long-running async service, whose worker threads keep theirs.
    """

    async def runner() -> Any:
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="fence")
        )
        return await main()

    return asyncio.run(runner())


def assert_ran(message: ToolMessage, call_id: str) -> None:
    assert message.status == "success", message.content
    assert message.content == f"record {call_id}: ok"


def assert_refused(message: ToolMessage, driver_text: str) -> None:
    """An error result with the fence's fixed fail-closed text and a decision id; the
    driver's words go to the log, the trace and the operator's log lines, not the model."""
    assert message.status == "error"
    assert message.artifact == {"agentfence": {"refused": True}}
    content = str(message.content)
    assert content.startswith(FAIL_CLOSED), content
    assert driver_text not in content, content
    assert re.search(r"\[decision [0-9a-f]{32}\]$", content), content


# --- 1. writers killed mid-run -----------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import hashlib, sys, threading
    from agentfence._signing import read_private_key
    from agentfence.log import SignedLog
    from agentfence._policy_files import policy_hash as _policy_hash
    from agentfence.records import ActivationRecord, Blob
    from tests.conformance.test_backends import decision, done

    url, key, name = sys.argv[1], sys.argv[2], sys.argv[3]
    threads, pairs = int(sys.argv[4]), int(sys.argv[5])  # pairs 0: until killed
    log = SignedLog.open(url, signer=read_private_key(key), checkpoint_interval=0.01)
    out = threading.Lock()

    def acknowledge(receipt):
        # Printed only after append returned: the entry is acknowledged.
        with out:
            sys.stdout.write(f"{receipt.seq} {receipt.leaf_hash}\\n")
            sys.stdout.flush()

    print("ready", flush=True)
    sys.stdin.readline()  # every writer starts appending at once
    # A policy set of this writer's own, activated before its decisions use it.
    files = {"p.cedar": hashlib.sha256(f"policy {name}".encode()).hexdigest()}
    policy, schema = Blob.of(f"policy {name}".encode()), Blob.of(b"schema")
    policy_hash = _policy_hash(files, "schema")
    acknowledge(log.append(ActivationRecord(
        policy_hash=policy_hash, files=files, file_blobs={"p.cedar": policy.ref},
        schema_blob=schema.ref, generated_schema_blob=schema.ref, engine="test", time_us=1),
        [policy, schema]))

    def work(t):
        i = 0
        while pairs == 0 or i < pairs:
            record = decision(f"{name}-{t}", i, policy_hash)
            acknowledge(log.append(record))
            result = Blob.of(f"result {record.decision_id}".encode())
            acknowledge(log.append(done(record, result), [result]))
            i += 1

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    log.close()
    print("done", flush=True)
    """
)


def writer_policy_hash(name: str) -> str:
    """The policy set a writer activates (as the writer script computes it)."""
    return _policy_hash(
        {"p.cedar": hashlib.sha256(f"policy {name}".encode()).hexdigest()}, "schema"
    )


ACK = re.compile(r"^(\d+) ([0-9a-f]{64})$")


class Writer:
    """A writer process; a thread collects the receipts it acknowledges."""

    def __init__(self, script: Path, url: str, key: Path, name: str, threads: int, pairs: int):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(script), url, str(key), name, str(threads), str(pairs)],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},  # the script imports tests.conformance
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.acks: list[tuple[int, str]] = []
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            # A line cut short by SIGKILL has no newline: it was not acknowledged.
            if not line.endswith("\n"):
                break
            text = line.rstrip("\n")
            self.lines.append(text)
            if text == "ready":
                self.ready.set()
            elif match := ACK.match(text):
                self.acks.append((int(match[1]), match[2]))

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float) -> int:
        """Wait for the process and its output; return its exit code."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()


def test_killed_writer_loses_no_acknowledged_entry(pg_url: str, tmp_path: Path) -> None:
    signer = Signer.generate("pg-writers")
    key = write_private_key(tmp_path / "writers.key", signer)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    threads, pairs = 4, 40
    # The victim appends until killed; the survivors append 40 decision/outcome pairs on
    # each of 4 threads (plus an activation), before and after the kill.
    victim = Writer(script, pg_url, key, "victim", threads, 0)
    survivors = [Writer(script, pg_url, key, f"w{n}", threads, pairs) for n in range(3)]
    writers = [victim, *survivors]
    try:
        for w in writers:
            assert w.ready.wait(30), f"{w.name} did not open the log: {w.stderr()}"
        for w in writers:
            w.go()
        deadline = time.monotonic() + 20
        while len(victim.acks) < 60 and time.monotonic() < deadline:
            assert victim.proc.poll() is None, f"the victim died: {victim.stderr()}"
            time.sleep(0.005)
        assert len(victim.acks) >= 60, "the victim acknowledged too little before the kill"
        # Mid-run: the survivors are still appending; the victim has appends in flight.
        assert all(w.proc.poll() is None for w in survivors)
        os.kill(victim.proc.pid, signal.SIGKILL)
        assert victim.finish(timeout=30) == -signal.SIGKILL
        for w in survivors:
            # They finish: the killed session's transaction and row lock went with it.
            assert w.finish(timeout=60) == 0, f"{w.name} failed: {w.stderr()}"
            assert w.lines[-1] == "done"
            assert len(w.acks) == 1 + 2 * threads * pairs
    finally:
        for w in writers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(timeout=30)
            for stream in (w.proc.stdin, w.proc.stdout, w.proc.stderr):
                if stream is not None:
                    stream.close()

    verified = verify_log(pg_url, [signer.verifier_key])
    stored = {seq: leaf for seq, leaf, _ in stored_entries(pg_url)}
    # No gaps and no duplicates: seqs 0..size-1, as many as the verified tree holds.
    assert sorted(stored) == list(range(len(stored)))
    assert verified.entries == len(stored)
    # The last survivor to close signed a checkpoint of the whole tree.
    assert verified.size == verified.entries
    acknowledged = [ack for w in writers for ack in w.acks]
    # No two appends, in any process, were acknowledged with the same seq.
    assert len({seq for seq, _ in acknowledged}) == len(acknowledged)
    lost = [(seq, leaf) for seq, leaf in acknowledged if stored.get(seq) != leaf]
    assert lost == [], f"acknowledged entries missing or different: {lost[:10]}"
    # Each victim thread had at most one append in flight when it was killed: at most that
    # many entries committed without being acknowledged.
    assert 0 <= len(stored) - len(acknowledged) <= threads

    # The log opens again (its tail check passes) and takes more appends.
    log = SignedLog.open(pg_url, signer=signer)
    try:
        # A policy set activated by writer w0.
        receipt = log.append(decision("after-the-kill", 0, writer_policy_hash("w0")))
    finally:
        log.close()
    assert receipt.seq == len(stored)
    assert not receipt.duplicate
    again = verify_log(pg_url, [signer.verifier_key])
    assert again.entries == again.size == len(stored) + 1
    assert again.decisions == verified.decisions + 1


# --- 2. the server stops and restarts (a private cluster) --------------------------------


@dataclass
class PrivateCluster:
    """A throwaway PostgreSQL cluster only this module uses: restarting it harms no one.

    Run by scripts/postgres.sh, the same script that runs the shared one, pointed elsewhere.
    """

    base: Path
    port: int = 54339

    def url(self, database: str = "agentfence") -> str:
        return f"postgresql://postgres@/{database}?host={self.base / 'run'}&port={self.port}"

    def script(self, command: str) -> None:
        env = {
            **os.environ,
            "AGENTFENCE_PG_BASE": str(self.base),
            "AGENTFENCE_PG_PORT": str(self.port),
        }
        subprocess.run(
            [str(ROOT / "scripts" / "postgres.sh"), command],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )

    def start(self) -> None:
        self.script("start")

    def stop(self) -> None:
        self.script("stop")

    def restart(self) -> None:
        self.script("restart")

    def server_log(self) -> str:
        path = self.base / "server.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[PrivateCluster]:
    """A cluster of its own in a temporary directory; stopped and removed afterwards."""
    base_url()  # skipped (or failed, when required) like every PostgreSQL test
    # Not under pytest's tmp_path: its parents are private to the user running pytest, and
    # the server runs as postgres. A short path also keeps the socket path under its limit.
    cluster = PrivateCluster(Path(tempfile.mkdtemp(prefix="af-pg-", dir="/tmp")))
    os.chmod(cluster.base, 0o755)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base, ignore_errors=True)


def test_restart_during_a_run_denies_while_down_and_recovers(
    private_cluster: PrivateCluster,
    make_fence: Callable[..., Fence],
    tools: list[BaseTool],
    ran: Ran,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import psycopg

    cluster = private_cluster
    # A schema of its own, in case the module-scoped cluster serves another test one day.
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{cluster.url()}&options=-csearch_path%3D{schema}"
    signer = Signer.generate("pg-restart")
    tools = durable_tools(tools, url, ran)
    fence = make_fence(log=url, signing_key=signer, tools=tools)
    messages: dict[str, ToolMessage] = {}

    def sync(call_id: str) -> ToolMessage:
        messages[call_id] = call_sync(fence, tools, call_id)
        return messages[call_id]

    try:
        # Synchronous runs: each ToolNode step appends from a fresh thread, so a fresh
        # connection.
        assert_ran(sync("a"), "a")
        cluster.stop()
        # Down: the call is refused, naming the log and the server it cannot reach.
        refused = sync("b")
        assert_refused(refused, "cannot connect to the decision log postgresql://postgres@/")
        # The operator's log names the server and what to do; the model is told neither.
        assert any("check that PostgreSQL is running" in r.getMessage() for r in caplog.records)
        assert ran.names() == ["read_record"]
        cluster.start()
        # Up again: the next call runs.
        assert_ran(sync("c"), "c")
        cluster.restart()
        # A restart between two calls goes unnoticed: the connection the next call gets
        # fails at BEGIN, before anything was sent, so it begins again on a new one.
        assert_ran(sync("d"), "d")

        # An async run on one long-lived worker thread, as in a service: its connection
        # outlives a restart.
        async def service() -> None:
            for call_id in ("e", "f"):
                messages[call_id] = await call_async(fence, tools, call_id)
            cluster.restart()
            # The first call after the restart finds its connection ended by the server at
            # BEGIN; nothing was sent, so the transaction begins again on a new one.
            messages["g"] = await call_async(fence, tools, "g")
            messages["h"] = await call_async(fence, tools, "h")
            cluster.stop()
            # Down, on the stale connection: refused, naming the server it cannot reach.
            messages["i"] = await call_async(fence, tools, "i")
            cluster.start()
            messages["j"] = await call_async(fence, tools, "j")
            messages["k"] = await call_async(fence, tools, "k")

        run_on_one_worker(service)
        for call_id in ("e", "f", "g", "h", "j", "k"):
            assert_ran(messages[call_id], call_id)
        assert_refused(messages["i"], "cannot connect to the decision log postgresql://postgres@/")
        assert sorted(args["record_id"] for _, args in ran.calls) == list("acdefghjk")
    except BaseException:
        print(cluster.server_log())
        raise
    finally:
        fence.close()  # signs the final checkpoint on a live connection

    reopen_and_sign(url, signer)
    _, decisions, _ = check_fenced_log(url, signer, ran, messages)
    # While the server was down even the refusal could not be put on record.
    assert "b" not in decisions and "i" not in decisions
    assert set(decisions) == set("acdefghjk")


# --- 3. the fence's connections are terminated --------------------------------------------


def _terminate(url: str, application: str) -> int:
    """End the sessions of one application only (the other tests' are left alone)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application,),
        ).fetchone()
    ended = int(row[0]) if row else 0
    assert sessions_after(url, application, seconds=10) == 0
    return ended


def _storm(url: str, application: str, stop: threading.Event, ended: list[int]) -> None:
    """Terminate the application's sessions every few milliseconds until told to stop."""
    import psycopg

    rng = random.Random(20260314)
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s AND pid <> pg_backend_pid()",
                (application,),
            ).fetchone()
            ended.append(int(row[0]) if row else 0)
            time.sleep(rng.uniform(0.0, 0.01))


def test_dropped_connection_fails_closed_then_reconnects(
    pg_url: str, make_fence: Callable[..., Fence], tools: list[BaseTool], ran: Ran
) -> None:
    application = f"agentfence-faults-{secrets.token_hex(4)}"
    url = f"{pg_url}&application_name={application}"
    signer = Signer.generate("pg-terminate")
    tools = durable_tools(tools, pg_url, ran)  # its own connections are not terminated
    fence = make_fence(log=url, signing_key=signer, tools=tools)
    messages: dict[str, ToolMessage] = {}
    ended: list[int] = []

    signed = fence.log
    assert isinstance(signed, SignedLog)

    async def service() -> None:
        messages["a"] = await call_async(fence, tools, "a")
        signed.flush()  # the outcome is on record, so no commit is left to open a session
        # The fence's sessions (its log's and approval store's), and no one else's.
        ended.append(_terminate(pg_url, application))
        # The worker's connection was ended: its next BEGIN fails before anything was sent,
        # so the append begins again on a new connection and the call runs.
        messages["b"] = await call_async(fence, tools, "b")
        messages["c"] = await call_async(fence, tools, "c")
        signed.flush()
        ended.append(_terminate(pg_url, application))
        messages["d"] = await call_async(fence, tools, "d")
        messages["e"] = await call_async(fence, tools, "e")

    try:
        run_on_one_worker(service)
        # The worker's connection, the one the fence opened on, and the approval store's.
        assert ended[0] >= 2 and ended[1] >= 1
        for call_id in "abcde":
            assert_ran(messages[call_id], call_id)
        assert ran.names() == ["read_record"] * 5

        # A storm: the fence's sessions are terminated every few milliseconds while runs
        # make three parallel calls per step (their appends share group commits), so
        # connections die at every point of an append, COMMIT included. Whatever the
        # result of each call, nothing runs unless its decision is on record.
        stop, storm_ended = threading.Event(), []
        terminator = threading.Thread(
            target=_storm, args=(pg_url, application, stop, storm_ended), daemon=True
        )
        terminator.start()
        try:
            for step in range(15):
                ids = [f"s{step}-{n}" for n in range(3)]
                graph = graph_for(
                    fence,
                    tools,
                    batch(*(tool_call("read_record", {"record_id": i}, i) for i in ids)),
                )
                result = graph.invoke({"messages": [("user", "go")]}, config(f"storm-{step}"))
                messages.update((i, tool_messages(result)[i]) for i in ids)
        finally:
            stop.set()
            terminator.join(timeout=30)
        assert sum(storm_ended) > 0
        # After the storm, calls run again.
        messages["z"] = call_sync(fence, tools, "z")
        assert_ran(messages["z"], "z")
    finally:
        fence.close()  # signs the final checkpoint on a live connection

    reopen_and_sign(url, signer)
    _, decisions, outcomes = check_fenced_log(url, signer, ran, messages)
    for call_id in "abcde":
        assert decisions[call_id].effect == "ALLOW"
        assert decisions[call_id].decision_id in outcomes
    assert set("abcdez") <= set(decisions)
    # What the storm did (shown with -s): how the calls ended, and how many refused calls
    # left an ALLOW decision on the log (a COMMIT that took effect although the client saw
    # the connection fail: the call was still refused, and its DENY was deduplicated).
    storm = {k: m for k, m in messages.items() if k.startswith("s")}
    text = {k: str(m.content) for k, m in storm.items()}
    summary = {
        "ran": sum(1 for m in storm.values() if m.status == "success"),
        "refused": sum(1 for t in text.values() if t.startswith(FAIL_CLOSED)),
        "refused, ALLOW on record": sum(
            1
            for k, t in text.items()
            if t.startswith(FAIL_CLOSED) and k in decisions and decisions[k].effect == "ALLOW"
        ),
        "refused, nothing on record": sum(
            1 for k, t in text.items() if t.startswith(FAIL_CLOSED) and k not in decisions
        ),
        "ran, outcome unrecorded": sum(1 for t in text.values() if t.startswith(UNRECORDED)),
    }
    print(f"storm: {sum(storm_ended)} sessions terminated; {summary}")
