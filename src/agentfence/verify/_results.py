"""What :func:`~agentfence.verify.verify_log` reports, and the policy-set check of step 6c.

A verified log is a :class:`VerifiedLog`; an erased blob it found is an :class:`ErasedBlob`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import rfc8785

from agentfence.errors import (
    BlobError,
)
from agentfence.records import (
    ActivationRecord,
)
from agentfence.verify._common import KEEP_EVIDENCE, VerifiedStep
from agentfence.verify._key_schedule import (
    KeyChange,
)
from agentfence.verify._snapshot import (
    Snapshot,
)

_POLICYSET = "agentfence.policyset/v1"  # the format marker inside a policy set hash


# -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErasedBlob:
    """A blob whose content was erased, and the entry that recorded the erasure."""

    ref: str
    seq: int
    reason: str


@dataclass(frozen=True)
class VerifiedLog:
    """What :func:`verify_log` established about a log that passed every step.

    ``size`` and ``root`` are those of the latest signed checkpoint (``checkpoint``, the
    note to keep elsewhere and pass back as ``saved_checkpoint`` next time). Entries after
    it are stored but not yet signed: ``unsigned_tail`` counts them.
    """

    origin: str
    size: int
    root: bytes
    checkpoint: str
    signed_by: tuple[str, ...]
    entries: int
    unsigned_tail: int
    checkpoints: int
    key_changes: tuple[KeyChange, ...]
    decisions: int
    outcomes: int
    activations: int
    blobs: int
    erased_blobs: tuple[ErasedBlob, ...]
    unreferenced_blobs: tuple[str, ...]
    pending_erasures: tuple[str, ...]
    saved_checkpoint_size: int | None
    steps: tuple[VerifiedStep, ...]
    seconds: float
    without_outcome: int = 0
    """Decisions that let a tool run with no outcome on record ("ran, outcome not
    recorded": the tool may have run; see docs/log-format.md, "What a crash can lose")."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able summary (what ``agentfence log verify --json`` prints)."""
        return {
            "verified": True,
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "checkpoint": self.checkpoint,
            "signed_by": list(self.signed_by),
            "entries": self.entries,
            "unsigned_tail": self.unsigned_tail,
            "checkpoints": self.checkpoints,
            "key_changes": [vars(k) for k in self.key_changes],
            "decisions": self.decisions,
            "outcomes": self.outcomes,
            "without_outcome": self.without_outcome,
            "activations": self.activations,
            "blobs": self.blobs,
            "erased_blobs": [vars(b) for b in self.erased_blobs],
            "unreferenced_blobs": list(self.unreferenced_blobs),
            "pending_erasures": list(self.pending_erasures),
            "saved_checkpoint_size": self.saved_checkpoint_size,
            "steps": [vars(s) for s in self.steps],
            "seconds": round(self.seconds, 3),
        }


def check_activation(snap: Snapshot, seq: int, record: ActivationRecord) -> None:
    """Step 6c: an activation's policy texts hash to its recorded file hashes, and those and
    the schema to its policy set hash (docs/log-format.md, "Policy set hash")."""
    refs = [*record.file_blobs.values(), record.schema_blob]
    stored = snap.blobs_by_ref(refs)
    if any(stored.get(ref) is None for ref in refs):
        return  # an erased policy text: nothing to rehash (step 6a reported it)
    problem = None
    if set(record.file_blobs) != set(record.files):
        problem = "its file names and file blobs differ"
    else:
        for name, ref in sorted(record.file_blobs.items()):
            digest = hashlib.sha256(stored[ref] or b"").hexdigest()
            if not hmac.compare_digest(digest, record.files[name]):
                problem = f"the text of {name} does not hash to its recorded SHA-256"
                break
    if problem is None:
        schema = hashlib.sha256(stored[record.schema_blob] or b"").hexdigest()
        material: dict[str, Any] = {
            "format": _POLICYSET,
            "files": record.files,
            "schema": schema,
        }
        expected = hashlib.sha256(rfc8785.dumps(material)).hexdigest()
        if not hmac.compare_digest(expected, record.policy_hash):
            problem = f"its files and schema hash to policy set {expected[:16]}…"
    if problem is not None:
        raise BlobError(
            f"the activation at entry {seq} does not match the policy set it names "
            f"({record.policy_hash[:16]}…): {problem}; its texts are not the ones that "
            f"decided. {KEEP_EVIDENCE}",
            step=6,
            attack="activation_mismatch",
        )
