"""Offline checks of the decision log: verify it, prove one entry, replay it, export evidence.

An auditor needs only the log file (or an evidence pack) and the verifier keys they trust.
Nothing here writes to the log, and nothing here trusts what the log says about itself
until a signature by a trusted key vouches for it:

- :func:`verify_log` checks a whole log in seven numbered steps (the same numbers appear as
  comments in the code, in :attr:`VerifiedLog.steps` and in ``agentfence log verify``);
- :func:`prove` makes an :class:`InclusionReceipt` for one entry, which
  :func:`verify_receipt` checks with nothing but the receipt and a key;
- :func:`replay` re-decides every recorded decision with the recorded policies (or, "what
  if", with a candidate policy directory) and reports what differs;
- :func:`export_evidence` writes an :class:`EvidencePack` for one thread, which
  :func:`verify_evidence` checks offline.

Every check raises a :class:`LogVerificationError` subclass naming the step and the attack
the evidence shows (``attack`` is one of the names used by ``tests/vectors/tamper``); none
returns a bool. The byte format is in ``docs/log-format.md``.

This package's ``__init__`` is its public face; the checks live in its private modules:
``_check`` (:func:`verify_log`), ``_results``, ``_receipts``, ``_evidence`` and ``_replay``, on
top of ``_common`` (the numbered steps, progress, shared messages), ``_snapshot`` (reading a
log), ``_key_schedule`` (which key may sign which checkpoint) and ``_order`` (the order
rules). Names are imported on first use (PEP 562): a worker process that checks a range of
entries (``_entries``) loads what it needs, not replay's policy engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfence._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "BlobError": "agentfence.errors",
    "CheckpointError": "agentfence.errors",
    "EVIDENCE_FORMAT": "agentfence.verify._evidence",
    "EVIDENCE_STEPS": "agentfence.verify._evidence",
    "EntryError": "agentfence.errors",
    "ErasedBlob": "agentfence.verify._check",
    "EvidenceError": "agentfence.errors",
    "EvidencePack": "agentfence.verify._evidence",
    "ForkError": "agentfence.errors",
    "InclusionReceipt": "agentfence.verify._receipts",
    "KeyChange": "agentfence.verify._key_schedule",
    "LOG_STEPS": "agentfence.verify._check",
    "LogVerificationError": "agentfence.errors",
    "NotReplayable": "agentfence.verify._replay",
    "OrderError": "agentfence.errors",
    "PARALLEL_REPLAY_FROM": "agentfence.verify._replay",
    "Progress": "agentfence.verify._common",
    "RECEIPT_FORMAT": "agentfence.verify._receipts",
    "ReplayChange": "agentfence.verify._replay",
    "ReplayReport": "agentfence.verify._replay",
    "RollbackError": "agentfence.errors",
    "VerifiedEvidence": "agentfence.verify._evidence",
    "VerifiedLog": "agentfence.verify._check",
    "VerifiedReceipt": "agentfence.verify._receipts",
    "VerifiedStep": "agentfence.verify._common",
    "export_evidence": "agentfence.verify._evidence",
    "prove": "agentfence.verify._receipts",
    "replay": "agentfence.verify._replay",
    "verify_evidence": "agentfence.verify._evidence",
    "verify_log": "agentfence.verify._check",
    "verify_receipt": "agentfence.verify._receipts",
}


__all__ = [
    "EVIDENCE_STEPS",
    "LOG_STEPS",
    "BlobError",
    "CheckpointError",
    "EntryError",
    "ErasedBlob",
    "EvidenceError",
    "EvidencePack",
    "ForkError",
    "InclusionReceipt",
    "KeyChange",
    "LogVerificationError",
    "NotReplayable",
    "OrderError",
    "ReplayChange",
    "ReplayReport",
    "RollbackError",
    "VerifiedEvidence",
    "VerifiedLog",
    "VerifiedReceipt",
    "VerifiedStep",
    "export_evidence",
    "prove",
    "replay",
    "verify_evidence",
    "verify_log",
    "verify_receipt",
]


__getattr__, __dir__ = lazy_exports("agentfence.verify", _EXPORTS, globals(), __all__)


if TYPE_CHECKING:
    from agentfence.errors import (
        BlobError,
        CheckpointError,
        EntryError,
        EvidenceError,
        ForkError,
        LogVerificationError,
        OrderError,
        RollbackError,
    )
    from agentfence.verify._check import LOG_STEPS, ErasedBlob, VerifiedLog, verify_log
    from agentfence.verify._common import Progress as Progress
    from agentfence.verify._common import VerifiedStep

    # The `X as X` imports keep public names that are not in __all__ importable from here too.
    from agentfence.verify._evidence import EVIDENCE_FORMAT as EVIDENCE_FORMAT
    from agentfence.verify._evidence import (
        EVIDENCE_STEPS,
        EvidencePack,
        VerifiedEvidence,
        export_evidence,
        verify_evidence,
    )
    from agentfence.verify._key_schedule import KeyChange
    from agentfence.verify._receipts import RECEIPT_FORMAT as RECEIPT_FORMAT
    from agentfence.verify._receipts import InclusionReceipt, VerifiedReceipt, prove, verify_receipt
    from agentfence.verify._replay import PARALLEL_REPLAY_FROM as PARALLEL_REPLAY_FROM
    from agentfence.verify._replay import NotReplayable, ReplayChange, ReplayReport, replay
