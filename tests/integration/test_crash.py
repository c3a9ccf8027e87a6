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
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db), str(key), str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.0, 0.12))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # Every complete line is an append that returned before the kill.
        for line in proc.stdout.read().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                acknowledged[parts[0]] = int(parts[1])
        proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()

        # After each kill: the log opens (its tail check passes) and holds every entry
        # that was acknowledged, at the seq it was acknowledged with.
        log = SignedLog.open(f"sqlite:///{db}", signer=signer)
        stored = {record.decision_id: seq for seq, record in log.read()}  # type: ignore[union-attr]
        log.close()
        missing = {k: v for k, v in acknowledged.items() if stored.get(k) != v}
        assert missing == {}, f"run {run}: acknowledged entries lost: {json.dumps(missing)}"
        assert sorted(stored.values()) == list(range(len(stored)))
    assert len(acknowledged) > 20  # the writers did get work done between kills
