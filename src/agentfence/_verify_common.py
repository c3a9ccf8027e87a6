"""What every offline check behind :mod:`agentfence.verify` shares: the error tree and steps.

Each check runs numbered steps and raises a :class:`LogVerificationError` subclass naming the
step that failed and the attack the evidence shows. The modules that hold the checks
(``_log_check``, ``_receipts``, ``_evidence``, ``_replay``) import from here; nothing here
imports them, so there is no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, ValidationError

from agentfence.errors import VerificationError

__all__ = [
    "BlobError",
    "CheckpointError",
    "EntryError",
    "EvidenceError",
    "ForkError",
    "LogVerificationError",
    "OrderError",
    "Progress",
    "RollbackError",
    "VerifiedStep",
]

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``, called now and then during long steps."""

_KEEP = "keep this copy as evidence and compare it with a backup or an evidence pack"


# --- errors --------------------------------------------------------------------------------


class LogVerificationError(VerificationError):
    """The log, a receipt or an evidence pack failed one numbered verification step.

    ``step`` is the number of the step that failed and ``title`` its title, ``attack`` a
    short name for what the evidence shows (``entry_modified``, ``truncated_or_rolled_back``,
    ``fork_same_size``, ...; the table is in ``docs/log-format.md``), and ``steps`` the
    steps that passed before it.
    """

    def __init__(
        self, message: str, *, step: int, attack: str, steps: Sequence[VerifiedStep] = ()
    ) -> None:
        super().__init__(message)
        self.step = step
        self.title = ""
        self.attack = attack
        self.steps = tuple(steps)


class EntryError(LogVerificationError):
    """An entry was modified, deleted, inserted or reordered, or its index columns lie."""


class CheckpointError(LogVerificationError):
    """A checkpoint was altered, is signed by an untrusted key, or does not match the log."""


class RollbackError(LogVerificationError):
    """The log is shorter than a checkpoint the auditor saved: truncated or rolled back."""


class ForkError(LogVerificationError):
    """Two validly signed checkpoints disagree about the same history."""


class BlobError(LogVerificationError):
    """A blob is missing, altered, or erased without an erasure entry."""


class OrderError(LogVerificationError):
    """Entries are out of order: an outcome without its decision, an unactivated policy set."""


class EvidenceError(LogVerificationError):
    """A receipt or evidence pack is malformed or incomplete."""


# --- steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedStep:
    """One verification step that passed: its number, its title and what it found."""

    number: int
    title: str
    detail: str
    skipped: bool = False


@dataclass
class _Run:
    titles: tuple[str, ...]
    progress: Progress | None
    steps: list[VerifiedStep] = field(default_factory=list)

    def passed(self, number: int, detail: str, *, skipped: bool = False) -> None:
        self.steps.append(VerifiedStep(number, self.titles[number - 1], detail, skipped))

    def failed(self, exc: LogVerificationError) -> None:
        exc.steps = tuple(self.steps)
        exc.title = self.titles[exc.step - 1] if 0 < exc.step <= len(self.titles) else ""

    def tick(self, title: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(title, done, total)


# --- shared helpers ------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "entry"
    return f"{where}: {first['msg']}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
