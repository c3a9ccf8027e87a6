"""Crash safety: a writer killed with SIGKILL at random moments loses nothing it acknowledged."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agentfence._signing import Signer, write_private_key
from agentfence.log import SignedLog

WRITER = textwrap.dedent(
    """
    import sys
    from agentfence._signing import read_private_key
    from agentfence.log import SignedLog
    from agentfence.records import Blob, OutcomeRecord

    db, key, run = sys.argv[1], sys.argv[2], sys.argv[3]
    log = SignedLog.open(f"sqlite:///{db}", signer=read_private_key(key),
                         checkpoint_interval=0.005)
    print("ready", flush=True)
    i = 0
    while True:
        blob = Blob.of(f"result {run}-{i}".encode())
        receipt = log.append(OutcomeRecord(decision_id=f"{run}-{i}", status="success",
                                           result_digest="0" * 64, result_blob=blob.ref,
                                           time_us=i), [blob])
        print(f"{run}-{i} {receipt.seq}", flush=True)
        i += 1
    """
)


def killed_writer(script: Path, db: Path, key: Path, run: int, delay: float) -> list[str]:
    """Start a writer, let it append for ``delay`` seconds, SIGKILL it; the lines it printed
    (each complete line is an append that returned before the kill)."""
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(key), str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    assert ready.strip() == "ready", proc.stderr.read() if proc.stderr else ""
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    lines = proc.stdout.read().splitlines()
    proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()
    return lines


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    signer = Signer.generate("crash-test")
    key = write_private_key(tmp_path / "crash.key", signer)
    db = tmp_path / "crash.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(20261122)
    acknowledged: dict[str, int] = {}
    for run in range(20):
        for line in killed_writer(script, db, key, run, rng.uniform(0.0, 0.12)):
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                acknowledged[parts[0]] = int(parts[1])

        # After each kill: the log opens (its tail check passes) and holds every entry
        # that was acknowledged, at the seq it was acknowledged with.
        log = SignedLog.open(f"sqlite:///{db}", signer=signer)
        stored = {record.decision_id: seq for seq, record in log.read()}  # type: ignore[union-attr]
        log.close()
        missing = {k: v for k, v in acknowledged.items() if stored.get(k) != v}
        assert missing == {}, f"run {run}: acknowledged entries lost: {json.dumps(missing)}"
        assert sorted(stored.values()) == list(range(len(stored)))
    assert len(acknowledged) > 20  # the writers did get work done between kills


DEFERRING_WRITER = textwrap.dedent(
    """
    import sys, time
    from agentfence._signing import read_private_key
    from agentfence.log import SignedLog
    from agentfence.records import Blob, DecisionRecord, OutcomeRecord

    db, key, run = sys.argv[1], sys.argv[2], sys.argv[3]
    log = SignedLog.open(f"sqlite:///{db}", signer=read_private_key(key),
                         checkpoint_interval=0.005, flush_window=0.02)
    print("ready", flush=True)
    i = 0
    while True:
        did = f"{run}-{i}"
        record = DecisionRecord(
            decision_id=did, seed=1, thread="t", step=i, tool_call_id=did, tool="pay",
            principal='User::"alice"', agent="a", action='Action::"pay"', resource=None,
            request_blob=None, effect="ALLOW", policy_ids=["p"], reasons=[], errors=[],
            approvers=[], policy_hash="0" * 64, engine="e", time_us=i)
        receipt = log.append(record)  # durable: only then may the tool run
        print(f"decided {did} {receipt.seq}", flush=True)
        blob = Blob.of(f"result {did}".encode())
        log.append_later(OutcomeRecord(decision_id=did, status="success",
                                       result_digest="0" * 64, result_blob=blob.ref,
                                       time_us=i), [blob])
        print(f"ran {did}", flush=True)
        i += 1
        if i % 7 == 0:
            time.sleep(0.03)  # an idle moment: the flush window commits the outcome alone
    """
)


@pytest.mark.slow
def test_sigkill_with_deferred_outcomes_loses_no_decision_and_only_recent_outcomes(
    tmp_path: Path,
) -> None:
    from agentfence.records import DecisionRecord, OutcomeRecord

    signer = Signer.generate("crash-test")
    key = write_private_key(tmp_path / "crash.key", signer)
    db = tmp_path / "crash.db"
    script = tmp_path / "writer.py"
    script.write_text(DEFERRING_WRITER)
    rng = random.Random(20261205)
    decided: dict[str, int] = {}
    for run in range(12):
        ran_this_run: list[str] = []
        for line in killed_writer(script, db, key, run, rng.uniform(0.02, 0.15)):
            parts = line.split()
            if parts[:1] == ["decided"] and len(parts) == 3:
                decided[parts[1]] = int(parts[2])
            elif parts[:1] == ["ran"] and len(parts) == 2:
                ran_this_run.append(parts[1])

        log = SignedLog.open(f"sqlite:///{db}", signer=signer)
        records = dict(log.read())
        log.close()
        stored = {r.decision_id: seq for seq, r in records.items() if isinstance(r, DecisionRecord)}
        outcomes = {r.decision_id for r in records.values() if isinstance(r, OutcomeRecord)}
        # Never a decision: every acknowledged one is there, at its seq.
        lost = {k: v for k, v in decided.items() if stored.get(k) != v}
        assert lost == {}, f"run {run}: acknowledged decisions lost: {json.dumps(lost)}"
        # Outcomes: only those of the calls that ran last, within the flush window, may be
        # missing ("ran, outcome not recorded"); every earlier one is on the log, because a
        # later decision's commit carried it.
        missing = [d for d in ran_this_run if d not in outcomes]
        assert missing == ran_this_run[len(ran_this_run) - len(missing) :]
        assert len(missing) <= 1, f"run {run}: outcomes lost beyond the window: {missing}"
    assert len(decided) > 20
