"""Property tests for agentfence.verify: any flipped byte of the stored log fails verification,
and every entry's receipt verifies on its own."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentfence.errors import VerificationError
from agentfence.verify import InclusionReceipt, LogVerificationError, prove, verify_log
from agentfence.verify import verify_receipt as check_receipt
from tests.unit.test_verify import BuiltLog, build_log, copy_log

# (table, column, key column): every stored byte a verifier relies on.
TARGETS = [
    ("entries", "body", "seq"),
    ("entries", "leaf_hash", "seq"),
    ("checkpoints", "note", "size"),
    ("checkpoints", "frontier", "size"),
    ("blobs", "content", "ref"),
    ("blobs", "salt", "ref"),
]

FLIPS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> BuiltLog:
    return build_log(tmp_path_factory.mktemp("props"), threads=("t",), anonymous=True)


def _flip(path: Path, target: tuple[str, str, str], row: int, position: int, mask: int) -> str:
    table, column, key = target
    with sqlite3.connect(path) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"):
            conn.execute(f"DROP TRIGGER {name}")
        keys = [
            r[0]
            for r in conn.execute(
                f"SELECT {key} FROM {table} WHERE {column} IS NOT NULL ORDER BY {key}"
            )
        ]
        chosen = keys[row % len(keys)]
        (value,) = conn.execute(
            f"SELECT {column} FROM {table} WHERE {key} = ?",
            (chosen,),
        ).fetchone()
        raw = value.encode() if isinstance(value, str) else bytes(value)
        at = position % len(raw)
        flipped = raw[:at] + bytes([raw[at] ^ mask]) + raw[at + 1 :]
        stored: str | bytes = flipped
        if isinstance(value, str):
            try:
                stored = flipped.decode("utf-8")
            except UnicodeDecodeError:
                stored = flipped  # kept as a BLOB: SQLite columns are dynamically typed
        conn.execute(
            f"UPDATE {table} SET {column} = ? WHERE {key} = ?",
            (stored, chosen),
        )
    return f"{table}.{column} of {chosen!r}, byte {at} ^ {mask:#04x}"


@FLIPS
@given(
    target=st.sampled_from(TARGETS),
    row=st.integers(min_value=0, max_value=10_000),
    position=st.integers(min_value=0, max_value=100_000),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipping_any_stored_byte_fails_verification(
    base: BuiltLog, target: tuple[str, str, str], row: int, position: int, mask: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = copy_log(base.path, Path(directory) / "fence.db")
        where = _flip(path, target, row, position, mask)
        with pytest.raises(LogVerificationError) as caught:
            verify_log(path, [base.vkey])
        assert caught.value.attack, where


@settings(max_examples=40, deadline=None)
@given(seq=st.integers(min_value=0, max_value=13))
def test_every_entrys_receipt_verifies(base: BuiltLog, seq: int) -> None:
    receipt = InclusionReceipt.from_json(prove(base.path, seq).to_json())
    assert check_receipt(receipt, [base.vkey]).seq == seq


@settings(max_examples=60, deadline=None)
@given(
    seq=st.integers(min_value=0, max_value=13),
    position=st.integers(min_value=0, max_value=5000),
    mask=st.integers(min_value=1, max_value=255),
)
def test_flipping_any_byte_of_a_receipts_entry_fails(
    base: BuiltLog, seq: int, position: int, mask: int
) -> None:
    receipt = prove(base.path, seq)
    data = bytearray(receipt.entry.encode())
    at = position % len(data)
    data[at] ^= mask
    try:
        edited = receipt.model_copy(update={"entry": data.decode("latin-1")})
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return
    with pytest.raises(VerificationError):
        check_receipt(edited, [base.vkey])
