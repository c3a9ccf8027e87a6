"""Tampered logs, one named vector per attack: each must fail verification with its message.

Each ``tamper/<attack>.json`` says what an attacker who can write the log file (but has no
signing key, except in ``fork_same_size`` where the signer itself forks) does to it, and
which error ``verify_log`` must raise: the error class, the ``attack`` it names, the step
that catches it and a fragment of the message. The mutations are applied to a fresh copy
of one log built by ``tests.unit.test_verify.build_log`` (checkpoints at 0, 9, 17 and 22).
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_verify import BuiltLog, build_log, copy_log, records, sql

from agentfence import _merkle, verify
from agentfence._signing import Signer
from agentfence.log import SignedLog, parse_entry
from agentfence.records import canonical_bytes, entry_bytes_from

VECTORS = Path(__file__).parent / "tamper"
VECTOR_FILES = sorted(VECTORS.glob("*.json"))

# The attacks the issue names; each must have a vector.
REQUIRED = {
    "entry_modified",
    "entry_deleted",
    "entries_reordered",
    "entry_inserted",
    "blob_altered",
    "checkpoint_altered",
    "checkpoint_unknown_key",
    "checkpoint_missing",
    "truncated_tail",
    "rolled_back",
    "fork_same_size",
    "erased_without_record",
}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("tamper-base"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_every_named_attack_has_a_vector_with_provenance() -> None:
    names = {path.stem for path in VECTOR_FILES}
    assert names >= REQUIRED
    for path in VECTOR_FILES:
        data = load(path)
        assert data["attack"] == path.stem
        assert data["description"] and data["provenance"]["description"]
        assert "sources" in data["provenance"]
        assert set(data["expect"]) == {"error", "attack", "step", "message"}
        assert hasattr(verify, data["expect"]["error"])


# --- the interpreter -----------------------------------------------------------------------


def _rehash(conn: sqlite3.Connection, seq: int, body: bytes) -> None:
    """Store ``body`` at ``seq`` with a leaf hash and index columns that match it."""
    _, record = parse_entry(body)
    conn.execute(
        "UPDATE entries SET body = ?, leaf_hash = ?, effect = ? WHERE seq = ?",
        (body, _merkle.leaf_hash(body), getattr(record, "effect", None), seq),
    )


def _rewrite_entry(built: BuiltLog, conn: sqlite3.Connection, op: dict[str, Any]) -> None:
    old, new = op["replace"]
    (body,) = conn.execute("SELECT body FROM entries WHERE seq = ?", (op["seq"],)).fetchone()
    changed = bytes(body).replace(old.encode(), new.encode())
    assert changed != bytes(body), "the vector's replacement does not apply"
    _rehash(conn, op["seq"], changed)


def _delete_and_renumber(built: BuiltLog, conn: sqlite3.Connection, op: dict[str, Any]) -> None:
    seq = op["seq"]
    conn.execute("DELETE FROM entries WHERE seq = ?", (seq,))
    # Renumber through negative values: seq is the primary key.
    conn.execute("UPDATE entries SET seq = -seq WHERE seq > ?", (seq,))
    conn.execute("UPDATE entries SET seq = -seq - 1 WHERE seq < 0")


def _swap(built: BuiltLog, conn: sqlite3.Connection, op: dict[str, Any]) -> None:
    a, b = op["seqs"]
    conn.execute("UPDATE entries SET seq = -1 WHERE seq = ?", (a,))
    conn.execute("UPDATE entries SET seq = ? WHERE seq = ?", (a, b))
    conn.execute("UPDATE entries SET seq = ? WHERE seq = -1", (b,))


def _insert(built: BuiltLog, conn: sqlite3.Connection, op: dict[str, Any]) -> None:
    at = op["at"]
    record = records(built.path)[op["copy_of"]][1]
    conn.execute("UPDATE entries SET seq = -seq - 1 WHERE seq >= ?", (at,))
    conn.execute("UPDATE entries SET seq = -seq WHERE seq < 0")
    body = entry_bytes_from(at, canonical_bytes(record))
    conn.execute(
        "INSERT INTO entries (seq, kind, dedupe_key, body, leaf_hash, thread, tool, effect, "
        "time_us) VALUES (?, ?, NULL, ?, ?, NULL, NULL, NULL, ?)",
        (at, record.format, body, _merkle.leaf_hash(body), record.time_us),
    )


def _truncate(built: BuiltLog, conn: sqlite3.Connection, op: dict[str, Any]) -> None:
    keep = op["keep"]
    conn.execute("DELETE FROM entries WHERE seq >= ?", (keep,))
    conn.execute("DELETE FROM checkpoints WHERE size > ?", (keep,))
    leaves = [bytes(r[0]) for r in conn.execute("SELECT leaf_hash FROM entries ORDER BY seq")]
    state = _merkle.MerkleFrontier.from_leaf_hashes(leaves).state()
    conn.execute("UPDATE tree_state SET size = ?, frontier = ?", (state.size, state.to_bytes()))


def _resign_latest(built: BuiltLog, conn: sqlite3.Connection, op: dict[str, Any]) -> None:
    (size, note) = conn.execute(
        "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    text = note[: note.rfind("\n\n") + 1]
    forged = Signer.generate("test-log").sign_note(text)
    conn.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (forged, size))


SQL_OPS: dict[str, Callable[[BuiltLog, sqlite3.Connection, dict[str, Any]], None]] = {
    "rewrite_entry": _rewrite_entry,
    "delete_and_renumber": _delete_and_renumber,
    "swap": _swap,
    "insert": _insert,
    "truncate": _truncate,
    "resign_latest_checkpoint": _resign_latest,
}


def _rollback(built: BuiltLog, op: dict[str, Any]) -> None:
    for stale in built.path.parent.glob(built.path.name + "-*"):
        stale.unlink()
    shutil.copyfile(built.snapshots[op["to"]], built.path)


def _fork(built: BuiltLog, op: dict[str, Any]) -> None:
    """The signer itself forks: roll back, then grow again to the saved size."""
    target = verify_size(built)
    _rollback(built, {"to": op["from"]})
    activation = records(built.path)[0][1]
    with SignedLog.open(built.path, signer=built.signer, checkpoint_interval=math.inf) as log:
        for n in range(target - log.size()):
            log.append(activation.model_copy(update={"time_us": n}))


def verify_size(built: BuiltLog) -> int:
    return verify.verify_log(built.path, [built.vkey]).size


FILE_OPS: dict[str, Callable[[BuiltLog, dict[str, Any]], None]] = {
    "rollback": _rollback,
    "fork": _fork,
}


def apply(built: BuiltLog, mutation: dict[str, Any]) -> None:
    if "sql" in mutation:
        sql(built.path, *mutation["sql"])
        return
    op = mutation["op"]
    if op in FILE_OPS:
        FILE_OPS[op](built, mutation)
        return
    with sqlite3.connect(built.path) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")
        SQL_OPS[op](built, conn, mutation)


@pytest.mark.parametrize("path", VECTOR_FILES, ids=[p.stem for p in VECTOR_FILES])
def test_tampered_log_is_rejected(path: Path, base: BuiltLog, tmp_path: Path) -> None:
    vector = load(path)
    built = BuiltLog(
        copy_log(base.path, tmp_path / "fence.db"),
        base.key_file,
        base.pub_file,
        base.signer,
        {
            name: copy_log(snapshot, tmp_path / snapshot.name)
            for name, snapshot in base.snapshots.items()
        },
    )
    saved = {None: None, "latest": built.latest_note()}[vector["saved_checkpoint"]]
    # The untouched copy verifies, with or without the saved checkpoint.
    verify.verify_log(built.path, [built.vkey], saved_checkpoint=saved)
    apply(built, vector["mutation"])
    expect = vector["expect"]
    with pytest.raises(getattr(verify, expect["error"])) as caught:
        verify.verify_log(built.path, [built.vkey], saved_checkpoint=saved)
    error = caught.value
    assert isinstance(error, verify.LogVerificationError)
    assert expect["message"] in str(error)
    assert (error.attack, error.step) == (expect["attack"], expect["step"])
    assert error.title == verify.LOG_STEPS[expect["step"] - 1]
    # Steps 3 and 4 read the entries in one pass, so a step-4 failure comes before step 3
    # is done; every other failure comes after the steps before it passed.
    passed = [s.number for s in error.steps]
    assert passed == [n for n in range(1, expect["step"]) if (n, expect["step"]) != (3, 4)]
