"""What every offline check behind :mod:`agentfence.verify` shares: the steps and helpers.

Each check runs numbered steps and raises a :class:`LogVerificationError` subclass (the
public error tree in :mod:`agentfence.errors`) naming the step that failed and the attack the
evidence shows. The modules that hold the checks
(``_check``, ``_receipts``, ``_evidence``, ``_replay``) import from here; nothing here
imports them, so there is no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from agentfence.errors import LogVerificationError

__all__ = [
    "Progress",
    "VerifiedStep",
]

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``, called now and then during long steps."""

KEEP_EVIDENCE = "keep this copy as evidence and compare it with a backup or an evidence pack"
NO_CHECKPOINT = (
    "the log has no signed checkpoint; a fence signs one when it creates the log, so this "
    "file was not written by agentfence or its checkpoints were deleted"
)
"""Step 2's finding for a log with no checkpoint (attack ``checkpoint_missing``)."""


# --- errors --------------------------------------------------------------------------------


# --- steps ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedStep:
    """One verification step that passed: its number, its title and what it found."""

    number: int
    title: str
    detail: str
    skipped: bool = False


@dataclass
class StepRun:
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


def first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "entry"
    return f"{where}: {first['msg']}"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
